package test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawRequest sends req on a fresh connection and reads the response head.
func rawRequest(t testing.TB, p *proxy, req string) (*http.Response, []byte) {
	t.Helper()
	conn, err := p.dial()
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatalf("write request: %v", err)
	}
	br := bufio.NewReader(conn)
	resp, err := readResponse(conn, br)
	if err != nil {
		t.Fatalf("read response to %q: %v", truncate(req, 200), err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp, body
}

// Item b: the HyBi handshake, accepted versions and refusals.
func TestHyBiHandshake(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := startProxy(t, echo.addr)

	t.Run("accept-vector", func(t *testing.T) {
		t.Parallel()
		// RFC 6455 section 1.3.
		if got := acceptKey("dGhlIHNhbXBsZSBub25jZQ=="); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
			t.Fatalf("test helper acceptKey is wrong: %s", got)
		}
		req := hybiReq{Key: "DKURYVK9cRFul1vOZVA56Q=="}
		req.Fill()
		resp, _ := rawRequest(t, p, req.String())
		if resp.StatusCode != 101 {
			t.Fatalf("status %d, want 101", resp.StatusCode)
		}
		if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "pczpYSQsvE1vBpTQYjFQPcuoj6M=" {
			t.Fatalf("Sec-WebSocket-Accept %q, want pczpYSQsvE1vBpTQYjFQPcuoj6M=", got)
		}
		if got := resp.Header.Get("Upgrade"); !strings.EqualFold(got, "websocket") {
			t.Errorf("Upgrade %q", got)
		}
		if got := resp.Header.Get("Connection"); !strings.EqualFold(got, "Upgrade") {
			t.Errorf("Connection %q", got)
		}
		if got, ok := resp.Header["Sec-Websocket-Protocol"]; ok {
			t.Errorf("no protocol offered but reply has Sec-WebSocket-Protocol %q", got)
		}
	})

	for _, version := range []string{"7", "8", "13"} {
		t.Run("version-"+version, func(t *testing.T) {
			t.Parallel()
			for _, mode := range []string{modeNone, modeBinary, modeBase64} {
				req := hybiReq{Version: version, Protocol: mode}
				c, err := dialHyBi(p, req, nil)
				if err != nil {
					t.Fatalf("mode %q: %v", mode, err)
				}
				mustEcho(t, c, []byte("version "+version+" mode "+mode+" \x00\xff\x80"))
				c.conn.Close()
			}
		})
	}

	protocols := []struct {
		offer, want string
	}{
		{"binary", "binary"},
		{"base64", "base64"},
		{"base64, binary", "binary"},
		{"binary,base64", "binary"},
		{"  base64  ,  binary  ", "binary"},
		{"foo, base64", "base64"},
		{"chat,base64,superchat", "base64"},
		{"foo,binary", "binary"},
	}
	for _, tc := range protocols {
		t.Run("protocol/"+tc.offer, func(t *testing.T) {
			t.Parallel()
			c, err := dialHyBi(p, hybiReq{Protocol: tc.offer}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.conn.Close()
			if got := c.resp.Header.Get("Sec-WebSocket-Protocol"); got != tc.want {
				t.Fatalf("offered %q: chose %q, want %q", tc.offer, got, tc.want)
			}
			mustEcho(t, c, []byte("mode check \x01\x02"))
			// The mode must match the chosen protocol: check the frame type.
			if err := c.send([]byte("x")); err != nil {
				t.Fatal(err)
			}
			f, err := c.nextFrame()
			if err != nil {
				t.Fatal(err)
			}
			wantOp := "binary"
			if tc.want == "base64" {
				wantOp = "text"
			}
			if (f.op == 2) != (wantOp == "binary") {
				t.Fatalf("protocol %q: target data came in opcode %d, want %s", tc.want, f.op, wantOp)
			}
		})
	}

	t.Run("two-protocol-headers", func(t *testing.T) {
		t.Parallel()
		c, err := dialHyBi(p, hybiReq{Protocol: "foo", Extra: []string{"Sec-WebSocket-Protocol: base64"}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.conn.Close()
		if got := c.resp.Header.Get("Sec-WebSocket-Protocol"); got != "base64" {
			t.Fatalf("chose %q, want base64", got)
		}
	})

	refusals := []struct {
		name          string
		req           hybiReq
		wantVersion13 bool
	}{
		{"version-6", hybiReq{Version: "6"}, true},
		{"version-14", hybiReq{Version: "14"}, true},
		{"version-garbage", hybiReq{Version: "thirteen"}, true},
		{"missing-version", hybiReq{NoVersion: true}, true},
		{"missing-key", hybiReq{NoKey: true}, false},
		{"unknown-protocol-only", hybiReq{Protocol: "chat"}, false},
		{"unknown-protocols-only", hybiReq{Protocol: "chat, superchat, base32"}, false},
	}
	for _, tc := range refusals {
		t.Run("refuse/"+tc.name, func(t *testing.T) {
			t.Parallel()
			tc.req.Fill()
			resp, _ := rawRequest(t, p, tc.req.String())
			if resp.StatusCode != 400 {
				t.Fatalf("status %d, want 400", resp.StatusCode)
			}
			if tc.wantVersion13 {
				if got := resp.Header.Get("Sec-WebSocket-Version"); got != "13" {
					t.Errorf("Sec-WebSocket-Version %q in the 400, want 13", got)
				}
			}
		})
	}

	// The refusals above never reach the target, and the proxy still serves.
	t.Run("still-serving", func(t *testing.T) {
		c := dialWS(t, p, modeBinary)
		mustEcho(t, c, []byte("ok"))
	})
}

// A refused handshake must not connect to the target.
func TestRefusedHandshakeDoesNotDial(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := startProxy(t, echo.addr)
	for _, req := range []hybiReq{{Version: "6"}, {NoKey: true}, {Protocol: "chat"}} {
		req.Fill()
		resp, _ := rawRequest(t, p, req.String())
		if resp.StatusCode != 400 {
			t.Fatalf("%+v: status %d, want 400", req, resp.StatusCode)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if n := echo.total.Load(); n != 0 {
		t.Fatalf("target got %d connections from refused handshakes", n)
	}
}

// Item c: Hixie-75 and Hixie-76 handshakes and round trips.
func TestHixieHandshake(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := startProxy(t, echo.addr)

	t.Run("hixie76-spec-vector", func(t *testing.T) {
		t.Parallel()
		// The example of draft-hixie-thewebsocketprotocol-76, section 1.3.
		key1 := "18x 6]8vM;54 *(5:  {   U1]8  z [  8"
		key2 := "1_ tx7X d  <  nw  334J702) 7]o}` 0"
		challenge := []byte("Tm[K T2u")
		if ans := hixie76Answer(key1, key2, challenge); string(ans[:]) != "fQJ,fN/4F4!~K~MH" {
			t.Fatalf("test helper hixie76Answer is wrong: %q", ans)
		}
		c, err := dialHixie(p, 76, key1, key2, challenge, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.conn.Close()
		mustEcho(t, c, []byte("hixie-76 \x00\xff binary-ish bytes"))
	})
	t.Run("hixie76-generated-keys", func(t *testing.T) {
		t.Parallel()
		for _, k := range []struct {
			n1, n2 uint32
			s1, s2 int
		}{{1, 1, 1, 1}, {4294967295, 12345, 1, 3}, {999999, 4242, 12, 5}} {
			key1, key2 := hixie76Key(k.n1, k.s1), hixie76Key(k.n2, k.s2)
			c, err := dialHixie(p, 76, key1, key2, []byte("abcdefgh"), nil)
			if err != nil {
				t.Fatalf("keys %q %q: %v", key1, key2, err)
			}
			mustEcho(t, c, []byte("generated keys"))
			c.conn.Close()
		}
	})
	t.Run("hixie75", func(t *testing.T) {
		t.Parallel()
		c, err := dialHixie(p, 75, "", "", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.conn.Close()
		mustEcho(t, c, []byte("hixie-75 round trip \x00\x01\xfe\xff"))
	})
	for _, v := range []int{75, 76} {
		t.Run(fmt.Sprintf("large-and-close/%d", v), func(t *testing.T) {
			t.Parallel()
			c, err := dialHixie(p, v, "", "", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.conn.Close()
			data := bytes.Repeat([]byte("0123456789abcdef\x00\xff"), 50_000) // ~900 KB
			var wg errGroup
			wg.Go(func() error {
				// One message, written in two pieces.
				fr := c.dataFrame(data)
				if err := c.write(fr[:len(fr)/2]); err != nil {
					return err
				}
				return c.write(fr[len(fr)/2:])
			})
			got, err := c.readN(len(data))
			if werr := wg.Wait(); werr != nil {
				t.Fatal(werr)
			}
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("round trip of %d bytes: %v (equal=%v)", len(data), err, bytes.Equal(got, data))
			}
			// Hixie close: 0xFF 0x00, answered with the same.
			if err := c.sendClose(0, ""); err != nil {
				t.Fatal(err)
			}
			if _, _, _, err := c.expectClose(); err != nil {
				t.Fatalf("no Hixie close reply: %v", err)
			}
			if err := expectEOF(c.conn, c.br, 5*time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("hixie-base64-frames-from-target", func(t *testing.T) {
		t.Parallel()
		c, err := dialHixie(p, 76, "", "", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.conn.Close()
		msg := []byte{0, 1, 2, 0xff, 0xfe}
		if err := c.send(msg); err != nil {
			t.Fatal(err)
		}
		_ = c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
		b0, err := c.br.ReadByte()
		if err != nil || b0 != 0x00 {
			t.Fatalf("frame start 0x%02x, %v; want 0x00", b0, err)
		}
		text, err := c.br.ReadBytes(0xFF)
		if err != nil {
			t.Fatal(err)
		}
		if want := base64.StdEncoding.EncodeToString(msg) + "\xff"; string(text) != want {
			t.Fatalf("frame text %q, want %q", text, want)
		}
	})
}

// errGroup is a tiny errgroup: Go runs f, Wait returns the first error.
type errGroup struct {
	ch  chan error
	cnt int
}

func (g *errGroup) Go(f func() error) {
	if g.ch == nil {
		g.ch = make(chan error, 64)
	}
	g.cnt++
	go func() { g.ch <- f() }()
}

func (g *errGroup) Wait() error {
	var first error
	for ; g.cnt > 0; g.cnt-- {
		if err := <-g.ch; err != nil && first == nil {
			first = err
		}
	}
	return first
}
