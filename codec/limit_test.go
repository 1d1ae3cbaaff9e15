package codec

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// countingLimiter is a Limiter that refuses what refuse says and counts
// what it is asked; package limits has the real bookkeeping.
type countingLimiter struct {
	refuse   func(addr string, what Admission) *HTTPError
	admits   []Admission
	releases []string
	tooLarge int
}

func (c *countingLimiter) Admit(addr string, what Admission) *HTTPError {
	c.admits = append(c.admits, what)
	if c.refuse != nil {
		return c.refuse(addr, what)
	}
	return nil
}
func (c *countingLimiter) Release(addr string) { c.releases = append(c.releases, addr) }
func (c *countingLimiter) HeadTooLarge(string) { c.tooLarge++ }

var tooMany = &HTTPError{Status: 429, Reason: "Too many sessions from your address", Header: "Retry-After: 5\r\n"}

func refuseSessions(string, Admission) *HTTPError { return tooMany }

func limitedConfig(l Limiter) *SessionConfig {
	cfg := testSessionConfig
	cfg.Limiter = l
	return &cfg
}

// Every way a session can end releases what the Limiter admitted, once.
func TestLimiterReleasesOnce(t *testing.T) {
	auth := denyAll{}
	tests := []struct {
		name    string
		cfg     func(*SessionConfig)
		request string
		end     func(s *Session, r *recorder) // after the request; nil: the request ends it
	}{
		{name: "client goes while relaying", end: func(s *Session, r *recorder) { s.Dialed(); s.ClientGone(r) }},
		{name: "target closes", end: func(s *Session, r *recorder) { s.Dialed(); s.TargetClosed(io.EOF, r) }},
		{name: "client close frame", end: func(s *Session, r *recorder) {
			s.Dialed()
			s.FromClient(maskedFrame(0x88, []byte{0x03, 0xE8}, [4]byte{1, 2, 3, 4}), r)
		}},
		{name: "protocol error", end: func(s *Session, r *recorder) { s.Dialed(); s.FromClient([]byte{0x82, 0x01, 'x'}, r) }},
		{name: "dial fails", end: func(s *Session, r *recorder) { s.DialFailed(errors.New("refused"), r) }},
		{name: "shutdown while dialing", end: func(s *Session, r *recorder) { s.Shutdown(r); s.Dialed() }},
		{name: "shutdown while relaying", end: func(s *Session, r *recorder) { s.Dialed(); s.Shutdown(r) }},
		{name: "token not found", cfg: func(c *SessionConfig) { c.Tokens = TokenFromQuery },
			request: strings.Replace(upgradeRequest, "/websockify", "/?token=x", 1),
			end:     func(s *Session, r *recorder) { s.RouteFailed(ErrTokenNotFound, r) }},
		{name: "token lookup fails", cfg: func(c *SessionConfig) { c.Tokens = TokenFromQuery },
			request: strings.Replace(upgradeRequest, "/websockify", "/?token=x", 1),
			end:     func(s *Session, r *recorder) { s.RouteFailed(errors.New("redis down"), r) }},
		{name: "no token", cfg: func(c *SessionConfig) { c.Tokens = TokenFromQuery }},
		{name: "auth refuses", cfg: func(c *SessionConfig) { c.Auth = auth }},
		{name: "bad upgrade", request: strings.Replace(upgradeRequest, "Version: 13", "Version: 14", 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &countingLimiter{}
			cfg := limitedConfig(l)
			if tt.cfg != nil {
				tt.cfg(cfg)
			}
			req := tt.request
			if req == "" {
				req = upgradeRequest
			}
			s := NewSession(cfg, "10.0.0.1")
			r := &recorder{}
			s.FromClient([]byte(req), r)
			if tt.end != nil {
				tt.end(&s, r)
			}
			// Whatever comes after the end releases nothing more.
			s.ClientGone(r)
			s.Shutdown(r)
			s.TargetClosed(nil, r)
			if s.Phase() != Closed {
				t.Fatalf("phase %v", s.Phase())
			}
			if len(l.admits) != 1 || l.admits[0] != AdmitHandshake|AdmitSession {
				t.Errorf("admits %v, want one handshake and session", l.admits)
			}
			if len(l.releases) != 1 || l.releases[0] != "10.0.0.1" {
				t.Errorf("releases %q, want one of 10.0.0.1", l.releases)
			}
		})
	}
}

type denyAll struct{}

func (denyAll) Authenticate(*Request, string) (*HTTPError, string) {
	return &HTTPError{Status: 401, Reason: "Unauthorized"}, "no"
}

