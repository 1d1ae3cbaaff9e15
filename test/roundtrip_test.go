package test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// frameSizes are the message sizes the sender cycles through: around every
// length-encoding boundary of RFC 6455 and a few large ones.
var frameSizes = []int{1, 2, 3, 7, 100, 125, 126, 127, 1000, 4095, 65535, 65536, 65537, 200_000, 1 << 20, 3 << 20}

// sendChunked sends data as messages of varied sizes; about one message in
// four is split into two or three fragments at a random point (for base64,
// inside the base64 text, not on a quantum boundary). Frames are batched
// into writes of about 256 KiB.
func sendChunked(c *wsClient, data []byte, rng *rand.Rand) error {
	var batch bytes.Buffer
	flush := func() error {
		if batch.Len() == 0 {
			return nil
		}
		err := c.write(batch.Bytes())
		batch.Reset()
		return err
	}
	op := ws.OpBinary
	if c.base64 {
		op = ws.OpText
	}
	for i, off := rng.IntN(len(frameSizes)), 0; off < len(data); i++ {
		n := min(frameSizes[i%len(frameSizes)], len(data)-off)
		chunk := data[off : off+n]
		off += n
		payload := chunk
		if c.base64 {
			payload = []byte(base64.StdEncoding.EncodeToString(chunk))
		}
		if len(payload) >= 3 && rng.IntN(4) == 0 {
			a := 1 + rng.IntN(len(payload)-2)
			b := a + rng.IntN(len(payload)-a)
			batch.Write(maskedFrag(false, op, payload[:a]))
			if b > a {
				batch.Write(maskedFrag(false, ws.OpContinuation, payload[a:b]))
			}
			batch.Write(maskedFrag(true, ws.OpContinuation, payload[b:]))
		} else {
			batch.Write(maskedFrag(true, op, payload))
		}
		if batch.Len() >= 256<<10 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// roundTrip sends data through the echo target and checks what comes back,
// byte for byte, reading concurrently with sending.
func roundTrip(c *wsClient, data []byte, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, seed^0xabcdef))
	var wg sync.WaitGroup
	var sendErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		sendErr = sendChunked(c, data, rng)
	}()
	got, err := c.readN(len(data))
	wg.Wait()
	if sendErr != nil {
		return fmt.Errorf("send: %w", sendErr)
	}
	if err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	if !bytes.Equal(got, data) {
		for i := range got {
			if got[i] != data[i] {
				return fmt.Errorf("echo differs first at byte %d of %d", i, len(data))
			}
		}
	}
	return nil
}

// Item a: byte-exact round trips of many sizes in binary and base64 mode.
func TestRoundTripSizes(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := startProxy(t, echo.addr)
	sizes := []int{1, 100, 64 << 10, 1 << 20, 16 << 20}
	for _, mode := range []string{modeBinary, modeBase64} {
		for _, size := range sizes {
			t.Run(fmt.Sprintf("%s/%d", mode, size), func(t *testing.T) {
				t.Parallel()
				seed := uint64(size)*31 + uint64(len(mode))
				data := randomBytes(rand.New(rand.NewPCG(seed, 1)), size)
				c := dialWS(t, p, mode)
				if c.base64 != (mode == modeBase64) {
					t.Fatalf("offered %q, got protocol %q", mode, c.resp.Header.Get("Sec-WebSocket-Protocol"))
				}
				if err := roundTrip(c, data, seed); err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				// The session still works after a large transfer.
				mustEcho(t, c, []byte("after"))
			})
		}
	}
}

// Item f: the first data frame in the same TCP write as the handshake.
func TestFirstFrameWithHandshake(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := startProxy(t, echo.addr)

	t.Run("hybi-binary", func(t *testing.T) {
		first := []byte("hello in the handshake's segment")
		c, err := dialWSE(p, modeBinary, masked(ws.OpBinary, first))
		if err != nil {
			t.Fatal(err)
		}
		defer c.conn.Close()
		got, err := c.readN(len(first))
		if err != nil || !bytes.Equal(got, first) {
			t.Fatalf("got %q, %v; want %q", got, err, first)
		}
		mustEcho(t, c, []byte("second"))
	})
	t.Run("hybi-base64-two-frames", func(t *testing.T) {
		first := []byte("one")
		second := []byte("two!")
		extra := append(masked(ws.OpText, []byte(base64.StdEncoding.EncodeToString(first))),
			masked(ws.OpText, []byte(base64.StdEncoding.EncodeToString(second)))...)
		c, err := dialWSE(p, modeBase64, extra)
		if err != nil {
			t.Fatal(err)
		}
		defer c.conn.Close()
		want := append(append([]byte{}, first...), second...)
		got, err := c.readN(len(want))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	})
	t.Run("hybi-large-first-frame", func(t *testing.T) {
		// 200 KiB in the handshake's write: more than one read of the proxy.
		first := randomBytes(rand.New(rand.NewPCG(7, 7)), 200<<10)
		c, err := dialWSE(p, modeNone, masked(ws.OpBinary, first))
		if err != nil {
			t.Fatal(err)
		}
		defer c.conn.Close()
		got, err := c.readN(len(first))
		if err != nil || !bytes.Equal(got, first) {
			t.Fatalf("got %d bytes, %v; want %d bytes equal", len(got), err, len(first))
		}
	})
	t.Run("hixie76", func(t *testing.T) {
		first := []byte("hixie first frame")
		frame := append(append([]byte{0}, base64.StdEncoding.EncodeToString(first)...), 0xFF)
		c, err := dialHixie(p, 76, "", "", nil, frame)
		if err != nil {
			t.Fatal(err)
		}
		defer c.conn.Close()
		got, err := c.readN(len(first))
		if err != nil || !bytes.Equal(got, first) {
			t.Fatalf("got %q, %v; want %q", got, err, first)
		}
	})
}

// Item h: 200 concurrent clients, each byte-exact with its own payload.
func TestConcurrentClients(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := startProxy(t, echo.addr)
	const clients = 200
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 99))
			mode := []string{modeNone, modeBinary, modeBase64}[i%3]
			data := randomBytes(rng, 1+rng.IntN(96<<10))
			<-start
			c, err := dialWSE(p, mode, nil)
			if err != nil {
				t.Errorf("client %d: %v", i, err)
				return
			}
			defer c.conn.Close()
			if err := roundTrip(c, data, uint64(i)); err != nil {
				t.Errorf("client %d (%s, %d bytes): %v", i, mode, len(data), err)
				return
			}
			if err := c.sendClose(1000, "done"); err != nil {
				t.Errorf("client %d: close: %v", i, err)
				return
			}
			code, _, _, err := c.expectClose()
			if err != nil || code != 1000 {
				t.Errorf("client %d: close reply %d, %v", i, code, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	// Every target connection is closed once the clients are gone.
	if !echo.waitActive(0, 10*time.Second) {
		t.Errorf("%d target connections still open after all clients closed", echo.active.Load())
	}
	if n := echo.total.Load(); n != clients {
		t.Errorf("target saw %d connections, want %d", n, clients)
	}
}
