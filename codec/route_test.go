package codec

import (
	"errors"
	"strings"
	"testing"
)

func TestTokenOf(t *testing.T) {
	for _, tc := range []struct {
		name   string
		target string
		header string // extra header lines
		from   TokenFrom
		want   string
	}{
		{"query", "/websockify?token=vm1", "", TokenFromQuery, "vm1"},
		{"first of two", "/?token=a&token=b", "", TokenFromQuery, "a"},
		{"escaped", "/?path=x&token=a%20b%2Fc", "", TokenFromQuery, "a b/c"},
		{"trailing newline dropped", "/?token=a%0A", "", TokenFromQuery, "a"},
		{"empty is none", "/?token=", "", TokenFromQuery, ""},
		{"missing", "/websockify", "", TokenFromQuery, ""},
		{"bad pair elsewhere", "/?x=%zz&token=t", "", TokenFromQuery, "t"},
		{"cookie", "/websockify", "Cookie: a=b; token=fromcookie\r\n", TokenFromQuery, "fromcookie"},
		{"query before cookie", "/?token=q", "Cookie: token=c\r\n", TokenFromQuery, "q"},
		{"host", "/", "", TokenFromHost, "example.com"},
		{"host ignores query", "/?token=q", "", TokenFromHost, "example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := "GET " + tc.target + " HTTP/1.1\r\nHost: example.com:6080\r\n" + tc.header + "\r\n"
			req, _, err := ParseRequest([]byte(raw), MaxHeaderBytes)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := TokenOf(req, tc.from)
			if got != tc.want || ok != (tc.want != "") {
				t.Errorf("TokenOf = %q, %v; want %q", got, ok, tc.want)
			}
		})
	}
}

func TestHostName(t *testing.T) {
	for in, want := range map[string]string{
		"vm1": "vm1", "vm1:6080": "vm1", "[::1]:6080": "::1", "[::1]": "::1", "10.0.0.1:80": "10.0.0.1", "": "",
	} {
		if got := hostName(in); got != want {
			t.Errorf("hostName(%q) = %q, want %q", in, got, want)
		}
	}
}

// denyOrigin lets only Origin "http://ok" through; it records the CN it saw.
type denyOrigin struct{ cn string }

func (d *denyOrigin) Authenticate(req *Request, cn string) (*HTTPError, string) {
	d.cn = cn
	if req.Header.Get("Origin") == "http://ok" {
		return nil, ""
	}
	return &HTTPError{Status: 403, Reason: "Forbidden"}, "bad origin"
}

func tokenRequest(query, extra string) string {
	return "GET /websockify" + query + " HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n" +
		"Connection: Upgrade\r\nSec-WebSocket-Key: DKURYVK9cRFul1vOZVA56Q==\r\n" +
		"Sec-WebSocket-Version: 13\r\n" + extra + "\r\n"
}