// What the Limiter is asked, and what a refusal looks like to the client.
func TestLimiterAdmission(t *testing.T) {
	webReq := "GET /vnc.html HTTP/1.1\r\nHost: x\r\n\r\n"
	tests := []struct {
		name     string
		web      bool
		refuse   func(string, Admission) *HTTPError
		requests []string // one after another on the connection (kept alive after web ones)
		admits   []Admission
		client   string // prefix of what the client gets
		step     Step   // after the last request
		released int
	}{
		{name: "upgrade admitted", requests: []string{upgradeRequest}, admits: []Admission{AdmitHandshake | AdmitSession},
			client: "HTTP/1.1 101 ", step: Dial},
		{name: "upgrade refused", refuse: refuseSessions, requests: []string{upgradeRequest},
			admits: []Admission{AdmitHandshake | AdmitSession}, step: Close,
			client: "HTTP/1.1 429 Too Many Requests\r\nServer: WebSockify Go\r\n"},
		{name: "web requests count one handshake", web: true, requests: []string{webReq, webReq, webReq},
			admits: []Admission{AdmitHandshake}, step: ServeWeb},
		{name: "upgrade after web requests", web: true, requests: []string{webReq, upgradeRequest},
			admits: []Admission{AdmitHandshake, AdmitSession}, client: "HTTP/1.1 101 ", step: Dial},
		{name: "web refused", web: true, requests: []string{webReq},
			refuse: func(string, Admission) *HTTPError { return &HTTPError{Status: 429, Header: "Retry-After: 1\r\n"} },
			admits: []Admission{AdmitHandshake}, client: "HTTP/1.1 429 ", step: Close},
		{name: "not web, not an upgrade", requests: []string{webReq}, admits: []Admission{AdmitHandshake},
			client: "HTTP/1.1 405 ", step: Close},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &countingLimiter{refuse: tt.refuse}
			cfg := limitedConfig(l)
			cfg.Web = tt.web
			s := NewSession(cfg, "10.0.0.1")
			r := &recorder{}
			var step Step
			for i, req := range tt.requests {
				if i > 0 {
					s.WebDone(true)
				}
				_, step = s.FromClient([]byte(req), r)
			}
			if step != tt.step {
				t.Errorf("step %v, want %v", step, tt.step)
			}
			if len(l.admits) != len(tt.admits) || (len(l.admits) > 0 && !bytes.Equal(admissionBytes(l.admits), admissionBytes(tt.admits))) {
				t.Errorf("admits %v, want %v", l.admits, tt.admits)
			}
			if !strings.HasPrefix(string(r.client), tt.client) {
				t.Errorf("client got %q, want prefix %q", r.client, tt.client)
			}
			if tt.refuse != nil {
				if !strings.Contains(string(r.client), "Retry-After: ") {
					t.Errorf("refusal without Retry-After: %q", r.client)
				}
				for _, line := range r.logs {
					if !strings.HasPrefix(line, "debug: ") {
						t.Errorf("a refusal logged %q: the Limiter logs refusals, a burst at a time", line)
					}
				}
				if len(l.releases) != 0 {
					t.Errorf("a refused session released: %q", l.releases)
				}
			}
		})
	}
}

func admissionBytes(as []Admission) []byte {
	b := make([]byte, len(as))
	for i, a := range as {
		b[i] = byte(a)
	}
	return b
}

// A request head past MaxRequestHead is answered 431 and logged by the
// Limiter; one within it goes through.
func TestLimiterRequestHead(t *testing.T) {
	l := &countingLimiter{}
	cfg := limitedConfig(l)
	cfg.MaxRequestHead = 300
	big := strings.Replace(upgradeRequest, "Host: example.com\r\n", "Host: example.com\r\nCookie: "+strings.Repeat("c", 90)+"\r\n", 1)
	if len(big) > 300 {
		t.Fatalf("request of %d bytes", len(big))
	}
	s := NewSession(cfg, "10.0.0.1")
	r := &recorder{}
	if _, step := s.FromClient([]byte(big), r); step != Dial {
		t.Fatalf("a %d-byte head: %v, %q", len(big), step, r.client)
	}

	huge := strings.Replace(big, "Cookie: ", "Cookie: "+strings.Repeat("c", 200), 1)
	s = NewSession(cfg, "10.0.0.1")
	r = &recorder{}
	n, step := s.FromClient([]byte(huge), r)
	if n != len(huge) || step != Close || !strings.HasPrefix(string(r.client), "HTTP/1.1 431 Request Header Fields Too Large\r\n") {
		t.Fatalf("a %d-byte head: consumed %d, %v, %q", len(huge), n, step, r.client)
	}
	if l.tooLarge != 1 || len(l.admits) != 1 || len(l.releases) != 0 {
		t.Errorf("limiter saw %d too large, %d admits, %d releases", l.tooLarge, len(l.admits), len(l.releases))
	}
	for _, line := range r.logs {
		if !strings.HasPrefix(line, "debug: ") {
			t.Errorf("logged %q: the Limiter logs it, a burst at a time", line)
		}
	}
	// A head that is still arriving is refused once MaxRequestHead bytes
	// came without its end.
	s = NewSession(cfg, "10.0.0.1")
	r = &recorder{}
	if _, step := s.FromClient([]byte(huge[:299]), r); step != Continue {
		t.Fatalf("299 bytes of a head: %v", step)
	}
	if _, step := s.FromClient([]byte(huge[:301]), r); step != Close || !strings.HasPrefix(string(r.client), "HTTP/1.1 431 ") {
		t.Fatalf("301 bytes of a head: %v, %q", step, r.client)
	}

	// Without a Limiter the 431 is logged as before.
	cfg = limitedConfig(nil)
	cfg.Limiter = nil
	cfg.MaxRequestHead = 300
	s = NewSession(cfg, "10.0.0.1")
	r = &recorder{}
	s.FromClient([]byte(huge), r)
	if !hasLog(r.logs, "10.0.0.1: code 431, message Request header too large") {
		t.Errorf("logs %q", r.logs)
	}
}

