package codec

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// remoteAddrAuth records the RemoteAddr each request it checks carries.
type remoteAddrAuth struct{ seen []string }

func (a *remoteAddrAuth) Authenticate(req *Request, _ string) (*HTTPError, string) {
	a.seen = append(a.seen, req.RemoteAddr)
	return nil, ""
}

func prefixes(list ...string) []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range list {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

// proxiedConfig expects PROXY headers from 127.0.0.1 and 10.0.0.0/8.
func proxiedConfig(proxyProtocol bool) *SessionConfig {
	cfg := testSessionConfig
	cfg.ProxyProtocol = proxyProtocol
	cfg.TrustedProxies = prefixes("127.0.0.1/32", "10.0.0.0/8", "2001:db8:ffff::/48")
	cfg.Auth = &remoteAddrAuth{}
	return &cfg
}

// feedAll feeds in as an owner does, offering again what was not consumed,
// until the session waits for more or asks for something else.
func feedAll(s *Session, in []byte, r *recorder) (consumed int, step Step) {
	for len(in) > 0 {
		n, st := s.FromClient(in, r)
		consumed += n
		in = in[n:]
		step = st
		if n == 0 || st != Continue {
			break
		}
	}
	return consumed, step
}

func countLogs(logs []string, want string) int {
	n := 0
	for _, l := range logs {
		if strings.Contains(l, want) {
			n++
		}
	}
	return n
}

func withHeader(req, header string) string {
	return strings.Replace(req, "\r\n\r\n", "\r\n"+header+"\r\n\r\n", 1)
}

func TestProxyHeaderSession(t *testing.T) {
	v2 := "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c" + "\xcb\x00\x71\x07" + "\x7f\x00\x00\x01" + "\xc7\x38\x17\xc0"
	v2local := "\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"
	tests := []struct {
		name      string
		peer      string
		in        string
		step      Step
		phase     Phase
		addr      string // Addr after the feed
		auth      string // the RemoteAddr the auth plugin saw; "" for no check
		log       string // a line that must be logged exactly once
		debugOnly bool   // no line but debug ones
	}{
		{name: "v1 then upgrade", peer: "127.0.0.1", in: "PROXY TCP4 203.0.113.7 127.0.0.1 51000 6080\r\n" + upgradeRequest,
			step: Dial, phase: Dialing, addr: "203.0.113.7", auth: "203.0.113.7",
			log: "debug: 127.0.0.1: PROXY v1 header: client 203.0.113.7 via 127.0.0.1"},
		{name: "v1 tcp6", peer: "10.1.2.3", in: "PROXY TCP6 2001:db8::7 2001:db8::1 443 6080\r\n" + upgradeRequest,
			step: Dial, phase: Dialing, addr: "2001:db8::7", auth: "2001:db8::7", log: "client 2001:db8::7 via 10.1.2.3"},
		{name: "v2 then TLS", peer: "127.0.0.1", in: v2 + "\x16\x03\x01\x00",
			step: StartTLS, phase: Handshaking, addr: "203.0.113.7", log: "PROXY v2 header: client 203.0.113.7 via 127.0.0.1"},
		{name: "v2 local", peer: "127.0.0.1", in: v2local + upgradeRequest,
			step: Dial, phase: Dialing, addr: "127.0.0.1", auth: "127.0.0.1", log: "PROXY v2 header (LOCAL)"},
		{name: "v1 unknown", peer: "127.0.0.1", in: "PROXY UNKNOWN\r\n" + upgradeRequest,
			step: Dial, phase: Dialing, addr: "127.0.0.1", auth: "127.0.0.1", log: "PROXY v1 header (UNKNOWN)"},
		{name: "header alone", peer: "127.0.0.1", in: "PROXY TCP4 203.0.113.7 127.0.0.1 1 2\r\n",
			step: Continue, phase: Sniffing, addr: "203.0.113.7", debugOnly: true},
		{name: "trusted without header", peer: "127.0.0.1", in: upgradeRequest,
			step: Close, phase: Closed, addr: "127.0.0.1", log: "127.0.0.1: no PROXY header from trusted proxy 127.0.0.1"},
		{name: "trusted sends TLS first", peer: "127.0.0.1", in: "\x16\x03\x01",
			step: Close, phase: Closed, addr: "127.0.0.1", log: "no PROXY header from trusted proxy"},
		{name: "malformed v1", peer: "127.0.0.1", in: "PROXY TCP4 203.0.113.7 127.0.0.1 99999 6080\r\n" + upgradeRequest,
			step: Close, phase: Closed, addr: "127.0.0.1", log: "127.0.0.1: malformed PROXY v1 header: bad port, closing"},
		{name: "malformed v2", peer: "127.0.0.1", in: "\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c",
			step: Close, phase: Closed, addr: "127.0.0.1", log: "malformed PROXY v2 header: version 3, not 2"},
		{name: "truncated", peer: "127.0.0.1", in: "PROXY TCP4 203.0.113.7 127.0.0.1 51",
			step: Continue, phase: ReadingProxyHeader, addr: "127.0.0.1", debugOnly: true},
		{name: "untrusted v1", peer: "192.0.2.9", in: "PROXY TCP4 203.0.113.7 127.0.0.1 51000 6080\r\n" + upgradeRequest,
			step: Close, phase: Closed, addr: "192.0.2.9", log: "192.0.2.9: PROXY header from untrusted address 192.0.2.9 refused"},
		{name: "untrusted v2 signature only", peer: "192.0.2.9", in: v2[:12],
			step: Close, phase: Closed, addr: "192.0.2.9", log: "PROXY header from untrusted address 192.0.2.9 refused"},
		{name: "untrusted maybe header", peer: "192.0.2.9", in: "PROX",
			step: Continue, phase: Sniffing, addr: "192.0.2.9", debugOnly: true},
		{name: "untrusted direct client", peer: "192.0.2.9", in: upgradeRequest,
			step: Dial, phase: Dialing, addr: "192.0.2.9", auth: "192.0.2.9", log: "192.0.2.9: Plain non-SSL (ws://) WebSocket connection"},
		{name: "untrusted POST", peer: "192.0.2.9", in: "POST / HTTP/1.1\r\n\r\n",
			step: Close, phase: Closed, addr: "192.0.2.9", log: `"POST / HTTP/1.1" 405 -`},
		{name: "unix peer trusted", peer: "unix", in: "PROXY TCP4 203.0.113.7 127.0.0.1 51000 6080\r\n" + upgradeRequest,
			step: Dial, phase: Dialing, addr: "203.0.113.7", auth: "203.0.113.7", log: "client 203.0.113.7 via unix"},
		{name: "mapped peer", peer: "::ffff:127.0.0.1", in: "PROXY TCP4 203.0.113.7 127.0.0.1 51000 6080\r\n" + upgradeRequest,
			step: Dial, phase: Dialing, addr: "203.0.113.7", auth: "203.0.113.7", log: "client 203.0.113.7"},
		// A PROXY header's client that is itself a trusted proxy speaks
		// for the client behind it; one that is not, does not.
		{name: "XFF from a trusted PROXY client", peer: "127.0.0.1",
			in:   "PROXY TCP4 10.0.0.5 127.0.0.1 1 2\r\n" + withHeader(upgradeRequest, "X-Forwarded-For: 198.51.100.4"),
			step: Dial, phase: Dialing, addr: "198.51.100.4", auth: "198.51.100.4", log: "10.0.0.5: X-Forwarded-For: client 198.51.100.4 via 10.0.0.5"},
		{name: "XFF from an untrusted PROXY client", peer: "127.0.0.1",
			in:   "PROXY TCP4 203.0.113.7 127.0.0.1 1 2\r\n" + withHeader(upgradeRequest, "X-Forwarded-For: 198.51.100.4"),
			step: Dial, phase: Dialing, addr: "203.0.113.7", auth: "203.0.113.7", log: "client 203.0.113.7 via 127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := proxiedConfig(true)
			s := NewSession(cfg, tt.peer)
			r := &recorder{}
			_, step := feedAll(&s, []byte(tt.in), r)
			if step != tt.step || s.Phase() != tt.phase || s.Addr() != tt.addr {
				t.Fatalf("step %v phase %v addr %q; want %v %v %q; logs %q", step, s.Phase(), s.Addr(), tt.step, tt.phase, tt.addr, r.logs)
			}
			seen := cfg.Auth.(*remoteAddrAuth).seen
			if tt.auth != "" && !reflect.DeepEqual(seen, []string{tt.auth}) {
				t.Errorf("auth plugin saw %q, want %q", seen, tt.auth)
			}
			if tt.log != "" && countLogs(r.logs, tt.log) != 1 {
				t.Errorf("want %q logged once; logs %q", tt.log, r.logs)
			}
			if tt.debugOnly {
				for _, l := range r.logs {
					if !strings.HasPrefix(l, "debug: ") {
						t.Errorf("unexpected line %q", l)
					}
				}
			}
		})
	}
}

