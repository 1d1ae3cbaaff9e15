package test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// startManualTarget starts a target whose connections are driven by the
// test itself (through target.next); the handler only keeps them open until
// the test ends.
func startManualTarget(t testing.TB) *target {
	stop := make(chan struct{})
	tg := startTarget(t, "tcp", "127.0.0.1:0", func(c *tconn) { <-stop })
	t.Cleanup(func() { close(stop) })
	return tg
}

// readAllFrom reads from c until EOF (or a reset) within d; it fails on a
// timeout, which means websockify did not close the connection.
func readAllFrom(c net.Conn, d time.Duration) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return b, fmt.Errorf("target connection still open after %v (read %d bytes)", d, len(b))
	}
	return b, nil
}

// readExactly reads n bytes from c within ioTimeout.
func readExactly(c net.Conn, n int) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	b := make([]byte, n)
	_, err := io.ReadFull(c, b)
	return b, err
}

// warmUp proves both directions of a fresh session work, and returns its
// target connection.
func warmUp(t testing.TB, c *wsClient, tg *target) *tconn {
	t.Helper()
	if err := c.send([]byte("warmup")); err != nil {
		t.Fatal(err)
	}
	tc := tg.next(t, 10*time.Second)
	got, err := readExactly(tc, 6)
	if err != nil || string(got) != "warmup" {
		t.Fatalf("target got %q, %v; want warmup", got, err)
	}
	if _, err := tc.Write([]byte("reply")); err != nil {
		t.Fatal(err)
	}
	back, err := c.readN(5)
	if err != nil || string(back) != "reply" {
		t.Fatalf("client got %q, %v; want reply", back, err)
	}
	return tc
}

// Item d: a fragmented message with pings (and a pong) between fragments.
func TestFragmentsWithPing(t *testing.T) {
	t.Parallel()
	tg := startManualTarget(t)
	p := startProxy(t, tg.addr)

	for _, mode := range []string{modeBinary, modeBase64} {
		t.Run(mode, func(t *testing.T) {
			c := dialWS(t, p, mode)
			tc := warmUp(t, c, tg)

			msg := []byte("part one|part two|part three, the end")
			op := ws.OpBinary
			payload := msg
			if mode == modeBase64 {
				op = ws.OpText
				payload = []byte(base64.StdEncoding.EncodeToString(msg))
			}
			// Split points deliberately off the base64 quantum boundaries.
			a, b := 5, 23
			var w bytes.Buffer
			w.Write(maskedFrag(false, op, payload[:a]))
			w.Write(masked(ws.OpPing, []byte("are you there?")))
			w.Write(maskedFrag(false, ws.OpContinuation, payload[a:b]))
			w.Write(masked(ws.OpPong, []byte("unsolicited pong, ignored")))
			w.Write(masked(ws.OpPing, nil))
			w.Write(maskedFrag(false, ws.OpContinuation, nil)) // an empty fragment
			w.Write(maskedFrag(true, ws.OpContinuation, payload[b:]))
			if err := c.write(w.Bytes()); err != nil {
				t.Fatal(err)
			}
			for i, want := range []string{"are you there?", ""} {
				f, err := c.nextFrame()
				if err != nil {
					t.Fatalf("pong %d: %v", i, err)
				}
				if f.op != ws.OpPong || !f.fin || string(f.payload) != want {
					t.Fatalf("frame %d: op %v fin %v payload %q; want a pong with %q", i, f.op, f.fin, f.payload, want)
				}
			}
			got, err := readExactly(tc, len(msg))
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("target got %q, %v; want %q", got, err, msg)
			}
			// A ping in its own right, with the largest allowed payload.
			// (Pings split across reads: TestSplitFrameHeaders.)
			big := bytes.Repeat([]byte{'p'}, 125)
			if err := c.write(masked(ws.OpPing, big)); err != nil {
				t.Fatal(err)
			}
			f, err := c.nextFrame()
			if err != nil || f.op != ws.OpPong || !bytes.Equal(f.payload, big) {
				t.Fatalf("pong to a 125-byte ping: op %v len %d, %v", f.op, len(f.payload), err)
			}
			// The session goes on.
			if _, err := tc.Write([]byte("still here")); err != nil {
				t.Fatal(err)
			}
			if got, err := c.readN(10); err != nil || string(got) != "still here" {
				t.Fatalf("after the pings: %q, %v", got, err)
			}
		})
	}
}

