package test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The limits against abuse (--max-sessions and the like): each hit, the
// refusal the client sees, one log line and one summary for a burst of
// refusals, the sessions already open untouched, and recovery.

// upgradeFrom performs a HyBi handshake from src: the client, or the
// response that refused it (the connection is then closed).
func upgradeFrom(p *proxy, src string) (*wsClient, *http.Response, error) {
	conn, err := dialFrom(p.addr, src)
	if err != nil {
		return nil, nil, err
	}
	return upgradeExpectingEnd(conn)
}

// upgradeExpectingEnd performs a HyBi handshake on conn, as upgradeFrom:
// a refusal must be followed by the end of the connection.
func upgradeExpectingEnd(conn net.Conn) (*wsClient, *http.Response, error) {
	req := hybiReq{}
	req.Fill()
	_ = conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := conn.Write([]byte(req.String())); err != nil {
		conn.Close()
		return nil, nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := readResponse(conn, br)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if resp.StatusCode == 101 {
		c := wrapWS(conn, br, resp)
		return c, resp, nil
	}
	defer conn.Close()
	buf := make([]byte, resp.ContentLength)
	if _, err := io.ReadFull(br, buf); err != nil {
		return nil, resp, fmt.Errorf("refusal body: %w", err)
	}
	if err := expectEOF(conn, br, 5*time.Second); err != nil {
		return nil, resp, fmt.Errorf("after the refusal: %w", err)
	}
	return nil, resp, nil
}

// refusedBurst makes n attempts at once (ten at a time) with attempt and
// checks that each is refused with status and a Retry-After.
func refusedBurst(t *testing.T, n, status int, attempt func() (*wsClient, *http.Response, error)) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 10)
	for range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, resp, err := attempt()
			switch {
			case err != nil:
				errs <- err
			case c != nil:
				c.conn.Close()
				errs <- fmt.Errorf("admitted, want %d", status)
			case resp.StatusCode != status:
				errs <- fmt.Errorf("status %d, want %d", resp.StatusCode, status)
			case resp.Header.Get("Retry-After") == "":
				errs <- fmt.Errorf("%d without Retry-After", status)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("refused attempt: %v", err)
	}
}

