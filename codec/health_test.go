package codec

import (
	"strings"
	"testing"
)

// refuseAll is an auth plugin that refuses every request.
type refuseAll struct{}

func (refuseAll) Authenticate(*Request, string) (*HTTPError, string) {
	return &HTTPError{Status: 401, Reason: "Unauthorized"}, "no"
}

func TestHealthProbe(t *testing.T) {
	cfg := testSessionConfig
	cfg.HealthPath = "/healthz"
	cfg.Auth = refuseAll{} // probes skip auth
	for _, tc := range []struct {
		name, request string
		wantStatus    string // "" means not answered as a probe
		wantBody      bool
	}{
		{"get", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "200 OK", true},
		{"head", "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "200 OK", false},
		{"query ignored", "GET /healthz?from=haproxy HTTP/1.0\r\n\r\n", "200 OK", true},
		{"other path", "GET /healthz/x HTTP/1.1\r\nHost: x\r\n\r\n", "", false},
		{"post", "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", "", false},
		{"upgrade on the path", strings.Replace(upgradeRequest, "/websockify", "/healthz", 1), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSession(&cfg, "10.0.0.1")
			r := &recorder{}
			n, step := s.FromClient([]byte(tc.request), r)
			resp := string(r.client)
			if tc.wantStatus == "" {
				if strings.Contains(resp, "200 OK") {
					t.Fatalf("answered as a probe: %q", resp)
				}
				return
			}
			if n != len(tc.request) || step != Close {
				t.Fatalf("consumed %d of %d, step %v", n, len(tc.request), step)
			}
			if !strings.HasPrefix(resp, "HTTP/1.1 "+tc.wantStatus+"\r\n") {
				t.Fatalf("response %q", resp)
			}
			if got := strings.HasSuffix(resp, "\r\n\r\nOK\n"); got != tc.wantBody {
				t.Fatalf("body present %v, want %v: %q", got, tc.wantBody, resp)
			}
			for _, l := range r.logs {
				if !strings.HasPrefix(l, "debug: ") {
					t.Fatalf("a probe logged %q without -v", l)
				}
			}
		})
	}
	// Without --health-path the path is nothing special.
	s := NewSession(&testSessionConfig, "10.0.0.1")
	r := &recorder{}
	s.FromClient([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"), r)
	if !strings.HasPrefix(string(r.client), "HTTP/1.1 405") {
		t.Fatalf("without --health-path: %q", r.client)
	}
}