func TestSessionRouting(t *testing.T) {
	cfg := testSessionConfig
	cfg.Tokens = TokenFromQuery
	timeout := &timeoutError{}
	for _, tc := range []struct {
		name    string
		request string
		auth    Authenticator
		lookup  func(s *Session, r *recorder) Step // nil: no Route expected
		step    Step                               // the last step
		status  string                             // start of the reply
		log     string                             // a line that must be logged
	}{
		{"token found", tokenRequest("?token=vm1", ""), nil,
			func(s *Session, r *recorder) Step {
				if s.Token() != "vm1" {
					t.Errorf("Token() = %q", s.Token())
				}
				return s.Routed("10.1.1.1:5901", r)
			}, Dial, "HTTP/1.1 101", "connecting to: 10.1.1.1:5901"},
		{"unix target", tokenRequest("?token=vm1", ""), nil,
			func(s *Session, r *recorder) Step { return s.Routed("/run/vnc.sock", r) },
			Dial, "HTTP/1.1 101", "connecting to unix socket: /run/vnc.sock"},
		{"no token", tokenRequest("", ""), nil, nil, Close, "HTTP/1.1 403", "10.0.0.1: Token not present"},
		{"unknown token", tokenRequest("?token=x%0Dy", ""), nil,
			func(s *Session, r *recorder) Step { return s.RouteFailed(ErrTokenNotFound, r) },
			Close, "HTTP/1.1 403", `10.0.0.1: Token 'x\ry' not found`},
		{"backend down", tokenRequest("?token=a", ""), nil,
			func(s *Session, r *recorder) Step { return s.RouteFailed(errors.New("redis: refused"), r) },
			Close, "HTTP/1.1 502", "token lookup failed: redis: refused"},
		{"backend slow", tokenRequest("?token=a", ""), nil,
			func(s *Session, r *recorder) Step { return s.RouteFailed(timeout, r) },
			Close, "HTTP/1.1 504", "token lookup failed: slow"},
		{"auth refuses before lookup", tokenRequest("?token=a", "Origin: http://evil\r\n"), &denyOrigin{}, nil,
			Close, "HTTP/1.1 403", "authentication failed: bad origin"},
		{"auth passes", tokenRequest("?token=a", "Origin: http://ok\r\n"), &denyOrigin{},
			func(s *Session, r *recorder) Step { return s.Routed("10.1.1.1:1", r) }, Dial, "HTTP/1.1 101", "101"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			c.Auth = tc.auth
			s := NewSession(&c, "10.0.0.1")
			r := &recorder{}
			n, step := s.FromClient([]byte(tc.request), r)
			if n != len(tc.request) {
				t.Fatalf("consumed %d of %d", n, len(tc.request))
			}
			if tc.lookup != nil {
				if step != Route || s.Phase() != Routing || len(r.client) != 0 {
					t.Fatalf("step %v phase %v, sent %q; want Route with nothing sent", step, s.Phase(), r.client)
				}
				// Bytes in Routing wait for the upgrade.
				if n, _ := s.FromClient([]byte{0x82}, r); n != 0 {
					t.Errorf("routing session consumed %d bytes", n)
				}
				step = tc.lookup(&s, r)
			}
			if step != tc.step {
				t.Errorf("step %v, want %v", step, tc.step)
			}
			if !strings.HasPrefix(string(r.client), tc.status) {
				t.Errorf("reply %q, want %q...", r.client, tc.status)
			}
			if !strings.Contains(strings.Join(r.logs, "\n"), tc.log) {
				t.Errorf("logs %q lack %q", r.logs, tc.log)
			}
		})
	}
}

type timeoutError struct{}

func (*timeoutError) Error() string { return "slow" }
func (*timeoutError) Timeout() bool { return true }

func TestSessionRoutingEnds(t *testing.T) {
	cfg := testSessionConfig
	cfg.Tokens = TokenFromQuery
	for name, end := range map[string]func(*Session, *recorder) Step{
		"client gone": func(s *Session, r *recorder) Step { return s.ClientGone(r) },
		"shutdown":    func(s *Session, r *recorder) Step { return s.Shutdown(r) },
	} {
		s := NewSession(&cfg, "10.0.0.1")
		r := &recorder{}
		if _, step := s.FromClient([]byte(tokenRequest("?token=a", "")), r); step != Route {
			t.Fatalf("%s: step %v", name, step)
		}
		if step := end(&s, r); step != Close || len(r.client) != 0 {
			t.Errorf("%s: %v, sent %q; want Close with nothing sent (no 101 went out)", name, step, r.client)
		}
		// The lookup's answer comes after: nothing more happens.
		if step := s.Routed("10.1.1.1:1", r); step != Close || len(r.client) != 0 {
			t.Errorf("%s: Routed after the end: %v, sent %q", name, step, r.client)
		}
	}
}

func TestWebAuth(t *testing.T) {
	cfg := testSessionConfig
	cfg.Web = true
	cfg.Auth = &denyOrigin{}
	get := "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, webAuth := range []bool{false, true} {
		c := cfg
		c.WebAuth = webAuth
		s := NewSession(&c, "10.0.0.1")
		r := &recorder{cn: "alice"}
		_, step := s.FromClient([]byte(get), r)
		if webAuth && (step != Close || !strings.HasPrefix(string(r.client), "HTTP/1.1 403")) {
			t.Errorf("web-auth: step %v, reply %q; want a 403", step, r.client)
		}
		if !webAuth && step != ServeWeb {
			t.Errorf("no web-auth: step %v, want ServeWeb", step)
		}
	}
	// The plugin sees the certificate's CN.
	a := &denyOrigin{}
	c := testSessionConfig
	c.Auth = a
	s := NewSession(&c, "10.0.0.1")
	s.FromClient([]byte(tokenRequest("", "Origin: http://ok\r\n")), &recorder{cn: "alice"})
	if a.cn != "alice" {
		t.Errorf("plugin saw CN %q", a.cn)
	}
}