// frame64MSB is a binary frame header claiming a 64-bit length with its top
// bit set.
func frame64MSB() []byte {
	h := []byte{0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1}
	return append(h, 1, 2, 3, 4) // the mask
}

// Item e: each protocol violation gets its close code, the target is
// closed, bytes before the violation reach the target, and the proxy serves
// the next client.
func TestProtocolViolations(t *testing.T) {
	t.Parallel()
	tg := startManualTarget(t)
	p := startProxy(t, tg.addr)

	m := func(fin bool, rsv byte, op ws.OpCode, payload []byte) []byte {
		k := ws.NewMask()
		return encodeFrame(fin, rsv, op, &k, payload)
	}
	big := bytes.Repeat([]byte{'c'}, 126)
	cases := []struct {
		name string
		mode string
		bad  []byte
		code uint16
		// forwarded is what the valid part of bad (a first fragment)
		// legitimately carries to the target before the violation.
		forwarded string
	}{
		{"unmasked-binary", modeBinary, encodeFrame(true, 0, ws.OpBinary, nil, []byte("abc")), 1002, ""},
		{"unmasked-ping", modeBinary, encodeFrame(true, 0, ws.OpPing, nil, nil), 1002, ""},
		{"unmasked-close", modeBinary, encodeFrame(true, 0, ws.OpClose, nil, closePayload(1000, "")), 1002, ""},
		{"rsv1", modeBinary, m(true, 4, ws.OpBinary, []byte("abc")), 1002, ""},
		{"rsv2", modeBinary, m(true, 2, ws.OpBinary, []byte("abc")), 1002, ""},
		{"rsv3", modeBinary, m(true, 1, ws.OpBinary, []byte("abc")), 1002, ""},
		{"rsv1-ping", modeBinary, m(true, 4, ws.OpPing, nil), 1002, ""},
		{"rsv1-base64", modeBase64, m(true, 4, ws.OpText, []byte("QUJD")), 1002, ""},
		{"opcode-3", modeBinary, m(true, 0, 3, []byte("x")), 1002, ""},
		{"opcode-4", modeBinary, m(true, 0, 4, []byte("x")), 1002, ""},
		{"opcode-5", modeBinary, m(true, 0, 5, nil), 1002, ""},
		{"opcode-6", modeBinary, m(true, 0, 6, nil), 1002, ""},
		{"opcode-7", modeBinary, m(true, 0, 7, []byte("x")), 1002, ""},
		{"opcode-B", modeBinary, m(true, 0, 0xB, nil), 1002, ""},
		{"opcode-C", modeBinary, m(true, 0, 0xC, nil), 1002, ""},
		{"opcode-D", modeBinary, m(true, 0, 0xD, nil), 1002, ""},
		{"opcode-E", modeBinary, m(true, 0, 0xE, nil), 1002, ""},
		{"opcode-F", modeBinary, m(true, 0, 0xF, []byte("x")), 1002, ""},
		{"ping-126", modeBinary, m(true, 0, ws.OpPing, big), 1002, ""},
		{"pong-126", modeBinary, m(true, 0, ws.OpPong, big), 1002, ""},
		{"close-126", modeBinary, m(true, 0, ws.OpClose, append(closePayload(1000, ""), big[:124]...)), 1002, ""},
		{"fragmented-ping", modeBinary, m(false, 0, ws.OpPing, []byte("x")), 1002, ""},
		{"fragmented-close", modeBinary, m(false, 0, ws.OpClose, closePayload(1000, "")), 1002, ""},
		{"continuation-without-start", modeBinary, m(true, 0, ws.OpContinuation, []byte("x")), 1002, ""},
		{"continuation-without-start-nofin", modeBinary, m(false, 0, ws.OpContinuation, []byte("x")), 1002, ""},
		{"binary-inside-fragmented", modeBinary,
			append(m(false, 0, ws.OpBinary, []byte("a")), m(true, 0, ws.OpBinary, []byte("b"))...), 1002, "a"},
		{"text-inside-fragmented", modeBinary,
			append(m(false, 0, ws.OpBinary, []byte("a")), m(true, 0, ws.OpText, []byte("b"))...), 1002, "a"},
		{"text-inside-fragmented-base64", modeBase64,
			append(m(false, 0, ws.OpText, []byte("QU")), m(true, 0, ws.OpText, []byte("JD"))...), 1002, ""},
		{"length-64bit-msb", modeBinary, frame64MSB(), 1002, ""},
		{"invalid-base64-chars", modeBase64, m(true, 0, ws.OpText, []byte("!!!!")), 1007, ""},
		{"invalid-base64-incomplete", modeBase64, m(true, 0, ws.OpText, []byte("QQ")), 1007, ""},
		{"invalid-base64-fragmented", modeBase64,
			append(m(false, 0, ws.OpText, []byte("QU")), m(true, 0, ws.OpContinuation, []byte("*D"))...), 1007, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialWS(t, p, tc.mode)
			target := warmUp(t, c, tg)

			// A good frame and the bad one in one write: the good one's
			// payload still reaches the target, then the target is closed.
			before := []byte("before the violation")
			if err := c.write(append(c.dataFrame(before), tc.bad...)); err != nil {
				t.Fatal(err)
			}
			code, reason, data, err := c.expectClose()
			if err != nil {
				t.Fatalf("no close frame: %v", err)
			}
			if len(data) != 0 {
				t.Errorf("unexpected data before the close: %q", data)
			}
			if code != tc.code {
				t.Errorf("close code %d (%q), want %d", code, reason, tc.code)
			}
			if err := expectEOF(c.conn, c.br, 5*time.Second); err != nil {
				t.Errorf("client connection after the close frame: %v", err)
			}
			got, err := readAllFrom(target, 5*time.Second)
			if err != nil {
				t.Errorf("target connection: %v", err)
			}
			if want := string(before) + tc.forwarded; string(got) != want {
				t.Errorf("target got %q after the warmup, want %q", got, want)
			}

			// The proxy serves the next client.
			next := dialWS(t, p, modeBinary)
			warmUp(t, next, tg)
		})
	}
}

