package test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

const policyResponse = `<cross-domain-policy><allow-access-from domain="*" to-ports="*" /></cross-domain-policy>` + "\n\x00"

// Item l: what the first bytes of a connection decide.
func TestSniffing(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := startProxy(t, echo.addr)

	t.Run("flash-policy", func(t *testing.T) {
		t.Parallel()
		for _, parts := range [][]string{
			{"<policy-file-request/>\x00"},
			{"<policy-file", "-request/>\x00"},
		} {
			conn, err := p.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			for _, part := range parts {
				if _, err := conn.Write([]byte(part)); err != nil {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			got, err := readAllFrom(conn, 10*time.Second)
			if err != nil {
				t.Fatalf("%q: %v", parts, err)
			}
			if string(got) != policyResponse {
				t.Fatalf("%q: got %q, want %q", parts, got, policyResponse)
			}
		}
	})

	for _, first := range [][]byte{
		{0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03},
		{0x80, 0x2e, 0x01, 0x00, 0x02},
	} {
		t.Run(fmt.Sprintf("tls-closed/0x%02x", first[0]), func(t *testing.T) {
			t.Parallel()
			conn, err := p.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(first); err != nil {
				t.Fatal(err)
			}
			if err := expectEOF(conn, conn, 10*time.Second); err != nil {
				t.Fatalf("first byte 0x%02x: %v", first[0], err)
			}
		})
	}

	t.Run("silent-client-closed", func(t *testing.T) {
		t.Parallel()
		conn, err := p.dial()
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// The first-byte wait is 3 s; allow plenty more.
		if err := expectEOF(conn, conn, 15*time.Second); err != nil {
			t.Fatal(err)
		}
	})

	statuses := []struct {
		name string
		req  string
		want int
	}{
		{"get-no-upgrade", "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", 405},
		{"get-vnc-html", "GET /vnc.html HTTP/1.1\r\nHost: localhost\r\n\r\n", 405},
		{"get-upgrade-h2c", "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n", 405},
		{"head", "HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n", 405},
		{"post", "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n", 405},
		{"garbage-binary", "\x01\x02\x03 garbage \x04\r\n\r\n", 400},
		{"garbage-words", "HELLO THERE\r\n\r\n", 400},
		{"garbage-no-version", "GET / FOO/1.1\r\n\r\n", 400},
		{"garbage-header-line", "GET / HTTP/1.1\r\nthis is not a header\r\n\r\n", 400},
		{"huge-header", "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + strings.Repeat("a", 17<<10) + "\r\n\r\n", 431},
		{"many-headers", "GET / HTTP/1.1\r\nHost: localhost\r\n" + strings.Repeat("X-Header: 0123456789012345678901234567890123456789\r\n", 400) + "\r\n", 431},
		{"huge-websocket-request", "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: " + strings.Repeat("c", 20<<10) + "\r\n\r\n", 431},
	}
	for _, tc := range statuses {
		t.Run("status/"+tc.name, func(t *testing.T) {
			t.Parallel()
			resp, _ := rawRequest(t, p, tc.req)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}

	t.Run("upgrade-header-any-case", func(t *testing.T) {
		t.Parallel()
		req := hybiReq{}
		req.Fill()
		raw := strings.Replace(req.String(), "Upgrade: websocket", "upgrade: WEBSOCKET", 1)
		raw = strings.Replace(raw, "Connection: Upgrade", "connection: keep-alive, upgrade", 1)
		conn, err := p.dial()
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c, err := handshakeFromRaw(conn, raw, req.Key)
		if err != nil {
			t.Fatal(err)
		}
		mustEcho(t, c, []byte("any case"))
	})

	t.Run("handshake-byte-by-byte", func(t *testing.T) {
		t.Parallel()
		req := hybiReq{Protocol: "binary"}
		req.Fill()
		conn, err := p.dial()
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		raw := req.String()
		for i := 0; i < len(raw)-1; i++ {
			if _, err := conn.Write([]byte{raw[i]}); err != nil {
				t.Fatal(err)
			}
		}
		c, err := handshakeFromRaw(conn, raw[len(raw)-1:], req.Key)
		if err != nil {
			t.Fatal(err)
		}
		mustEcho(t, c, []byte("slowly"))
	})
}

// handshakeFromRaw sends raw and reads a 101 for key.
func handshakeFromRaw(conn net.Conn, raw, key string) (*wsClient, error) {
	_ = conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := conn.Write([]byte(raw)); err != nil {
		return nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := readResponse(conn, br)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 101 {
		return nil, errors.New("status " + resp.Status)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != acceptKey(key) {
		return nil, errors.New("bad accept " + got)
	}
	return wrapWS(conn, br, resp), nil
}

// Item g: stalled half-handshakes do not delay a normal client.
func TestStalledHandshakes(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := startProxy(t, echo.addr)

	const stalled = 50
	conns := make([]net.Conn, 0, stalled)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range stalled {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := p.dial()
			if err != nil {
				t.Errorf("stalled client %d: %v", i, err)
				return
			}
			if i%2 == 0 { // half say a little, half say nothing
				if _, err := c.Write([]byte("GET / HTT")); err != nil {
					t.Errorf("stalled client %d: %v", i, err)
				}
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	start := time.Now()
	c, err := dialWSE(p, modeBinary, nil)
	if err != nil {
		t.Fatalf("normal client: %v", err)
	}
	defer c.conn.Close()
	mustEcho(t, c, []byte("not delayed"))
	elapsed := time.Since(start)
	t.Logf("normal client: handshake and echo in %v with %d stalled connections open", elapsed, stalled)
	if elapsed > 2*time.Second {
		t.Errorf("normal client took %v with %d stalled connections, want < 2s", elapsed, stalled)
	}

	// The stalled ones were all still open meanwhile.
	open := 0
	for _, sc := range conns {
		_ = sc.SetReadDeadline(time.Now().Add(time.Millisecond))
		_, err := sc.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			open++
		} else if err != nil && !errors.Is(err, io.EOF) {
			t.Logf("stalled connection: %v", err)
		}
	}
	if open != stalled {
		t.Errorf("only %d of %d stalled connections were still open when the normal client finished", open, stalled)
	}
}
