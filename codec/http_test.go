package codec

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
)

const sampleRequest = "GET /websockify?token=a HTTP/1.1\r\n" +
	"Host: example.com:6080\r\n" +
	"Upgrade: websocket\r\n" +
	"Connection: Upgrade\r\n" +
	"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
	"Sec-WebSocket-Version: 13\r\n" +
	"Sec-WebSocket-Protocol: binary\r\n" +
	"Sec-WebSocket-Protocol: base64\r\n" +
	"\r\n"

const hixie76Request = "GET /demo HTTP/1.1\r\n" +
	"Host: example.com\r\n" +
	"Connection: Upgrade\r\n" +
	"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n" +
	"Sec-WebSocket-Protocol: sample\r\n" +
	"Upgrade: WebSocket\r\n" +
	"Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n" +
	"Origin: http://example.com\r\n" +
	"\r\n" +
	"^n:ds[4U"

func httpStatus(t *testing.T, err error) int {
	t.Helper()
	var he *HTTPError
	if !errors.As(err, &he) {
		t.Fatalf("error %v is not an *HTTPError", err)
	}
	return he.Status
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		method string
		target string
		proto  string
		header http.Header
		body   string
		n      int
	}{
		{
			name:   "websocket upgrade",
			in:     sampleRequest + "trailing frame bytes",
			method: "GET",
			target: "/websockify?token=a",
			proto:  "HTTP/1.1",
			header: http.Header{
				"Host":                   {"example.com:6080"},
				"Upgrade":                {"websocket"},
				"Connection":             {"Upgrade"},
				"Sec-Websocket-Key":      {"dGhlIHNhbXBsZSBub25jZQ=="},
				"Sec-Websocket-Version":  {"13"},
				"Sec-Websocket-Protocol": {"binary", "base64"},
			},
			n: len(sampleRequest),
		},
		{
			name:   "bare LF line ends and blanks around values",
			in:     "GET / HTTP/1.0\nHost:  a \nX-Empty:\n\n",
			method: "GET",
			target: "/",
			proto:  "HTTP/1.0",
			header: http.Header{
				"Host":    {"a"},
				"X-Empty": {""},
			},
			n: len("GET / HTTP/1.0\nHost:  a \nX-Empty:\n\n"),
		},
		{
			name:   "empty lines before the request line",
			in:     "\r\n\nHEAD /x HTTP/1.1\r\n\r\n",
			method: "HEAD",
			target: "/x",
			proto:  "HTTP/1.1",
			header: http.Header{},
			n:      len("\r\n\nHEAD /x HTTP/1.1\r\n\r\n"),
		},
		{
			name:   "runs of blanks in the request line",
			in:     "GET  /a \tHTTP/1.1\r\n\r\n",
			method: "GET",
			target: "/a",
			proto:  "HTTP/1.1",
			header: http.Header{},
			n:      len("GET  /a \tHTTP/1.1\r\n\r\n"),
		},
		{
			name:   "folded header",
			in:     "GET / HTTP/1.1\r\nX-Long: one\r\n  two\r\nX-B: b\r\n\r\n",
			method: "GET",
			target: "/",
			proto:  "HTTP/1.1",
			header: http.Header{
				"X-Long": {"one two"},
				"X-B":    {"b"},
			},
			n: len("GET / HTTP/1.1\r\nX-Long: one\r\n  two\r\nX-B: b\r\n\r\n"),
		},
		{
			name:   "repeated keys keep every value",
			in:     "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nA: 3\r\nB: 4\r\nC: 5\r\n\r\n",
			method: "GET",
			target: "/",
			proto:  "HTTP/1.1",
			header: http.Header{
				"A": {"1", "3"},
				"B": {"2", "4"},
				"C": {"5"},
			},
			n: len("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nA: 3\r\nB: 4\r\nC: 5\r\n\r\n"),
		},
		{
			name:   "hixie-76 challenge",
			in:     hixie76Request + "\x00",
			method: "GET",
			target: "/demo",
			proto:  "HTTP/1.1",
			header: http.Header{
				"Host":                   {"example.com"},
				"Connection":             {"Upgrade"},
				"Sec-Websocket-Key2":     {"12998 5 Y3 1  .P00"},
				"Sec-Websocket-Protocol": {"sample"},
				"Upgrade":                {"WebSocket"},
				"Sec-Websocket-Key1":     {"4 @1  46546xW%0l 1 5"},
				"Origin":                 {"http://example.com"},
			},
			body: "^n:ds[4U",
			n:    len(hixie76Request),
		},
		{
			name:   "keys without an upgrade are not a challenge",
			in:     "GET / HTTP/1.1\r\nSec-WebSocket-Key1: 1 1\r\nSec-WebSocket-Key2: 1 1\r\n\r\n",
			method: "GET",
			target: "/",
			proto:  "HTTP/1.1",
			header: http.Header{
				"Sec-Websocket-Key1": {"1 1"},
				"Sec-Websocket-Key2": {"1 1"},
			},
			n: len("GET / HTTP/1.1\r\nSec-WebSocket-Key1: 1 1\r\nSec-WebSocket-Key2: 1 1\r\n\r\n"),
		},
		{
			name:   "keys on a POST are not a challenge",
			in:     "POST / HTTP/1.1\r\nSec-WebSocket-Key1: 1 1\r\nSec-WebSocket-Key2: 1 1\r\n\r\nbody",
			method: "POST",
			target: "/",
			proto:  "HTTP/1.1",
			header: http.Header{
				"Sec-Websocket-Key1": {"1 1"},
				"Sec-Websocket-Key2": {"1 1"},
			},
			n: len("POST / HTTP/1.1\r\nSec-WebSocket-Key1: 1 1\r\nSec-WebSocket-Key2: 1 1\r\n\r\n"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := []byte(tt.in)
			req, n, err := ParseRequest(buf, MaxHeaderBytes)
			if err != nil || req == nil {
				t.Fatalf("ParseRequest: %v, %v", req, err)
			}
			// The request must not alias buf, which the caller reuses.
			for i := range buf {
				buf[i] = 'X'
			}
			if n != tt.n {
				t.Errorf("n = %d, want %d", n, tt.n)
			}
			if req.Method != tt.method || req.Target != tt.target || req.Proto != tt.proto {
				t.Errorf("request line = %q %q %q", req.Method, req.Target, req.Proto)
			}
			if !equalHeader(req.Header, tt.header) {
				t.Errorf("header = %q, want %q", req.Header, tt.header)
			}
			if string(req.Body) != tt.body {
				t.Errorf("body = %q, want %q", req.Body, tt.body)
			}
		})
	}
}

func equalHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb := b[k]
		if len(va) != len(vb) {
			return false
		}
		for i := range va {
			if va[i] != vb[i] {
				return false
			}
		}
	}
	return true
}

// Every proper prefix of a valid request is "need more", whatever the split.
func TestParseRequestNeedMore(t *testing.T) {
	for _, full := range []string{sampleRequest, hixie76Request, "\r\nGET / HTTP/1.1\nA: b\n\n"} {
		for i := 0; i < len(full); i++ {
			req, n, err := ParseRequest([]byte(full[:i]), MaxHeaderBytes)
			if req != nil || n != 0 || err != nil {
				t.Fatalf("prefix %q: got %v, %d, %v; want need more", full[:i], req, n, err)
			}
		}
		if _, n, err := ParseRequest([]byte(full), MaxHeaderBytes); n != len(full) || err != nil {
			t.Fatalf("full %q: n = %d, err = %v", full, n, err)
		}
	}
}

func TestParseRequestErrors(t *testing.T) {
	long := "GET / HTTP/1.1\r\nX-Big: " + strings.Repeat("a", 100) + "\r\n"
	tests := []struct {
		name   string
		in     string
		max    int
		status int
	}{
		{
			name:   "head not finished at max",
			in:     long,
			max:    len(long),
			status: 431,
		},
		{
			name:   "finished head longer than max",
			in:     long + "\r\n",
			max:    len(long) + 1,
			status: 431,
		},
		{
			name:   "negative max",
			in:     "GET / HTTP/1.1\r\n\r\n",
			max:    -1,
			status: 431,
		},
		{
			name:   "empty lines only, up to max",
			in:     strings.Repeat("\r\n", 10),
			max:    20,
			status: 431,
		},
		{
			name:   "not HTTP, complete line",
			in:     "SSH-2.0-OpenSSH_9.6\r\n",
			max:    MaxHeaderBytes,
			status: 400,
		},
		{
			name:   "binary garbage before any line end",
			in:     "\x01\x02\x03",
			max:    MaxHeaderBytes,
			status: 400,
		},
		{
			name:   "bad method characters before any line end",
			in:     "GE(T",
			max:    MaxHeaderBytes,
			status: 400,
		},
		{
			name:   "two words",
			in:     "GET /\r\n\r\n",
			max:    MaxHeaderBytes,
			status: 400,
		},
		{
			name:   "four words",
			in:     "GET / HTTP/1.1 x\r\n\r\n",
			max:    MaxHeaderBytes,
			status: 400,
		},
		{
			name:   "not a version",
			in:     "GET / HTTX/1.1\r\n\r\n",
			max:    MaxHeaderBytes,
			status: 400,
		},
		{
			name:   "version without minor",
			in:     "GET / HTTP/1\r\n\r\n",
			max:    MaxHeaderBytes,
			status: 400,
		},
		{
			name:   "HTTP/2",
			in:     "GET / HTTP/2.0\r\n\r\n",
			max:    MaxHeaderBytes,
			status: 505,
		},
		{
			name:   "header without colon",
			in:     "GET / HTTP/1.1\r\nHost example.com\r\n\r\n",
			max:    MaxHeaderBytes,
			status: 400,
		},
		{
			name:   "blank before colon",
			in:     "GET / HTTP/1.1\r\nHost : example.com\r\n\r\n",
			max:    MaxHeaderBytes,
			status: 400,
		},
		{
			name:   "empty key",
			in:     "GET / HTTP/1.1\r\n: x\r\n\r\n",
			max:    MaxHeaderBytes,
			status: 400,
		},
		{
			name:   "control character in value",
			in:     "GET / HTTP/1.1\r\nA: x\x00y\r\n\r\n",
			max:    MaxHeaderBytes,
			status: 400,
		},
		{
			name:   "bare CR in value",
			in:     "GET / HTTP/1.1\r\nA: x\ry\r\n\r\n",
			max:    MaxHeaderBytes,
			status: 400,
		},
		{
			name:   "continuation without a header",
			in:     "GET / HTTP/1.1\r\n folded\r\n\r\n",
			max:    MaxHeaderBytes,
			status: 400,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, n, err := ParseRequest([]byte(tt.in), tt.max)
			if req != nil || n != 0 || err == nil {
				t.Fatalf("got %v, %d, %v; want an error", req, n, err)
			}
			if got := httpStatus(t, err); got != tt.status {
				t.Errorf("status %d, want %d", got, tt.status)
			}
		})
	}
}