// Item k: the target cannot be reached.
func TestTargetUnreachable(t *testing.T) {
	t.Parallel()
	p := startProxy(t, closedPort(t))
	for _, mode := range []string{modeBinary, modeBase64} {
		c := dialWS(t, p, mode)
		code, reason, data, err := c.expectClose()
		if err != nil {
			t.Fatalf("%s: no close frame: %v", mode, err)
		}
		if code != 1011 || reason != "Failed to connect to downstream server" {
			t.Errorf("%s: close %d %q, want 1011 %q", mode, code, reason, "Failed to connect to downstream server")
		}
		if len(data) > 0 {
			t.Errorf("%s: unexpected data %q", mode, data)
		}
		if err := expectEOF(c.conn, c.br, 5*time.Second); err != nil {
			t.Errorf("%s: %v", mode, err)
		}
	}
	// Also when the client already sent data.
	c, err := dialWSE(p, modeBinary, masked(ws.OpBinary, []byte("early")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.conn.Close()
	if code, _, _, err := c.expectClose(); err != nil || code != 1011 {
		t.Errorf("with early data: close %d, %v; want 1011", code, err)
	}
}

// Item k: the target closes after sending data: everything arrives, then
// close 1000 "Target closed".
func TestTargetCloses(t *testing.T) {
	t.Parallel()
	tg := startManualTarget(t)
	p := startProxy(t, tg.addr)

	type variant struct {
		name  string
		dial  func() (*wsClient, error)
		size  int
		hixie bool
	}
	variants := []variant{
		{"binary-3MiB", func() (*wsClient, error) { return dialWSE(p, modeBinary, nil) }, 3 << 20, false},
		{"base64-3MiB", func() (*wsClient, error) { return dialWSE(p, modeBase64, nil) }, 3 << 20, false},
		{"binary-small", func() (*wsClient, error) { return dialWSE(p, modeBinary, nil) }, 11, false},
		{"binary-nothing", func() (*wsClient, error) { return dialWSE(p, modeBinary, nil) }, 0, false},
		{"hixie76-1MiB", func() (*wsClient, error) { return dialHixie(p, 76, "", "", nil, nil) }, 1 << 20, true},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			c, err := v.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer c.conn.Close()
			tc := tg.next(t, 10*time.Second)
			data := make([]byte, v.size)
			fillPattern(data, 0)
			go func() {
				_ = tc.SetWriteDeadline(time.Now().Add(ioTimeout))
				_, _ = tc.Write(data)
				tc.Close()
			}()
			code, reason, got, err := c.expectClose()
			if err != nil {
				t.Fatalf("after %d of %d bytes: %v", len(got), len(data), err)
			}
			if len(got) != len(data) {
				t.Fatalf("got %d bytes before the close, want %d", len(got), len(data))
			}
			if err := checkPattern(got, 0); err != nil {
				t.Fatal(err)
			}
			if !v.hixie && (code != 1000 || reason != "Target closed") {
				t.Errorf("close %d %q, want 1000 \"Target closed\"", code, reason)
			}
			if err := expectEOF(c.conn, c.br, 5*time.Second); err != nil {
				t.Error(err)
			}
		})
	}
}