// A header that stops short is refused once, when the peer closes or the
// first-byte wait ends; a peer that sent nothing goes as quietly as any.
func TestProxyHeaderCutShort(t *testing.T) {
	for _, end := range []string{"closed", "timeout"} {
		for _, sent := range []string{"PROXY TCP4 1.2.3.4", "\r\n\r\n\x00\r\nQUIT\n\x21", ""} {
			s := NewSession(proxiedConfig(true), "127.0.0.1")
			r := &recorder{}
			if n, step := feedAll(&s, []byte(sent), r); n != 0 || step != Continue {
				t.Fatalf("%q: consumed %d, step %v", sent, n, step)
			}
			var step Step
			if end == "closed" {
				step = s.ClientGone(r)
			} else {
				step = s.FirstByteExpired(r)
			}
			want := map[string]string{"closed": "connection closed before its PROXY header was complete",
				"timeout": "127.0.0.1: PROXY header not complete within 3s, closing"}[end]
			got := countLogs(r.logs, want)
			if step != Close || s.Phase() != Closed || (sent != "" && got != 1) || (sent == "" && got != 0) {
				t.Errorf("%s after %q: step %v phase %v; logs %q", end, sent, step, s.Phase(), r.logs)
			}
			if sent == "" {
				for _, l := range r.logs {
					if !strings.HasPrefix(l, "debug: ") {
						t.Errorf("%s after nothing: %q logged", end, l)
					}
				}
			}
		}
	}
}