// A client data frame larger than MaxFrame ends the session with 1009;
// one of MaxFrame bytes, and control frames, go through.
func TestMaxFrame(t *testing.T) {
	mask := [4]byte{1, 2, 3, 4}
	hixie := "GET /demo HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\r\n"
	tests := []struct {
		name    string
		request string
		in      []byte
		target  string // what reaches the target
		client  []byte // what the client gets
		step    Step
		log     string
	}{
		{name: "at the limit", request: upgradeRequest, in: maskedFrame(0x82, bytes.Repeat([]byte{'a'}, 100), mask),
			target: strings.Repeat("a", 100), step: Continue},
		{name: "over the limit", request: upgradeRequest, in: maskedFrame(0x82, bytes.Repeat([]byte{'a'}, 101), mask),
			client: append([]byte{0x88, 17, 0x03, 0xF1}, "Message too big"...), step: Close,
			log: "10.0.0.1: Closing connection: 1009 Message too big"},
		{name: "header alone says it", request: upgradeRequest, in: []byte{0x82, 0xFE, 0x10, 0x00, 1, 2, 3, 4},
			client: append([]byte{0x88, 17, 0x03, 0xF1}, "Message too big"...), step: Close},
		{name: "fragments each within", request: upgradeRequest,
			in:     append(maskedFrame(0x02, bytes.Repeat([]byte{'a'}, 100), mask), maskedFrame(0x80, bytes.Repeat([]byte{'b'}, 100), mask)...),
			target: strings.Repeat("a", 100) + strings.Repeat("b", 100), step: Continue},
		{name: "control frames are not data", request: upgradeRequest, in: maskedFrame(0x89, bytes.Repeat([]byte{'p'}, 125), mask),
			client: append([]byte{0x8A, 125}, bytes.Repeat([]byte{'p'}, 125)...), step: Continue},
		{name: "Hixie at the limit", request: hixie, in: []byte("\x00" + strings.Repeat("QUJD", 25) + "\xff"),
			target: strings.Repeat("ABC", 25), step: Continue},
		{name: "Hixie over the limit", request: hixie, in: []byte("\x00" + strings.Repeat("QUJD", 26) + "\xff"),
			client: []byte{0xFF, 0x00}, step: Close, log: "Closing connection: 1009 Message too big"},
		{name: "Hixie over the limit, unfinished", request: hixie, in: []byte("\x00" + strings.Repeat("QUJD", 26)),
			client: []byte{0xFF, 0x00}, step: Close},
		{name: "Hixie frames each within", request: hixie, in: []byte("\x00" + strings.Repeat("QUJD", 25) + "\xff\x00QUJD\xff"),
			target: strings.Repeat("ABC", 26), step: Continue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testSessionConfig
			cfg.MaxFrame = 100
			s := NewSession(&cfg, "10.0.0.1")
			r := &recorder{}
			s.FromClient([]byte(tt.request), r)
			s.Dialed()
			r.reset()
			_, step := s.FromClient(tt.in, r)
			if step != tt.step || string(r.target) != tt.target || !bytes.Equal(r.client, tt.client) {
				t.Errorf("step %v, target %q, client %q; want %v, %q, %q", step, r.target, r.client, tt.step, tt.target, tt.client)
			}
			if tt.log != "" && !hasLog(r.logs, tt.log) {
				t.Errorf("logs %q lack %q", r.logs, tt.log)
			}
		})
	}
}

// The relay path stays allocation-free with a frame cap and a Limiter.
func TestLimitedRelayAllocs(t *testing.T) {
	cfg := limitedConfig(&countingLimiter{})
	cfg.MaxFrame = 4096
	s := NewSession(cfg, "10.0.0.1")
	r := &recorder{}
	s.FromClient([]byte(upgradeRequest), r)
	s.Dialed()
	frame := maskedFrame(0x82, bytes.Repeat([]byte{7}, 100), [4]byte{1, 2, 3, 4})
	in := make([]byte, len(frame))
	r.client = make([]byte, 0, 1<<20)
	r.target = make([]byte, 0, 1<<20)
	r.Scratch(64)
	allocs := testing.AllocsPerRun(100, func() {
		copy(in, frame)
		s.FromClient(in, r)
		s.FromTarget(frame, r)
		r.client, r.target = r.client[:0], r.target[:0]
	})
	if allocs != 0 || s.Phase() != Relaying {
		t.Errorf("%v allocations per relayed frame pair, phase %v", allocs, s.Phase())
	}
}