// Item k: a client close frame is echoed with its code; the target is closed.
func TestClientClose(t *testing.T) {
	t.Parallel()
	tg := startManualTarget(t)
	p := startProxy(t, tg.addr)
	for _, cc := range []struct {
		code   uint16
		reason string
	}{{1000, ""}, {1000, "bye"}, {1001, "going away"}, {1008, ""}, {3000, "app"}, {4000, "private"}, {4999, "x"}} {
		t.Run(fmt.Sprintf("%d-%s", cc.code, cc.reason), func(t *testing.T) {
			c := dialWS(t, p, modeBinary)
			tc := warmUp(t, c, tg)
			if err := c.sendClose(cc.code, cc.reason); err != nil {
				t.Fatal(err)
			}
			code, _, data, err := c.expectClose()
			if err != nil {
				t.Fatalf("no close reply: %v", err)
			}
			if len(data) != 0 {
				t.Errorf("data before the close reply: %q", data)
			}
			if code != cc.code {
				t.Errorf("close reply code %d, want %d", code, cc.code)
			}
			if err := expectEOF(c.conn, c.br, 5*time.Second); err != nil {
				t.Error(err)
			}
			if rest, err := readAllFrom(tc, 5*time.Second); err != nil || len(rest) != 0 {
				t.Errorf("target: %q, %v; want EOF", rest, err)
			}
		})
	}
	t.Run("tcp-close-without-frame", func(t *testing.T) {
		c := dialWS(t, p, modeBinary)
		tc := warmUp(t, c, tg)
		c.conn.Close()
		if rest, err := readAllFrom(tc, 5*time.Second); err != nil || len(rest) != 0 {
			t.Errorf("target: %q, %v; want EOF", rest, err)
		}
	})
	t.Run("close-after-large-data", func(t *testing.T) {
		// Everything sent before the close frame reaches the target.
		c := dialWS(t, p, modeBinary)
		tc := warmUp(t, c, tg)
		data := randomBytes(rand.New(rand.NewPCG(5, 5)), 4<<20)
		go func() {
			_ = c.write(append(masked(ws.OpBinary, data), masked(ws.OpClose, closePayload(1000, ""))...))
		}()
		got, err := readAllFrom(tc, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("target got %d bytes (equal=%v), want the %d sent before the close", len(got), bytes.Equal(got, data), len(data))
		}
		if code, _, _, err := c.expectClose(); err != nil || code != 1000 {
			t.Errorf("close reply %d, %v", code, err)
		}
	})
}

// writeSplit writes b in pieces cut at the given offsets, pausing between
// pieces so that websockify reads them separately.
func writeSplit(c *wsClient, b []byte, cuts ...int) error {
	prev := 0
	for _, cut := range append(cuts, len(b)) {
		if err := c.write(b[prev:cut]); err != nil {
			return err
		}
		prev = cut
		if cut < len(b) {
			time.Sleep(30 * time.Millisecond)
		}
	}
	return nil
}