// The header is read the same in any number of pieces, and what follows
// it is sniffed afterwards.
func TestProxyHeaderSplit(t *testing.T) {
	in := "PROXY TCP4 203.0.113.7 127.0.0.1 51000 6080\r\n" + upgradeRequest
	for cut := 1; cut < len(in); cut++ {
		s := NewSession(proxiedConfig(true), "127.0.0.1")
		r := &recorder{}
		held := []byte(in[:cut])
		n, step := feedAll(&s, held, r)
		held = append(held[n:], in[cut:]...)
		if step == Continue {
			_, step = feedAll(&s, held, r)
		}
		if step != Dial || s.Addr() != "203.0.113.7" {
			t.Fatalf("cut at %d: step %v addr %q logs %q", cut, step, s.Addr(), r.logs)
		}
	}
}

func TestForwardedHeaders(t *testing.T) {
	tests := []struct {
		name    string
		peer    string
		headers []string
		addr    string
		log     string
	}{
		{"XFF from trusted", "127.0.0.1", []string{"X-Forwarded-For: 203.0.113.7"}, "203.0.113.7",
			"debug: 127.0.0.1: X-Forwarded-For: client 203.0.113.7 via 127.0.0.1"},
		{"XFF from untrusted", "192.0.2.9", []string{"X-Forwarded-For: 203.0.113.7"}, "192.0.2.9", ""},
		{"XFF chain, proxies trusted", "127.0.0.1", []string{"X-Forwarded-For: 198.51.100.1, 203.0.113.7, 10.0.0.3"}, "203.0.113.7", ""},
		{"XFF spoofed on the left", "127.0.0.1", []string{"X-Forwarded-For: 10.0.0.9, 203.0.113.7"}, "203.0.113.7", ""},
		{"XFF all trusted", "127.0.0.1", []string{"X-Forwarded-For: 10.0.0.9, 10.0.0.3"}, "10.0.0.9", ""},
		{"XFF several lines", "127.0.0.1", []string{"X-Forwarded-For: 198.51.100.1", "X-Forwarded-For: 203.0.113.7, 10.0.0.3"}, "203.0.113.7", ""},
		{"XFF with port", "127.0.0.1", []string{"X-Forwarded-For: 203.0.113.7:4711"}, "203.0.113.7", ""},
		{"XFF v6", "127.0.0.1", []string{"X-Forwarded-For: 2001:db8::7"}, "2001:db8::7", ""},
		{"XFF bracketed v6 with port", "127.0.0.1", []string{"X-Forwarded-For: [2001:db8::7]:4711"}, "2001:db8::7", ""},
		{"XFF garbage", "127.0.0.1", []string{"X-Forwarded-For: nonsense"}, "127.0.0.1", ""},
		{"XFF unknown stops the walk", "127.0.0.1", []string{"X-Forwarded-For: 198.51.100.1, unknown, 10.0.0.3"}, "10.0.0.3", ""},
		{"XFF empty", "127.0.0.1", []string{"X-Forwarded-For: "}, "127.0.0.1", ""},
		{"Forwarded", "127.0.0.1", []string{"Forwarded: for=203.0.113.7;proto=http;by=10.0.0.1"}, "203.0.113.7",
			"debug: 127.0.0.1: Forwarded: client 203.0.113.7 via 127.0.0.1"},
		{"Forwarded quoted v6", "127.0.0.1", []string{`Forwarded: for="[2001:db8:cafe::17]:4711"`}, "2001:db8:cafe::17", ""},
		{"Forwarded quoted v4 with port", "127.0.0.1", []string{`Forwarded: For="203.0.113.7:4711"`}, "203.0.113.7", ""},
		{"Forwarded chain", "127.0.0.1", []string{`Forwarded: for=198.51.100.1, for="203.0.113.7";proto=https, for=10.0.0.3`}, "203.0.113.7", ""},
		{"Forwarded quoted comma", "127.0.0.1", []string{`Forwarded: for=198.51.100.1;x="a,b", for=10.0.0.3`}, "198.51.100.1", ""},
		{"Forwarded obfuscated", "127.0.0.1", []string{"Forwarded: for=_hidden"}, "127.0.0.1", ""},
		{"Forwarded unknown", "127.0.0.1", []string{"Forwarded: for=unknown, for=10.0.0.3"}, "10.0.0.3", ""},
		{"Forwarded obfuscated port", "127.0.0.1", []string{`Forwarded: for="[2001:db8::7]:_p"`}, "2001:db8::7", ""},
		{"Forwarded wins", "127.0.0.1", []string{"X-Forwarded-For: 198.51.100.1", "Forwarded: for=203.0.113.7"}, "203.0.113.7", "Forwarded: client 203.0.113.7"},
		{"Forwarded without for", "127.0.0.1", []string{"X-Forwarded-For: 198.51.100.1", "Forwarded: proto=https"}, "198.51.100.1", "X-Forwarded-For: client"},
		{"Forwarded from untrusted", "192.0.2.9", []string{"Forwarded: for=203.0.113.7"}, "192.0.2.9", ""},
		{"unix peer", "unix", []string{"X-Forwarded-For: 203.0.113.7"}, "203.0.113.7", "unix: X-Forwarded-For: client 203.0.113.7 via unix"},
		{"v6 peer in a trusted prefix", "2001:db8:ffff::2", []string{"X-Forwarded-For: 203.0.113.7"}, "203.0.113.7", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := proxiedConfig(false)
			s := NewSession(cfg, tt.peer)
			r := &recorder{}
			req := upgradeRequest
			for _, h := range tt.headers {
				req = withHeader(req, h)
			}
			if _, step := feedAll(&s, []byte(req), r); step != Dial {
				t.Fatalf("step %v; logs %q", step, r.logs)
			}
			if s.Addr() != tt.addr {
				t.Errorf("Addr %q, want %q; logs %q", s.Addr(), tt.addr, r.logs)
			}
			if seen := cfg.Auth.(*remoteAddrAuth).seen; !reflect.DeepEqual(seen, []string{tt.addr}) {
				t.Errorf("auth plugin saw %q, want %q", seen, tt.addr)
			}
			if tt.log != "" && countLogs(r.logs, tt.log) != 1 {
				t.Errorf("want %q logged once; logs %q", tt.log, r.logs)
			}
			if countLogs(r.logs, tt.addr+": Plain non-SSL (ws://) WebSocket connection") != 1 {
				t.Errorf("the upgrade is not logged with %s; logs %q", tt.addr, r.logs)
			}
		})
	}
}