// burstLines checks that the log has exactly one line opening a burst of
// refusals of limit and, once the burst is over, one summary of the rest.
func burstLines(t *testing.T, p *proxy, limit string, summary string) {
	t.Helper()
	if !waitLog(p, "limit "+limit+": refused", 5*time.Second) {
		t.Fatalf("no summary of the burst of refusals by %s", limit)
	}
	time.Sleep(300 * time.Millisecond) // nothing more comes
	var lines []string
	for _, l := range strings.Split(p.stderr.String(), "\n") {
		if strings.Contains(l, "limit "+limit) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 2 || !strings.Contains(lines[0], "limit "+limit+" reached: refused") || !strings.Contains(lines[1], summary) {
		t.Fatalf("log lines of %s:\n%s\nwant one opening the burst, then one with %q", limit, strings.Join(lines, "\n"), summary)
	}
}

// admittedWithin retries an upgrade from src until it is admitted.
func admittedWithin(t *testing.T, p *proxy, src string, d time.Duration) *wsClient {
	t.Helper()
	end := time.Now().Add(d)
	for {
		c, resp, err := upgradeFrom(p, src)
		if err != nil {
			t.Fatalf("upgrade: %v", err)
		}
		if c != nil {
			t.Cleanup(func() { c.conn.Close() })
			return c
		}
		if time.Now().After(end) {
			t.Fatalf("still refused (%d) after %v", resp.StatusCode, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustUpgradeFrom(t *testing.T, p *proxy, src string) *wsClient {
	t.Helper()
	c, resp, err := upgradeFrom(p, src)
	if err != nil || c == nil {
		t.Fatalf("upgrade from %s: %v (status %v)", src, err, resp.StatusCode)
	}
	t.Cleanup(func() { c.conn.Close() })
	return c
}

func TestLimitsSessionsPerIP(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "--max-sessions-per-ip", "2")
	a := mustUpgradeFrom(t, p, "127.0.0.1")
	b := mustUpgradeFrom(t, p, "127.0.0.1")
	refusedBurst(t, 50, 429, func() (*wsClient, *http.Response, error) { return upgradeFrom(p, "127.0.0.1") })
	other := mustUpgradeFrom(t, p, "127.0.0.2") // another address has its own count
	for _, c := range []*wsClient{a, b, other} {
		mustEcho(t, c, []byte("still here"))
	}
	burstLines(t, p, "max-sessions-per-ip=2", "refused 49 more upgrades from 127.0.0.1 in the last")
	if _, resp, _ := upgradeFrom(p, "127.0.0.1"); resp == nil || resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "5" {
		t.Fatalf("a third session: %v", resp)
	}

	// A session that ends gives its place back.
	if err := a.sendClose(1000, "bye"); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := a.expectClose(); err != nil {
		t.Fatalf("close: %v", err)
	}
	c := admittedWithin(t, p, "127.0.0.1", 3*time.Second)
	mustEcho(t, c, []byte("admitted again"))
	mustEcho(t, b, []byte("untouched"))
}

// --max-sessions over wss://, and a client that just goes away.
func TestLimitsMaxSessionsTLS(t *testing.T) {
	t.Parallel()
	pk := newPKI(t)
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "--max-sessions", "3", "--cert", pk.bundleFile)
	var open []*wsClient
	for range 3 {
		c, err := dialWSS(p, pk.clientTLS(nil), modeBinary)
		if err != nil {
			t.Fatalf("wss: %v", err)
		}
		t.Cleanup(func() { c.conn.Close() })
		open = append(open, c)
	}
	refusedBurst(t, 50, 503, func() (*wsClient, *http.Response, error) {
		conn, err := dialTLS(p, pk.clientTLS(nil))
		if err != nil {
			return nil, nil, err
		}
		return upgradeExpectingEnd(conn)
	})
	if _, resp, _ := upgradeFrom(p, "127.0.0.2"); resp == nil || resp.StatusCode != 503 { // every address
		t.Fatalf("plain ws from another address: %v", resp)
	}
	for _, c := range open {
		mustEcho(t, c, []byte("still here"))
	}
	burstLines(t, p, "max-sessions=3", "refused 50 more upgrades from 2 addresses (most from 127.0.0.1: 49) in the last")

	open[0].conn.Close()
	end := time.Now().Add(3 * time.Second)
	for {
		c, err := dialWSS(p, pk.clientTLS(nil), modeBinary)
		if err == nil {
			defer c.conn.Close()
			mustEcho(t, c, []byte("admitted again"))
			break
		}
		if !strings.Contains(err.Error(), "status 503") || time.Now().After(end) {
			t.Fatalf("after a session ended: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mustEcho(t, open[1], []byte("untouched"))
}

// --max-handshakes-per-ip counts upgrades and web connections alike, one
// per connection, and recovers as its bucket refills.
func TestLimitsHandshakeRate(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	web := t.TempDir()
	if err := os.WriteFile(filepath.Join(web, "index.html"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// One handshake every four seconds, a burst of one: the 50 attempts
	// all come before the next.
	p := startProxy(t, echo.addr, "--max-handshakes-per-ip", "0.25", "--web", web)

	// One web connection, several requests kept alive on it: one handshake.
	conn, err := dialFrom(p.addr, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	for i := range 3 {
		_ = conn.SetWriteDeadline(time.Now().Add(ioTimeout))
		if _, err := conn.Write([]byte("GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := readResponse(conn, br)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request %d on a kept-alive connection: %v %v", i, resp, err)
		}
		buf := make([]byte, resp.ContentLength)
		if _, err := io.ReadFull(br, buf); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()

	refusedBurst(t, 50, 429, func() (*wsClient, *http.Response, error) { return upgradeFrom(p, "127.0.0.1") })
	resp, _ := rawRequestFrom(t, p, "127.0.0.1", "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a web request: %d %v", resp.StatusCode, resp.Header)
	}
	other := mustUpgradeFrom(t, p, "127.0.0.2")
	mustEcho(t, other, []byte("another address"))
	burstLines(t, p, "max-handshakes-per-ip=0.25", "refused 50 more connections from 127.0.0.1 in the last")

	c := admittedWithin(t, p, "127.0.0.1", 6*time.Second)
	mustEcho(t, c, []byte("admitted again"))
	mustEcho(t, other, []byte("untouched"))
}

// rawRequestFrom is rawRequest from src.
func rawRequestFrom(t *testing.T, p *proxy, src, req string) (*http.Response, []byte) {
	t.Helper()
	conn, err := dialFrom(p.addr, src)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := readResponse(conn, br)
	if err != nil {
		t.Fatalf("response to %q: %v", truncate(req, 100), err)
	}
	body := make([]byte, max(0, resp.ContentLength))
	_, _ = io.ReadFull(br, body)
	return resp, body
}

// --max-request-head: 431 and the connection closed past it, in both
// directions of today's 16 KiB.
func TestLimitsRequestHead(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "--max-request-head", "1024")
	c := dialWS(t, p, modeBinary)
	cookie := func(n int) string {
		req := hybiReq{Extra: []string{"Cookie: " + strings.Repeat("c", n)}}
		req.Fill()
		return req.String()
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := p.dial()
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			_ = conn.SetWriteDeadline(time.Now().Add(ioTimeout))
			_, _ = conn.Write([]byte(cookie(2000)))
			br := bufio.NewReader(conn)
			resp, err := readResponse(conn, br)
			if err != nil {
				errs <- err
				return
			}
			if resp.StatusCode != 431 {
				errs <- fmt.Errorf("status %d, want 431", resp.StatusCode)
				return
			}
			buf := make([]byte, resp.ContentLength)
			_, _ = io.ReadFull(br, buf)
			if err := expectEOF(conn, br, 5*time.Second); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("an oversized head: %v", err)
	}
	mustEcho(t, c, []byte("still here"))
	burstLines(t, p, "max-request-head=1024", "refused 19 more requests from 127.0.0.1 in the last")
	// A head within the limit is served.
	conn, err := p.dial()
	if err != nil {
		t.Fatal(err)
	}
	if c2, resp, err := upgradeExpectingEnd(conn); err != nil || c2 == nil {
		t.Fatalf("a head within the limit: %v %v", resp, err)
	} else {
		defer c2.conn.Close()
	}

	// Raised past what a session otherwise holds unread (64 KiB), a large
	// head still comes in whole.
	p2 := startProxy(t, echo.addr, "--max-request-head", "200000")
	conn, err = p2.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	big := hybiReq{Extra: []string{"Cookie: " + strings.Repeat("c", 150000)}}
	big.Fill()
	c3, err := handshakeHyBi(conn, big, nil)
	if err != nil {
		t.Fatalf("a 150 KB head under --max-request-head 200000: %v", err)
	}
	mustEcho(t, c3, []byte("big head"))
}

// --max-frame-size: 1009 for HyBi, the close frame for Hixie; other
// sessions go on.
func TestLimitsFrameSize(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "--max-frame-size", "1000")
	bystander := dialWS(t, p, modeBinary)

	c := dialWS(t, p, modeBinary)
	mustEcho(t, c, make([]byte, 1000))
	if err := c.send(make([]byte, 1001)); err != nil {
		t.Fatal(err)
	}
	code, reason, _, err := c.expectClose()
	if err != nil || code != 1009 || reason != "Message too big" {
		t.Fatalf("a 1001-byte frame: close %d %q, %v", code, reason, err)
	}
	if err := expectEOF(c.conn, c.br, 5*time.Second); err != nil {
		t.Fatal(err)
	}

	h, err := dialHixie(p, 76, "", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.conn.Close()
	mustEcho(t, h, make([]byte, 750)) // 1000 base64 characters
	if err := h.send(make([]byte, 751)); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := h.expectClose(); err != nil {
		t.Fatalf("Hixie, an oversized frame: %v", err)
	}
	if err := expectEOF(h.conn, h.br, 5*time.Second); err != nil {
		t.Fatal(err)
	}

	// With base64 the limit is on the frame's text.
	b := dialWS(t, p, modeBase64)
	mustEcho(t, b, make([]byte, 750))
	_ = b.send(make([]byte, 753))
	if code, _, _, err := b.expectClose(); err != nil || code != 1009 {
		t.Fatalf("base64, an oversized frame: %d %v", code, err)
	}
	mustEcho(t, bystander, []byte("untouched"))
	if !waitLog(p, "Closing connection: 1009 Message too big", 5*time.Second) {
		t.Error("no log line for the 1009")
	}
}

// Bad values are usage errors.
func TestLimitsUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--max-sessions", "-1"},
		{"--max-sessions-per-ip", "-1"},
		{"--max-handshakes-per-ip", "-2"},
		{"--max-request-head", "10"},
		{"--max-frame-size", "-1"},
		{"--max-sessions", "many"},
	} {
		r := runCLI(t, 10*time.Second, append(args, "6080", "127.0.0.1:5900")...)
		reason, _, _ := strings.Cut(r.stderr, "\n")
		if r.code != 2 || !strings.Contains(reason, args[0]) {
			t.Errorf("%q: exit %d, first line %q, want exit 2 and a reason naming the option", args, r.code, reason)
		}
	}
}