// Frames whose header arrives in several reads: websockify must keep the
// partial header, not drop it.
func TestSplitFrameHeaders(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := startProxy(t, echo.addr)

	cases := []struct {
		name    string
		mode    string
		size    int // payload size: picks the 7-, 16- or 64-bit length form
		hdrSize int
	}{
		{"len7", modeBinary, 100, 6},
		{"len16", modeBinary, 1000, 8},
		{"len64", modeBinary, 70000, 14},
		{"len16-base64", modeBase64, 1000, 8},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dialWS(t, p, tc.mode)
			mustEcho(t, c, []byte("warmup"))
			for cut := 1; cut < tc.hdrSize; cut++ {
				data := make([]byte, tc.size)
				fillPattern(data, int64(cut))
				fr := c.dataFrame(data)
				if err := writeSplit(c, fr, cut); err != nil {
					t.Fatalf("header cut after %d bytes: write: %v", cut, err)
				}
				got, err := c.readN(len(data))
				if err != nil {
					t.Fatalf("header cut after %d bytes: %v", cut, err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("header cut after %d bytes: echo differs", cut)
				}
			}
		})
	}
	t.Run("ping-byte-by-byte", func(t *testing.T) {
		t.Parallel()
		c := dialWS(t, p, modeBinary)
		mustEcho(t, c, []byte("warmup"))
		ping := masked(ws.OpPing, []byte("split ping"))
		cuts := make([]int, 0, len(ping))
		for i := 1; i < len(ping); i++ {
			cuts = append(cuts, i)
		}
		if err := writeSplit(c, ping, cuts...); err != nil {
			t.Fatal(err)
		}
		f, err := c.nextFrame()
		if err != nil || f.op != ws.OpPong || string(f.payload) != "split ping" {
			t.Fatalf("reply to a ping sent byte by byte: op %v %q, %v", f.op, f.payload, err)
		}
		mustEcho(t, c, []byte("after"))
	})
	t.Run("close-split", func(t *testing.T) {
		t.Parallel()
		c := dialWS(t, p, modeBinary)
		mustEcho(t, c, []byte("warmup"))
		if err := writeSplit(c, masked(ws.OpClose, closePayload(4001, "split")), 1); err != nil {
			t.Fatal(err)
		}
		if code, _, _, err := c.expectClose(); err != nil || code != 4001 {
			t.Fatalf("close reply %d, %v; want 4001", code, err)
		}
	})
	t.Run("hixie-frame-start-alone", func(t *testing.T) {
		t.Parallel()
		c, err := dialHixie(p, 76, "", "", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.conn.Close()
		mustEcho(t, c, []byte("warmup"))
		data := []byte("hixie split")
		if err := writeSplit(c, c.dataFrame(data), 1, 5); err != nil {
			t.Fatal(err)
		}
		if got, err := c.readN(len(data)); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("got %q, %v", got, err)
		}
	})
	t.Run("hixie-close-split", func(t *testing.T) {
		t.Parallel()
		c, err := dialHixie(p, 75, "", "", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.conn.Close()
		mustEcho(t, c, []byte("warmup"))
		if err := writeSplit(c, []byte{0xFF, 0x00}, 1); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := c.expectClose(); err != nil {
			t.Fatalf("no Hixie close reply to a split 0xFF 0x00: %v", err)
		}
	})
}

// Binary mode: text frames from the client are forwarded as they are.
func TestTextFrameInBinaryMode(t *testing.T) {
	t.Parallel()
	tg := startManualTarget(t)
	p := startProxy(t, tg.addr)
	for _, mode := range []string{modeNone, modeBinary} {
		c := dialWS(t, p, mode)
		tc := warmUp(t, c, tg)
		msg := []byte("plain text, not base64!")
		if err := c.write(masked(ws.OpText, msg)); err != nil {
			t.Fatal(err)
		}
		if got, err := readExactly(tc, len(msg)); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("mode %q: target got %q, %v; want %q", mode, got, err, msg)
		}
	}
}

// A frame's payload is streamed: websockify forwards it before the frame is
// complete, and a huge frame does not cost memory.
func TestStreamingHugeFrame(t *testing.T) {
	t.Parallel()
	tg := startManualTarget(t)
	p := startProxy(t, tg.addr)
	c := dialWS(t, p, modeBinary)
	tc := warmUp(t, c, tg)
	mon := watchRSS(p.pid())
	defer mon.finish()

	// A 2 GiB frame, of which 64 MiB are sent; the target reads them all
	// while the frame is still far from complete.
	const declared = 2 << 30
	const sent = 64 << 20
	mask := ws.NewMask()
	hdr := []byte{0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint64(hdr[2:], declared)
	hdr = append(hdr, mask[:]...)
	go func() {
		if err := c.write(hdr); err != nil {
			return
		}
		chunk := make([]byte, 1<<20)
		for off := 0; off < sent; off += len(chunk) {
			fillPattern(chunk, int64(off))
			ws.Cipher(chunk, mask, off)
			if err := c.write(chunk); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 256<<10)
	for got := 0; got < sent; {
		_ = tc.SetReadDeadline(time.Now().Add(ioTimeout))
		n, err := tc.Read(buf)
		if err != nil {
			t.Fatalf("target after %d of %d bytes of an incomplete frame: %v", got, sent, err)
		}
		if err := checkPattern(buf[:n], int64(got)); err != nil {
			t.Fatal(err)
		}
		got += n
	}
	mon.finish()
	mon.check(t, p)

	// The client goes away in the middle of the frame: the target is closed.
	c.conn.Close()
	if rest, err := readAllFrom(tc, 10*time.Second); err != nil || len(rest) != 0 {
		t.Fatalf("target: %d more bytes, %v; want EOF", len(rest), err)
	}
}