// Without --trusted-proxies nothing is believed, and auth plugins still
// see the socket's address.
func TestForwardedIgnoredByDefault(t *testing.T) {
	cfg := testSessionConfig
	auth := &remoteAddrAuth{}
	cfg.Auth = auth
	s := NewSession(&cfg, "127.0.0.1")
	r := &recorder{}
	req := withHeader(upgradeRequest, "X-Forwarded-For: 203.0.113.7")
	if _, step := feedAll(&s, []byte("PROXY TCP4 203.0.113.7 127.0.0.1 1 2\r\n"), r); step != Close {
		t.Errorf("a PROXY header without --proxy-protocol: step %v, want the 400 of a bad request", step)
	}
	s = NewSession(&cfg, "127.0.0.1")
	if _, step := feedAll(&s, []byte(req), r); step != Dial || s.Addr() != "127.0.0.1" {
		t.Errorf("step %v addr %q", step, s.Addr())
	}
	if !reflect.DeepEqual(auth.seen, []string{"127.0.0.1"}) {
		t.Errorf("auth plugin saw %q", auth.seen)
	}
}

// Each request of a kept-alive connection is read on its own: a balancer
// may pass several clients' requests down one connection.
func TestForwardedPerRequest(t *testing.T) {
	cfg := proxiedConfig(false)
	cfg.Web = true
	s := NewSession(cfg, "127.0.0.1")
	r := &recorder{}
	get := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, c := range []struct{ header, addr string }{
		{"X-Forwarded-For: 203.0.113.7", "203.0.113.7"},
		{"", "127.0.0.1"},
		{"Forwarded: for=198.51.100.2", "198.51.100.2"},
	} {
		req := get
		if c.header != "" {
			req = withHeader(get, c.header)
		}
		if _, step := feedAll(&s, []byte(req), r); step != ServeWeb {
			t.Fatalf("step %v; logs %q", step, r.logs)
		}
		if s.Addr() != c.addr || s.WebRequest().RemoteAddr != c.addr {
			t.Errorf("%q: Addr %q, RemoteAddr %q; want %q", c.header, s.Addr(), s.WebRequest().RemoteAddr, c.addr)
		}
		s.WebStatus(200, r)
		if s.WebDone(true) != Continue {
			t.Fatal("keep-alive refused")
		}
	}
}
