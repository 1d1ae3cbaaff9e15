package test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// --metrics-listen through the real binary: what a scrape says is checked
// against the sessions the test ran, exactly.

// scrape is one /metrics page: each sample by its name and labels, as
// promhttp writes them ("name{a=\"x\",b=\"y\"}", labels sorted by name).
type scrape map[string]float64

func getMetrics(addr string) (scrape, error) {
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	m := scrape{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("bad sample %q", line)
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

func mustScrape(t *testing.T, addr string) scrape {
	t.Helper()
	m, err := getMetrics(addr)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	return m
}

// waitScrape scrapes until ok accepts a page, for up to 10s, and returns
// the last page.
func waitScrape(t *testing.T, addr string, ok func(scrape) bool) scrape {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := mustScrape(t, addr)
		if ok(m) || time.Now().After(deadline) {
			return m
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// expect checks samples exactly; a sample missing from the page counts as
// a mismatch.
func (m scrape) expect(t *testing.T, want map[string]float64) {
	t.Helper()
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		got, ok := m[k]
		if !ok {
			t.Errorf("%s: missing", k)
		} else if got != want[k] {
			t.Errorf("%s = %v, want %v", k, got, want[k])
		}
	}
}

func sessionKey(name, transport, protocol string, end ...string) string {
	if len(end) > 0 {
		return fmt.Sprintf(`%s{end=%q,protocol=%q,transport=%q}`, name, end[0], protocol, transport)
	}
	return fmt.Sprintf(`%s{protocol=%q,transport=%q}`, name, protocol, transport)
}

func failureKey(reason string) string {
	return fmt.Sprintf("websockify_handshake_failures_total{reason=%q}", reason)
}

// metricsAddr is a fresh 127.0.0.1:port for --metrics-listen.
func metricsAddr(t *testing.T) string {
	return "127.0.0.1:" + strconv.Itoa(freePort(t, "127.0.0.1"))
}

// TestMetricsSessions: ws, wss and Hixie sessions, refused handshakes and
// the public port's /metrics, counted exactly; bytes as sent; gauges back
// at zero once the sessions are over.
func TestMetricsSessions(t *testing.T) {
	t.Parallel()
	pk := newPKI(t)
	echo := startEcho(t)
	maddr := metricsAddr(t)
	p := startProxy(t, echo.addr, "--cert", pk.bundleFile, "--metrics-listen", maddr)

	// Nothing yet but the connection the test made to see the proxy up,
	// which left without a word; every expected series is there.
	waitScrape(t, maddr, func(m scrape) bool {
		return m["websockify_connections_total"] == 1 && m["websockify_connections_open"] == 0
	}).expect(t, map[string]float64{
		"websockify_connections_total":                                              1,
		failureKey("client_gone"):                                                   1,
		sessionKey("websockify_sessions_total", "ws", "hybi"):                       0,
		sessionKey("websockify_sessions_ended_total", "wss", "hybi", "client_gone"): 0,
		failureKey("not_upgrade"):                                                   0,
		`websockify_relayed_bytes_total{direction="client_to_target"}`:              0,
		"websockify_fd_budget_refusals_total":                                       0,
	})

	// The public port does not serve metrics: it refuses a plain GET.
	resp, body := rawRequest(t, p, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 405 || strings.Contains(string(body), "websockify_") {
		t.Fatalf("public port GET /metrics: %d %q, want 405 and no metrics", resp.StatusCode, body)
	}

	// One ws:// session, open while scraped, then closed by the client.
	ws := dialWS(t, p, modeBinary)
	mustEcho(t, ws, make([]byte, 1000))
	m := waitScrape(t, maddr, func(m scrape) bool { // the refused one's close may linger a moment
		return m[sessionKey("websockify_sessions_open", "ws", "hybi")] == 1 && m["websockify_connections_open"] == 1
	})
	m.expect(t, map[string]float64{
		sessionKey("websockify_sessions_open", "ws", "hybi"):  1,
		sessionKey("websockify_sessions_total", "ws", "hybi"): 1,
		"websockify_connections_open":                         1,
		"websockify_fd_budget_in_use":                         2, // client and target
	})
	if _, ok := m[`websockify_event_loop_lag_seconds{loop="0"}`]; !ok {
		t.Errorf("no event loop lag for loop 0")
	}
	if err := ws.sendClose(1000, "bye"); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := ws.expectClose(); err != nil {
		t.Fatal(err)
	}

	// wss://, 5000 bytes each way, then the client just goes.
	wss, err := dialWSS(p, pk.clientTLS(nil), modeBinary)
	if err != nil {
		t.Fatal(err)
	}
	mustEcho(t, wss, make([]byte, 5000))
	wss.conn.Close()

	// Hixie-76, 300 bytes, closed by the client.
	hx, err := dialHixie(p, 76, "", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustEcho(t, hx, make([]byte, 300))
	if err := hx.sendClose(0, ""); err != nil {
		t.Fatal(err)
	}
	_ = expectEOF(hx.conn, hx.br, 5*time.Second)
	hx.conn.Close()

	// A request that is not an upgrade, and one that does not parse.
	rawRequest(t, p, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	rawRequest(t, p, "NONSENSE\r\n\r\n")

	m = waitScrape(t, maddr, func(m scrape) bool {
		return m["websockify_connections_total"] == 7 && m["websockify_connections_open"] == 0
	})
	m.expect(t, map[string]float64{
		"websockify_connections_total":                                                   7,
		failureKey("client_gone"):                                                        1,
		"websockify_connections_open":                                                    0,
		sessionKey("websockify_sessions_total", "ws", "hybi"):                            1,
		sessionKey("websockify_sessions_total", "wss", "hybi"):                           1,
		sessionKey("websockify_sessions_total", "ws", "hixie-76"):                        1,
		sessionKey("websockify_sessions_total", "ws", "hixie-75"):                        0,
		sessionKey("websockify_sessions_open", "ws", "hybi"):                             0,
		sessionKey("websockify_sessions_open", "wss", "hybi"):                            0,
		sessionKey("websockify_sessions_open", "ws", "hixie-76"):                         0,
		sessionKey("websockify_sessions_ended_total", "ws", "hybi", "client_closed"):     1,
		sessionKey("websockify_sessions_ended_total", "wss", "hybi", "client_gone"):      1,
		sessionKey("websockify_sessions_ended_total", "ws", "hixie-76", "client_closed"): 1,
		sessionKey("websockify_sessions_ended_total", "ws", "hybi", "target_closed"):     0,
		failureKey("not_upgrade"):                                                        2, // with the public /metrics
		failureKey("bad_request"):                                                        1,
		failureKey("tls_failed"):                                                         0,
		`websockify_relayed_bytes_total{direction="client_to_target"}`:                   6300,
		`websockify_relayed_bytes_total{direction="target_to_client"}`:                   6300,
		"websockify_fd_budget_in_use":                                                    0,
		"websockify_reads_paused":                                                        0,
	})

	// The listener's own page points to /metrics; other paths are 404.
	r, err := http.Get("http://" + maddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if !strings.Contains(string(page), `href="/metrics"`) {
		t.Errorf("index page %q", page)
	}
	if r, err := http.Get("http://" + maddr + "/other"); err != nil || r.StatusCode != 404 {
		t.Errorf("GET /other: %v %v, want 404", r, err)
	}
}

// TestMetricsTokensAndAuth: token lookups and auth checks by plugin and
// outcome, and the refusals and the unreachable target they lead to.
func TestMetricsTokensAndAuth(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	tokens := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, tokens, "good: "+echo.addr+"\ndown: "+closedPort(t)+"\n")
	maddr := metricsAddr(t)
	p := launchProxy(t, proxyConfig{Args: []string{"--token-plugin", "TokenFile", "--token-source", tokens,
		"--auth-plugin", "ExpectOrigin", "--auth-source", "http://good.example", "--metrics-listen", maddr}})
	origin := "Origin: http://good.example"

	r := expectRefused(t, p, nil, "/?token=good", 101, "", origin)
	mustEcho(t, r.c, []byte("routed"))
	r.c.conn.Close()
	expectRefused(t, p, nil, "/?token=nope", 403, "Token 'nope' not found", origin)
	expectRefused(t, p, nil, "/?token=good", 403, "Invalid Origin", "Origin: http://evil.example")
	expectRefused(t, p, nil, "/", 403, "Token not present", origin)
	r = expectRefused(t, p, nil, "/?token=down", 101, "", origin)
	if code, _, _, err := r.c.expectClose(); err != nil || code != 1011 {
		t.Fatalf("token to a closed port: close %d, %v; want 1011", code, err)
	}
	r.c.conn.Close()

	m := waitScrape(t, maddr, func(m scrape) bool {
		return m["websockify_connections_total"] == 6 && m["websockify_connections_open"] == 0
	})
	m.expect(t, map[string]float64{
		`websockify_token_lookup_seconds_count{outcome="found",plugin="TokenFile"}`:     2,
		`websockify_token_lookup_seconds_count{outcome="not_found",plugin="TokenFile"}`: 1,
		`websockify_token_lookup_seconds_count{outcome="error",plugin="TokenFile"}`:     0,
		`websockify_auth_check_seconds_count{outcome="allowed",plugin="ExpectOrigin"}`:  3,
		`websockify_auth_check_seconds_count{outcome="refused",plugin="ExpectOrigin"}`:  1,
		failureKey("token_not_found"):                                                     1,
		failureKey("auth_refused"):                                                        1,
		failureKey("client_gone"):                                                         1, // the test's first connection, to see the proxy up
		failureKey("token_missing"):                                                       1,
		sessionKey("websockify_sessions_total", "ws", "hybi"):                             2,
		sessionKey("websockify_sessions_ended_total", "ws", "hybi", "client_gone"):        1,
		sessionKey("websockify_sessions_ended_total", "ws", "hybi", "target_unreachable"): 1,
		sessionKey("websockify_sessions_open", "ws", "hybi"):                              0,
	})
}

// TestMetricsBackpressure: a client that does not read pauses its target,
// and a scrape sees it paused (the loop counts it when asked).
func TestMetricsBackpressure(t *testing.T) {
	t.Parallel()
	flood := startTarget(t, "tcp", "127.0.0.1:0", func(c *tconn) {
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	maddr := metricsAddr(t)
	p := startProxy(t, flood.addr, "--metrics-listen", maddr)
	c := dialWS(t, p, modeBinary) // and never read
	m := waitScrape(t, maddr, func(m scrape) bool { return m["websockify_reads_paused"] >= 1 })
	if m["websockify_reads_paused"] < 1 || m["websockify_read_pauses_total"] < 1 {
		t.Fatalf("reads_paused %v, read_pauses_total %v with a client that does not read; want both >= 1",
			m["websockify_reads_paused"], m["websockify_read_pauses_total"])
	}
	c.conn.Close()
	m = waitScrape(t, maddr, func(m scrape) bool { return m["websockify_connections_open"] == 0 })
	m.expect(t, map[string]float64{"websockify_reads_paused": 0, "websockify_connections_open": 0})
}

// TestMetricsWorkers: with --workers 2 one address shows both workers'
// sessions, labelled; a worker being replaced leaves the scrape working.
func TestMetricsWorkers(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	maddr := metricsAddr(t)
	p := launchProxy(t, proxyConfig{Args: []string{"--workers", "2", "--metrics-listen", maddr, echo.addr}})
	if !waitLog(p, "workers listening", 5*time.Second) {
		t.Fatalf("no 'workers listening' line")
	}
	const clients = 24
	for i := range clients {
		c, err := dialWSE(p, modeBinary, nil)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if err := c.echo([]byte("hello")); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		c.conn.Close()
	}
	key := func(worker string) string {
		return fmt.Sprintf(`websockify_sessions_total{protocol="hybi",transport="ws",worker=%q}`, worker)
	}
	open := func(worker string) string {
		return fmt.Sprintf(`websockify_connections_open{worker=%q}`, worker)
	}
	m := waitScrape(t, maddr, func(m scrape) bool {
		return m[key("0")]+m[key("1")] == clients && m[open("0")]+m[open("1")] == 0
	})
	if m[key("0")]+m[key("1")] != clients || m[key("0")] == 0 || m[key("1")] == 0 {
		t.Fatalf("sessions by worker: %v and %v; want %d in all, on both", m[key("0")], m[key("1")], clients)
	}
	m.expect(t, map[string]float64{
		`websockify_worker_up{worker="0"}`: 1,
		`websockify_worker_up{worker="1"}`: 1,
	})
	if got := m[`websockify_relayed_bytes_total{direction="client_to_target",worker="0"}`] +
		m[`websockify_relayed_bytes_total{direction="client_to_target",worker="1"}`]; got != 5*clients {
		t.Errorf("bytes to targets over both workers: %v, want %d", got, 5*clients)
	}
	if _, ok := m[`process_open_fds{worker="parent"}`]; !ok {
		t.Errorf("no process metrics of the parent")
	}

	// Kill one worker: scrapes go on, partial, until its replacement answers.
	pids := childPIDs(t, p.pid())
	if len(pids) != 2 {
		t.Fatalf("%d workers, want 2", len(pids))
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	sawDown := false
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		m = mustScrape(t, maddr) // never a failed scrape
		up0, up1 := m[`websockify_worker_up{worker="0"}`], m[`websockify_worker_up{worker="1"}`]
		if up0 == 0 || up1 == 0 {
			sawDown = true
		}
		if sawDown && up0 == 1 && up1 == 1 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if m[`websockify_worker_up{worker="0"}`] != 1 || m[`websockify_worker_up{worker="1"}`] != 1 {
		t.Fatalf("workers not both up again after a replacement: %v", m)
	}
	if !sawDown {
		t.Logf("the replacement answered before any scrape saw it gone")
	}
	c, err := dialWSE(p, modeBinary, nil) // still serving
	if err != nil {
		t.Fatal(err)
	}
	c.conn.Close()
}

// TestMetricsUsageErrors: a bad or clashing --metrics-listen is a usage
// error (exit 2); an address in use fails the start (exit 1).
func TestMetricsUsageErrors(t *testing.T) {
	t.Parallel()
	port := strconv.Itoa(freePort(t, "127.0.0.1"))
	for _, args := range [][]string{
		{"--metrics-listen", "nope", port, "127.0.0.1:1"},
		{"--metrics-listen", "70000", port, "127.0.0.1:1"},
		{"--metrics-listen", port, port, "127.0.0.1:1"},
		{"--metrics-listen", "127.0.0.1:" + port, port, "127.0.0.1:1"},
		{"--metrics-listen", "0.0.0.0:" + port, "127.0.0.1:" + port, "127.0.0.1:1"},
		{"--metrics-listen", "unix:/tmp/x.sock", "--unix-listen", "/tmp/x.sock", port, "127.0.0.1:1"},
	} {
		res := runCLI(t, 10*time.Second, args...)
		if res.code != 2 || !strings.Contains(res.stderr, "--metrics-listen") {
			t.Errorf("websockify %q: exit %d, stderr %q; want 2 naming --metrics-listen", args, res.code, res.stderr)
		}
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	res := runCLI(t, 10*time.Second, "--metrics-listen", busy.Addr().String(), port, "127.0.0.1:1")
	if res.code != 1 || !strings.Contains(res.stderr, "address already in use") {
		t.Errorf("--metrics-listen on a busy port: exit %d, stderr %q; want 1, in use", res.code, res.stderr)
	}
}

// TestMetricsUnixSocket: --metrics-listen takes a unix socket path.
func TestMetricsUnixSocket(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	sock := filepath.Join(t.TempDir(), "metrics.sock")
	p := startProxy(t, echo.addr, "--metrics-listen", sock)
	c := dialWS(t, p, modeBinary)
	mustEcho(t, c, []byte("x"))
	client := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	resp, err := client.Get("http://metrics/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `websockify_sessions_open{protocol="hybi",transport="ws"} 1`) {
		t.Fatalf("scrape over the unix socket lacks the open session:\n%s", truncate(string(body), 3000))
	}
}

// TestMetricsRefusals: refusals by the limits, PROXY headers refused, an
// oversized request head and an oversized frame, each counted under its
// own reason (and the limits by name).
func TestMetricsRefusals(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	maddr := metricsAddr(t)
	// Only 127.0.0.2 may send PROXY headers; the test's other clients are
	// direct.
	p := startProxy(t, echo.addr, "--metrics-listen", maddr, "--max-sessions-per-ip", "1",
		"--max-request-head", "1024", "--max-frame-size", "100",
		"--proxy-protocol", "--trusted-proxies", "127.0.0.2")

	first := dialWS(t, p, modeBinary)
	if _, resp, err := upgradeFrom(p, "127.0.0.1"); err != nil || resp.StatusCode != 429 {
		t.Fatalf("a second session from 127.0.0.1: %v, %v; want 429", resp, err)
	}
	// A PROXY header from an address that may not send one.
	conn, err := dialFrom(p.addr, "127.0.0.3")
	if err != nil {
		t.Fatal(err)
	}
	src, dst := netip.MustParseAddrPort("203.0.113.7:5000"), netip.MustParseAddrPort("127.0.0.1:6080")
	if _, err := conn.Write(proxyV2(src, dst)); err != nil {
		t.Fatal(err)
	}
	if err := expectEOF(conn, bufio.NewReader(conn), 5*time.Second); err != nil {
		t.Fatalf("an untrusted PROXY header: %v", err)
	}
	conn.Close()
	// A request head over 1024 bytes, from another address.
	big := hybiReq{Extra: []string{"X-Padding: " + strings.Repeat("a", 2000)}}
	big.Fill()
	conn, err = dialFrom(p.addr, "127.0.0.4")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte(big.String()))
	if resp, err := readResponse(conn, bufio.NewReader(conn)); err != nil || resp.StatusCode != 431 {
		t.Fatalf("a 2 KB request head: %v, %v; want 431", resp, err)
	}
	conn.Close()
	// A frame over 100 bytes ends the first session with 1009.
	if err := first.send(make([]byte, 101)); err != nil {
		t.Fatal(err)
	}
	if code, _, _, err := first.expectClose(); err != nil || code != 1009 {
		t.Fatalf("a 101-byte frame: close %d, %v; want 1009", code, err)
	}
	first.conn.Close()

	waitScrape(t, maddr, func(m scrape) bool {
		return m["websockify_connections_total"] == 5 && m["websockify_connections_open"] == 0
	}).expect(t, map[string]float64{
		failureKey("limited"):        1,
		failureKey("proxy_header"):   1,
		failureKey("head_too_large"): 1,
		sessionKey("websockify_sessions_ended_total", "ws", "hybi", "message_too_big"): 1,
		`websockify_limit_refusals_total{limit="max_sessions_per_ip"}`:                 1,
		`websockify_limit_refusals_total{limit="max_request_head"}`:                    1,
	})
}