func TestIsWebSocket(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		want bool
	}{
		{
			name: "lower case",
			req:  Request{Method: "GET", Header: http.Header{"Upgrade": {"websocket"}}},
			want: true,
		},
		{
			name: "mixed case",
			req:  Request{Method: "GET", Header: http.Header{"Upgrade": {"WebSocket"}}},
			want: true,
		},
		{
			name: "not GET",
			req:  Request{Method: "POST", Header: http.Header{"Upgrade": {"websocket"}}},
			want: false,
		},
		{
			name: "other upgrade",
			req:  Request{Method: "GET", Header: http.Header{"Upgrade": {"h2c"}}},
			want: false,
		},
		{
			name: "no upgrade",
			req:  Request{Method: "GET", Header: http.Header{}},
			want: false,
		},
	}
	for _, tt := range tests {
		if got := tt.req.IsWebSocket(); got != tt.want {
			t.Errorf("%s: IsWebSocket() = %v", tt.name, got)
		}
	}
}

func TestHTTPErrorResponse(t *testing.T) {
	e := &HTTPError{Status: 400, Reason: "Unsupported WebSocket protocol version", Header: "Sec-WebSocket-Version: 13\r\n"}
	raw := e.Response()
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if err != nil {
		t.Fatalf("ReadResponse(%q): %v", raw, err)
	}
	want := map[string]string{
		"Server":                ServerName,
		"Content-Type":          "text/plain; charset=utf-8",
		"Content-Length":        "39",
		"Sec-Websocket-Version": "13",
	}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if !resp.Close || !strings.Contains(string(raw), "\r\nConnection: close\r\n") {
		t.Errorf("no Connection: close in %q", raw)
	}
	if resp.StatusCode != 400 || !strings.HasPrefix(string(raw), "HTTP/1.1 400 Bad Request\r\n") {
		t.Errorf("status line of %q", raw)
	}
	if !strings.HasSuffix(string(raw), "\r\n\r\nUnsupported WebSocket protocol version\n") {
		t.Errorf("body of %q", raw)
	}

	raw = (&HTTPError{Status: 431}).Response()
	if !strings.HasPrefix(string(raw), "HTTP/1.1 431 Request Header Fields Too Large\r\n") ||
		!strings.HasSuffix(string(raw), "\r\n\r\nRequest Header Fields Too Large\n") {
		t.Errorf("431 without reason: %q", raw)
	}
}

func TestStatusText(t *testing.T) {
	if got := StatusText(404); got != "Not Found" {
		t.Errorf("StatusText(404) = %q", got)
	}
	if got := StatusText(599); got == "" {
		t.Error("StatusText(599) is empty")
	}
}
