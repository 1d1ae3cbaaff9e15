package test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// webConn is one raw HTTP connection to the proxy: requests are written
// exactly as given, so paths reach the server without a client's cleaning.
type webConn struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

func dialWeb(t testing.TB, p *proxy) *webConn {
	t.Helper()
	conn, err := p.dial()
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return &webConn{t: t, conn: conn, br: bufio.NewReaderSize(conn, 64<<10)}
}

// do sends raw (nothing when empty) and reads the whole response; method
// tells whether a body follows (none for HEAD).
func (w *webConn) do(method, raw string) (*http.Response, []byte) {
	w.t.Helper()
	_ = w.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := w.conn.Write([]byte(raw)); raw != "" && err != nil {
		w.t.Fatalf("write %q: %v", truncate(raw, 100), err)
	}
	_ = w.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	resp, err := http.ReadResponse(w.br, &http.Request{Method: method})
	if err != nil {
		w.t.Fatalf("response to %q: %v", truncate(raw, 100), err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		w.t.Fatalf("body of the response to %q: %v", truncate(raw, 100), err)
	}
	return resp, body
}

func (w *webConn) get(path string) (*http.Response, []byte) {
	w.t.Helper()
	return w.do("GET", "GET "+path+" HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

// webTree makes a web root beside a secret file and returns the root.
func webTree(t *testing.T) (root string, big []byte, mod time.Time) {
	t.Helper()
	base := t.TempDir()
	root = filepath.Join(base, "www")
	big = make([]byte, 5<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"www/app.js":          []byte("console.log('hi');\n"),
		"www/app/index.html":  []byte("<p>index</p>\n"),
		"www/list/one.txt":    []byte("1\n"),
		"www/list/<two>.txt":  []byte("2\n"),
		"www/big.bin":         big,
		"secret.txt":          []byte("TOP SECRET\n"),
		"outside/public.html": []byte("TOP SECRET too\n"),
	}
	for name, body := range files {
		p := filepath.Join(base, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, to := range map[string]string{"www/leak.txt": "../secret.txt", "www/leakdir": "../outside"} {
		if err := os.Symlink(to, filepath.Join(base, name)); err != nil {
			t.Fatal(err)
		}
	}
	mod = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(root, "app.js"), mod, mod); err != nil {
		t.Fatal(err)
	}
	return root, big, mod
}

// Section 5: the web server on the proxy's port.
func TestWebServer(t *testing.T) {
	t.Parallel()
	root, big, mod := webTree(t)
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "--web", root)
	fileOnly := startProxy(t, echo.addr, "--web", root, "--file-only")

	t.Run("banner", func(t *testing.T) {
		if want := "  - Web server. Web root: " + root + "\n"; !strings.Contains(p.stderr.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, p.stderr.String())
		}
	})

	t.Run("get-and-head", func(t *testing.T) {
		t.Parallel()
		w := dialWeb(t, p)
		want := map[string]string{
			"Content-Type":   "text/javascript",
			"Content-Length": "19",
			"Last-Modified":  mod.Format(http.TimeFormat),
			"Connection":     "keep-alive",
		}
		resp, body := w.get("/app.js")
		if resp.StatusCode != 200 || string(body) != "console.log('hi');\n" {
			t.Fatalf("GET: status %d body %q", resp.StatusCode, body)
		}
		for k, v := range want {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("GET: %s = %q, want %q", k, got, v)
			}
		}
		// HEAD has the same headers and no body: the next response on the
		// connection must start right after the head.
		resp, _ = w.do("HEAD", "HEAD /app.js HTTP/1.1\r\nHost: localhost\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("HEAD: status %d", resp.StatusCode)
		}
		for k, v := range want {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("HEAD: %s = %q, want %q", k, got, v)
			}
		}
		if resp, body := w.get("/app/"); resp.StatusCode != 200 || string(body) != "<p>index</p>\n" {
			t.Fatalf("GET after HEAD: status %d body %q", resp.StatusCode, body)
		}
	})

	statuses := []struct {
		name, raw string
		status    int
		header    map[string]string
		body      string // exact when set
	}{
		{"missing", "GET /nope.js HTTP/1.1\r\nHost: x\r\n\r\n", 404, nil, ""},
		{"post", "POST /app.js HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, map[string]string{"Allow": "GET, HEAD"}, ""},
		{"delete", "DELETE /app.js HTTP/1.1\r\nHost: x\r\n\r\n", 405, map[string]string{"Allow": "GET, HEAD"}, ""},
		{"dir-redirect", "GET /app?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", 301, map[string]string{"Location": "/app/?x=1"}, ""},
		{"index-html", "GET /app/ HTTP/1.1\r\nHost: x\r\n\r\n", 200, map[string]string{"Content-Type": "text/html"}, "<p>index</p>\n"},
		{"not-modified", "GET /app.js HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: " + mod.Format(http.TimeFormat) + "\r\n\r\n", 304, nil, ""},
		{"modified", "GET /app.js HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: " + mod.Add(-time.Second).Format(http.TimeFormat) + "\r\n\r\n", 200, nil, "console.log('hi');\n"},
	}
	for _, tc := range statuses {
		t.Run("status/"+tc.name, func(t *testing.T) {
			t.Parallel()
			resp, body := dialWeb(t, p).do("GET", tc.raw)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			for k, v := range tc.header {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if tc.body != "" && string(body) != tc.body {
				t.Errorf("body %q, want %q", body, tc.body)
			}
		})
	}

	t.Run("listing-and-file-only", func(t *testing.T) {
		t.Parallel()
		resp, body := dialWeb(t, p).get("/list/")
		if resp.StatusCode != 200 || !bytes.Contains(body, []byte(`<a href="one.txt">one.txt</a>`)) ||
			!bytes.Contains(body, []byte("&lt;two&gt;.txt")) || bytes.Contains(body, []byte("<two>")) {
			t.Fatalf("listing: status %d body:\n%s", resp.StatusCode, body)
		}
		if resp, _ := dialWeb(t, fileOnly).get("/list/"); resp.StatusCode != 404 {
			t.Errorf("--file-only listing: status %d, want 404", resp.StatusCode)
		}
		if resp, body := dialWeb(t, fileOnly).get("/app/"); resp.StatusCode != 200 || string(body) != "<p>index</p>\n" {
			t.Errorf("--file-only index: status %d body %q", resp.StatusCode, body)
		}
	})

	t.Run("big-file", func(t *testing.T) {
		t.Parallel()
		resp, body := dialWeb(t, p).get("/big.bin")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Length") != strconv.Itoa(len(big)) {
			t.Fatalf("status %d Content-Length %q", resp.StatusCode, resp.Header.Get("Content-Length"))
		}
		if !bytes.Equal(body, big) {
			t.Fatalf("got %d bytes, not the file's %d", len(body), len(big))
		}
	})

	t.Run("keep-alive-then-upgrade", func(t *testing.T) {
		t.Parallel()
		w := dialWeb(t, p)
		for i := 0; i < 2; i++ {
			if resp, body := w.get("/app.js"); resp.StatusCode != 200 || string(body) != "console.log('hi');\n" {
				t.Fatalf("GET %d: status %d body %q", i, resp.StatusCode, body)
			}
		}
		req := hybiReq{Protocol: modeBinary}
		req.Fill()
		c, err := handshakeFromRaw(w.conn, req.String(), req.Key)
		if err != nil {
			t.Fatalf("upgrade after two GETs: %v", err)
		}
		mustEcho(t, c, []byte("after keep-alive"))
	})

	t.Run("head-big-file-and-http10-keep-alive", func(t *testing.T) {
		t.Parallel()
		w := dialWeb(t, p)
		resp, _ := w.do("HEAD", "HEAD /big.bin HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Length") != strconv.Itoa(len(big)) ||
			resp.Header.Get("Connection") != "keep-alive" {
			t.Fatalf("HEAD: status %d Content-Length %q Connection %q", resp.StatusCode,
				resp.Header.Get("Content-Length"), resp.Header.Get("Connection"))
		}
		// No body followed: the next response is the next request's.
		if resp, body := w.get("/app.js"); resp.StatusCode != 200 || string(body) != "console.log('hi');\n" {
			t.Fatalf("GET after HEAD: status %d body %q", resp.StatusCode, body)
		}
	})

	t.Run("pipelined", func(t *testing.T) {
		t.Parallel()
		w := dialWeb(t, p)
		two := "GET /app.js HTTP/1.1\r\nHost: x\r\n\r\nGET /app/ HTTP/1.1\r\nHost: x\r\n\r\n"
		if resp, body := w.do("GET", two); resp.StatusCode != 200 || string(body) != "console.log('hi');\n" {
			t.Fatalf("first: status %d body %q", resp.StatusCode, body)
		}
		if resp, body := w.do("GET", ""); resp.StatusCode != 200 || string(body) != "<p>index</p>\n" {
			t.Fatalf("second: status %d body %q", resp.StatusCode, body)
		}
	})

	t.Run("log-line", func(t *testing.T) {
		t.Parallel()
		dialWeb(t, p).get("/app.js?log-line")
		want := `] "GET /app.js?log-line HTTP/1.1" 200 -`
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(p.stderr.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("no log line with %q", want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("connection-close", func(t *testing.T) {
		t.Parallel()
		for _, raw := range []string{
			"GET /app.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			"GET /app.js HTTP/1.0\r\n\r\n",
		} {
			w := dialWeb(t, p)
			if resp, _ := w.do("GET", raw); resp.StatusCode != 200 {
				t.Fatalf("%q: status %d", raw, resp.StatusCode)
			}
			if err := expectEOF(w.conn, w.br, 10*time.Second); err != nil {
				t.Errorf("%q: %v", raw, err)
			}
		}
	})

	t.Run("traversal", func(t *testing.T) {
		t.Parallel()
		for _, path := range []string{
			"/../secret.txt",
			"/app/../../secret.txt",
			"/%2e%2e/secret.txt",
			"/%2E%2E%2Fsecret.txt",
			"/..%2fsecret.txt",
			"/app%2f..%2f..%2fsecret.txt",
			"//../secret.txt",
			"/..\\secret.txt",
			"/%5c..%5csecret.txt",
			"/secret.txt%00",
			"/%00/../secret.txt",
			"/leak.txt",
			"/leakdir/public.html",
			"/leakdir/",
			"/%252e%252e/secret.txt",
			"../secret.txt",
		} {
			resp, body := dialWeb(t, p).get(path)
			if resp.StatusCode != 404 && resp.StatusCode != 400 {
				t.Errorf("GET %s: status %d, want 404 or 400", path, resp.StatusCode)
			}
			if bytes.Contains(body, []byte("SECRET")) {
				t.Errorf("GET %s: served %q", path, body)
			}
		}
	})
}

// Section 5 and 4 (bounded memory): clients that ask for a large file and
// then read nothing hold the proxy's memory to a few chunks each, not the
// file.
func TestWebStalledDownloads(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	const size = 64 << 20
	// Sparse: instant to make, and reads like any other file.
	f, err := os.Create(filepath.Join(root, "huge.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	p := startProxy(t, startEcho(t).addr, "--web", root)
	before, err := vmRSS(p.pid())
	if err != nil {
		t.Fatal(err)
	}

	const clients = 8
	for i := 0; i < clients; i++ {
		w := dialWeb(t, p)
		if err := w.conn.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
			t.Fatal(err)
		}
		if _, err := w.conn.Write([]byte("GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * time.Second) // let every download fill what it can
	after, err := vmRSS(p.pid())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("RSS grew by %d KiB", (after-before)>>10)
	// Unbounded, the process would hold most of clients*size (512 MiB).
	if grew := after - before; grew > 64<<20 {
		t.Errorf("RSS grew by %d MiB with %d stalled downloads of %d MiB", grew>>20, clients, size>>20)
	}

	// The proxy still answers, and a stalled download resumes when read.
	if resp, _ := dialWeb(t, p).get("/"); resp.StatusCode != 200 {
		t.Errorf("listing during stalled downloads: status %d", resp.StatusCode)
	}
	w := dialWeb(t, p)
	resp, body := w.get("/huge.bin")
	if resp.StatusCode != 200 || len(body) != size {
		t.Errorf("full download: status %d, %d bytes", resp.StatusCode, len(body))
	}
}

// https://: --web behaves over TLS as over plain HTTP, several requests on
// one connection included.
func TestWebOverTLS(t *testing.T) {
	t.Parallel()
	root, big, _ := webTree(t)
	pk := newPKI(t)
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "--cert", pk.bundleFile, "--web", root)

	tc, err := dialTLS(p, pk.clientTLS(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	w := &webConn{t: t, conn: tc, br: bufio.NewReaderSize(tc, 64<<10)}

	resp, body := w.get("/app/")
	if resp.StatusCode != 200 || string(body) != "<p>index</p>\n" {
		t.Fatalf("GET /app/ over TLS: %d %q", resp.StatusCode, truncate(string(body), 80))
	}
	if resp, _ := w.get("/missing"); resp.StatusCode != 404 {
		t.Fatalf("GET /missing over TLS: %d, want 404", resp.StatusCode)
	}
	resp, body = w.get("/big.bin")
	if resp.StatusCode != 200 || !bytes.Equal(body, big) {
		t.Fatalf("GET /big.bin over TLS: %d, %d bytes, want %d byte-exact", resp.StatusCode, len(body), len(big))
	}
	if resp, _ := w.do("POST", "POST /app/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"); resp.StatusCode != 405 {
		t.Fatalf("POST over TLS: %d, want 405", resp.StatusCode)
	}
}
