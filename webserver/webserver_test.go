package webserver

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gowebsockify/websockify/codec"
)

// tree builds a web root with a secret file beside it, and returns the root.
func tree(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "www")
	files := map[string]string{
		"www/app.js":           "let x = 1;\n",
		"www/vnc.html":         "<html></html>\n",
		"www/style.CSS":        "body{}\n",
		"www/sub/index.html":   "sub index\n",
		"www/sub2/index.htm":   "sub2 index\n",
		"www/list/a.txt":       "a\n",
		"www/list/<b>&'\".txt": "b\n",
		"www/list/d/x":         "x\n",
		"www/100%.txt":         "percent\n",
		"secret.txt":           "secret\n",
		"outside/f":            "outside\n",
	}
	for name, body := range files {
		p := filepath.Join(base, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"www/out.txt":   "../secret.txt",
		"www/outdir":    "../outside",
		"www/inside.js": "app.js",
		"www/abs.txt":   filepath.Join(base, "secret.txt"),
		"www/list/ln":   "a.txt",
	}
	for name, to := range links {
		if err := os.Symlink(to, filepath.Join(base, name)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func newServer(t *testing.T, fileOnly bool) *Server {
	t.Helper()
	s, err := New(tree(t), fileOnly)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func get(target string, header ...string) *codec.Request {
	return request("GET", target, header...)
}

func request(method, target string, header ...string) *codec.Request {
	raw := method + " " + target + " HTTP/1.1\r\nHost: x\r\n"
	for _, h := range header {
		raw += h + "\r\n"
	}
	req, n, err := codec.ParseRequest([]byte(raw+"\r\n"), codec.MaxHeaderBytes)
	if err != nil || n == 0 {
		panic("bad test request " + raw)
	}
	return req
}

// headerOf parses the head of r.
func headerOf(t *testing.T, r *Response) http.Header {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(string(r.Head), "\r\n\r\n"), "\r\n")
	h := http.Header{}
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, ": ")
		if !ok {
			t.Fatalf("bad header line %q", l)
		}
		h.Add(k, v)
	}
	return h
}

var now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestPaths(t *testing.T) {
	s := newServer(t, false)
	tests := []struct {
		target string
		status int
		body   string
	}{
		{"/app.js", 200, "let x = 1;\n"},
		{"/app.js?v=3#frag", 200, "let x = 1;\n"},
		{"//app.js", 200, "let x = 1;\n"},
		{"/./app.js", 200, "let x = 1;\n"},
		{"/%61pp.js", 200, "let x = 1;\n"},
		{"/100%25.txt", 200, "percent\n"},
		{"/inside.js", 200, "let x = 1;\n"},
		{"/sub/", 200, "sub index\n"},
		{"/sub2/", 200, "sub2 index\n"},
		{"/missing", 404, ""},
		{"/../secret.txt", 404, ""},
		{"/sub/../../secret.txt", 404, ""},
		{"/sub/../app.js", 404, ""},
		{"/%2e%2e/secret.txt", 404, ""},
		{"/%2E%2E%2fsecret.txt", 404, ""},
		{"/..%2fsecret.txt", 404, ""},
		{"/%252e%252e/secret.txt", 404, ""},
		{"/app.js%00.html", 404, ""},
		{"/..\\secret.txt", 404, ""},
		{"/sub%5c..%5c..%5csecret.txt", 404, ""},
		{"/out.txt", 404, ""},
		{"/abs.txt", 404, ""},
		{"/outdir/f", 404, ""},
		{"/outdir/", 404, ""},
		{"/%zz", 400, ""},
		{"app.js", 400, ""},
	}
	for _, tt := range tests {
		r := s.Serve(get(tt.target), now)
		if r.Status != tt.status {
			t.Errorf("GET %s: status %d, want %d", tt.target, r.Status, tt.status)
			continue
		}
		if tt.status == 200 && string(r.Body) != tt.body {
			t.Errorf("GET %s: body %q, want %q", tt.target, r.Body, tt.body)
		}
		if strings.Contains(string(r.Body), "secret") || strings.Contains(string(r.Body), "outside") {
			t.Errorf("GET %s: leaked %q", tt.target, r.Body)
		}
	}
}

func TestContentType(t *testing.T) {
	tests := map[string]string{
		"a.js": "text/javascript", "a.html": "text/html", "a.htm": "text/html", "a.CSS": "text/css",
		"a.svg": "image/svg+xml", "a.wasm": "application/wasm", "a.png": "image/png",
		"a.json": "application/json", "a.unknownext": "application/octet-stream", "noext": "application/octet-stream",
	}
	for name, want := range tests {
		if got := ContentType(name); got != want {
			t.Errorf("ContentType(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestFileHeaders(t *testing.T) {
	s := newServer(t, false)
	mod := time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(s.Root(), "app.js"), mod, mod); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		req    *codec.Request
		status int
		body   string
		header map[string]string
		keep   bool
	}{
		{"get", get("/app.js"), 200, "let x = 1;\n", map[string]string{
			"Content-Type": "text/javascript", "Content-Length": "11", "Last-Modified": "Tue, 06 May 2025 07:08:09 GMT",
			"Date": "Fri, 02 Jan 2026 03:04:05 GMT", "Connection": "keep-alive"}, true},
		{"head", request("HEAD", "/app.js"), 200, "", map[string]string{"Content-Length": "11"}, true},
		{"css-upper-ext", get("/style.CSS"), 200, "body{}\n", map[string]string{"Content-Type": "text/css"}, true},
		{"not-modified", get("/app.js", "If-Modified-Since: Tue, 06 May 2025 07:08:09 GMT"), 304, "", map[string]string{"Content-Length": ""}, true},
		{"modified-since", get("/app.js", "If-Modified-Since: Tue, 06 May 2025 07:08:08 GMT"), 200, "let x = 1;\n", nil, true},
		{"bad-ims-ignored", get("/app.js", "If-Modified-Since: yesterday"), 200, "let x = 1;\n", nil, true},
		{"connection-close", get("/app.js", "Connection: close"), 200, "let x = 1;\n", map[string]string{"Connection": "close"}, false},
		{"redirect-query", get("/sub?a=1&b=2"), 301, "Moved Permanently\n", map[string]string{"Location": "/sub/?a=1&b=2"}, true},
		{"redirect-no-open-redirect", get("//sub"), 301, "Moved Permanently\n", map[string]string{"Location": "/sub/"}, true},
		{"post", request("POST", "/app.js", "Content-Length: 0"), 405, "Method Not Allowed\n", map[string]string{"Allow": "GET, HEAD", "Connection": "close"}, false},
		{"put", request("PUT", "/x"), 405, "Method Not Allowed\n", map[string]string{"Allow": "GET, HEAD"}, false},
		{"get-with-body", get("/app.js", "Content-Length: 3"), 200, "let x = 1;\n", map[string]string{"Connection": "close"}, false},
		{"head-404", request("HEAD", "/nope"), 404, "", nil, true},
	}
	for _, tt := range tests {
		r := s.Serve(tt.req, now)
		if r.Status != tt.status || string(r.Body) != tt.body || r.KeepAlive != tt.keep || r.File != nil {
			t.Errorf("%s: status %d body %q keep %v file %v; want %d %q %v", tt.name, r.Status, r.Body, r.KeepAlive, r.File, tt.status, tt.body, tt.keep)
			continue
		}
		h := headerOf(t, r)
		for k, v := range tt.header {
			if got := h.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", tt.name, k, got, v)
			}
		}
	}
}

func TestKeepAlive(t *testing.T) {
	tests := []struct {
		proto, conn string
		want        bool
	}{
		{"HTTP/1.1", "", true},
		{"HTTP/1.1", "Close", false},
		{"HTTP/1.1", "keep-alive, close", false},
		{"HTTP/1.0", "", false},
		{"HTTP/1.0", "Keep-Alive", true},
	}
	for _, tt := range tests {
		raw := "GET / " + tt.proto + "\r\n"
		if tt.conn != "" {
			raw += "Connection: " + tt.conn + "\r\n"
		}
		req, _, err := codec.ParseRequest([]byte(raw+"\r\n"), codec.MaxHeaderBytes)
		if err != nil {
			t.Fatal(err)
		}
		if got := keepAlive(req); got != tt.want {
			t.Errorf("%s Connection %q: keep-alive %v, want %v", tt.proto, tt.conn, got, tt.want)
		}
	}
}

func TestListing(t *testing.T) {
	s := newServer(t, false)
	r := s.Serve(get("/list/"), now)
	if r.Status != 200 {
		t.Fatalf("status %d", r.Status)
	}
	body := string(r.Body)
	for _, want := range []string{
		`<a href="a.txt">a.txt</a>`,
		`<a href="%3Cb%3E&amp;%27%22.txt">&lt;b&gt;&amp;&#39;&#34;.txt</a>`,
		`<a href="d/">d/</a>`,
		`<a href="ln">ln@</a>`,
		`<title>Directory listing for /list/</title>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("listing lacks %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<b>") {
		t.Errorf("listing has an unescaped name:\n%s", body)
	}
	if h := headerOf(t, r); h.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("listing Content-Type %q", h.Get("Content-Type"))
	}

	fo := newServer(t, true)
	for target, want := range map[string]int{"/list/": 404, "/": 404, "/sub/": 200, "/list/a.txt": 200} {
		if r := fo.Serve(get(target), now); r.Status != want {
			t.Errorf("--file-only GET %s: status %d, want %d", target, r.Status, want)
		}
	}
}

func TestLargeFileStreamed(t *testing.T) {
	s := newServer(t, false)
	big := make([]byte, InlineMax+1)
	if err := os.WriteFile(filepath.Join(s.Root(), "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	r := s.Serve(get("/big.bin"), now)
	if r.File == nil || r.FileSize != int64(len(big)) || r.Body != nil {
		t.Fatalf("big file: File %v size %d body %d bytes", r.File, r.FileSize, len(r.Body))
	}
	r.File.Close()
	if r := s.Serve(request("HEAD", "/big.bin"), now); r.File != nil || r.Body != nil {
		t.Errorf("HEAD of a big file carries a body")
	}
}

func TestNew(t *testing.T) {
	root := tree(t)
	if _, err := New(filepath.Join(root, "app.js"), false); err == nil {
		t.Errorf("New on a file succeeded")
	}
	if _, err := New(filepath.Join(root, "nope"), false); err == nil {
		t.Errorf("New on a missing path succeeded")
	}
	// A root reached through a symlink is resolved, so its own files
	// still count as inside.
	link := filepath.Join(t.TempDir(), "root")
	if err := os.Symlink(root, link); err != nil {
		t.Fatal(err)
	}
	s, err := New(link, false)
	if err != nil {
		t.Fatal(err)
	}
	if r := s.Serve(get("/app.js"), now); r.Status != 200 {
		t.Errorf("through a symlinked root: status %d", r.Status)
	}
}
