package codec

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// recorder is a Peer that keeps everything a Session sends and logs.
type recorder struct {
	client  []byte
	target  []byte
	frames  int // ToClientFrame calls
	logs    []string
	scratch []byte
	cn      string // the client certificate CN it reports
}

func (r *recorder) ClientCertCN() string { return r.cn }

func (r *recorder) ToTarget(p []byte) { r.target = append(r.target, p...) }
func (r *recorder) ToClient(p []byte) { r.client = append(r.client, p...) }
func (r *recorder) ToClientFrame(head, body []byte) {
	r.frames++
	r.client = append(append(r.client, head...), body...)
}
func (r *recorder) Scratch(n int) []byte {
	if cap(r.scratch) < n {
		r.scratch = make([]byte, n)
	}
	return r.scratch[:n]
}
func (r *recorder) Log(debug bool, msg string) {
	if debug {
		msg = "debug: " + msg
	}
	r.logs = append(r.logs, msg)
}

func (r *recorder) reset() { r.client, r.target, r.frames, r.logs = nil, nil, 0, nil }

var testSessionConfig = SessionConfig{
	TLSAvailable: true,
	CertFile:     "self.pem",
	Target:       "127.0.0.1:5900",
	FirstByte:    3e9,
	RequestHead:  30e9,
}

const upgradeRequest = "GET /websockify HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n" +
	"Connection: Upgrade\r\nSec-WebSocket-Key: DKURYVK9cRFul1vOZVA56Q==\r\n" +
	"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n"

// relaying returns a session past its upgrade and dial, and the recorder
// with its output cleared.
func relaying(t *testing.T, request string) (*Session, *recorder) {
	t.Helper()
	s := NewSession(&testSessionConfig, "10.0.0.1")
	r := &recorder{}
	n, step := s.FromClient([]byte(request), r)
	if n != len(request) || step != Dial {
		t.Fatalf("upgrade: consumed %d of %d, step %v; logs %q", n, len(request), step, r.logs)
	}
	if step := s.Dialed(); step != Continue || s.Phase() != Relaying {
		t.Fatalf("Dialed: %v, phase %v", step, s.Phase())
	}
	r.reset()
	return &s, r
}

func hasLog(logs []string, want string) bool {
	for _, l := range logs {
		if strings.Contains(l, want) {
			return true
		}
	}
	return false
}

func TestSessionFirstBytes(t *testing.T) {
	tests := []struct {
		name      string
		cfg       SessionConfig
		in        string
		n         int // -1: all of in
		step      Step
		phase     Phase
		client    string // prefix of what the client gets
		log       string // a line that must be logged
		noClients bool   // nothing at all goes to the client
	}{
		{name: "nothing yet", in: "", n: 0, step: Continue, phase: Sniffing, noClients: true},
		{name: "flash policy", in: "<policy-file-request/>\x00", n: -1, step: Close, phase: Closed,
			client: `<cross-domain-policy><allow-access-from domain="*" to-ports="*" /></cross-domain-policy>` + "\n\x00",
			log:    "10.0.0.1: Sending flash policy response"},
		{name: "flash policy, partial", in: "<policy-file", n: 0, step: Continue, phase: Sniffing, noClients: true},
		{name: "TLS hello", in: "\x16\x03\x01\x02\x00", n: 0, step: StartTLS, phase: Handshaking, noClients: true},
		{name: "SSLv2 hello", in: "\x80\x2e\x01", n: 0, step: StartTLS, phase: Handshaking, noClients: true},
		{name: "TLS without a certificate", cfg: SessionConfig{CertFile: "self.pem"}, in: "\x16\x03\x01",
			n: -1, step: Close, phase: Closed, noClients: true, log: "10.0.0.1: SSL connection but 'self.pem' not found"},
		{name: "plain with --ssl-only", cfg: SessionConfig{TLSAvailable: true, SSLOnly: true}, in: "GET / HTTP/1.1\r\n",
			n: -1, step: Close, phase: Closed, noClients: true, log: "10.0.0.1: non-SSL connection received but disallowed"},
		{name: "partial head", in: "GET /websockify HTTP/1.1\r\nHost: x\r\n", n: 0, step: Continue, phase: ReadingHead, noClients: true},
		{name: "garbage", in: "\x01\x02\x03\r\n", n: -1, step: Close, phase: Closed,
			client: "HTTP/1.1 400 Bad Request\r\n", log: "10.0.0.1: code 400, message Bad request syntax"},
		{name: "GET without --web", in: "GET /vnc.html HTTP/1.1\r\nHost: x\r\n\r\n", n: -1, step: Close, phase: Closed,
			client: "HTTP/1.1 405 Method Not Allowed\r\n", log: `"GET /vnc.html HTTP/1.1" 405 -`},
		{name: "GET with --web", cfg: SessionConfig{Web: true}, in: "GET /vnc.html HTTP/1.1\r\nHost: x\r\n\r\nGET",
			n: len("GET /vnc.html HTTP/1.1\r\nHost: x\r\n\r\n"), step: ServeWeb, phase: ServingWeb, noClients: true},
		{name: "upgrade", in: upgradeRequest + "\x82\x80", n: len(upgradeRequest), step: Dial, phase: Dialing,
			client: "HTTP/1.1 101 Switching Protocols\r\n", log: "connecting to: 127.0.0.1:5900"},
		{name: "unsupported version", in: strings.Replace(upgradeRequest, "Version: 13", "Version: 14", 1),
			n: -1, step: Close, phase: Closed, client: "HTTP/1.1 400 Bad Request\r\n",
			log: `"GET /websockify HTTP/1.1" 400 -`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if reflect.ValueOf(cfg).IsZero() { // SessionConfig holds a slice: no ==
				cfg = testSessionConfig
			}
			cfg.Target = testSessionConfig.Target
			s := NewSession(&cfg, "10.0.0.1")
			r := &recorder{}
			n, step := s.FromClient([]byte(tt.in), r)
			want := tt.n
			if want < 0 {
				want = len(tt.in)
			}
			if n != want || step != tt.step || s.Phase() != tt.phase {
				t.Errorf("consumed %d, step %v, phase %v; want %d, %v, %v", n, step, s.Phase(), want, tt.step, tt.phase)
			}
			if tt.noClients && len(r.client) > 0 {
				t.Errorf("client got %q", r.client)
			}
			if !strings.HasPrefix(string(r.client), tt.client) {
				t.Errorf("client got %q, want prefix %q", r.client, tt.client)
			}
			if tt.log != "" && !hasLog(r.logs, tt.log) {
				t.Errorf("logs %q lack %q", r.logs, tt.log)
			}
			if len(r.target) > 0 {
				t.Errorf("target got %q before any dial", r.target)
			}
		})
	}
}

func TestSessionUpgradeLogs(t *testing.T) {
	s := NewSession(&testSessionConfig, "10.0.0.1")
	r := &recorder{}
	s.FromClient([]byte(upgradeRequest), r)
	want := []string{
		`"GET /websockify HTTP/1.1" 101 -`,
		"10.0.0.1: Plain non-SSL (ws://) WebSocket connection",
		"10.0.0.1: Version hybi-13, base64: 'False'",
		"10.0.0.1: Path: '/websockify'",
		"connecting to: 127.0.0.1:5900",
	}
	if strings.Join(r.logs, "\n") != strings.Join(want, "\n") {
		t.Errorf("logs:\n%s\nwant:\n%s", strings.Join(r.logs, "\n"), strings.Join(want, "\n"))
	}
	if !s.Upgraded() || s.Version() != HyBi {
		t.Errorf("Upgraded %v, Version %v", s.Upgraded(), s.Version())
	}
}

func TestSessionAfterTLS(t *testing.T) {
	s := NewSession(&testSessionConfig, "10.0.0.1")
	r := &recorder{}
	if _, step := s.FromClient([]byte{0x16, 3, 1}, r); step != StartTLS {
		t.Fatalf("step %v", step)
	}
	// Bytes offered during the handshake are not the machine's.
	if n, step := s.FromClient([]byte("junk"), r); n != 0 || step != Continue {
		t.Fatalf("during handshake: %d, %v", n, step)
	}
	s.TLSReady()
	if s.Phase() != Sniffing {
		t.Fatalf("phase %v after TLSReady", s.Phase())
	}
	// Inside TLS a 0x16 is a bad request, not another handshake.
	s2 := s
	if _, step := s2.FromClient([]byte("\x16\r\n"), r); step != Close || !strings.HasPrefix(string(r.client), "HTTP/1.1 400") {
		t.Errorf("0x16 inside TLS: %v, %q", step, r.client)
	}
	r.reset()
	hixie := "GET /demo HTTP/1.1\r\nHost: example.com\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\nOrigin: http://example.com\r\n\r\n"
	if _, step := s.FromClient([]byte(hixie), r); step != Dial {
		t.Fatalf("Hixie-75 over TLS: %v, %q", step, r.logs)
	}
	if !strings.Contains(string(r.client), "WebSocket-Location: wss://example.com/demo") ||
		!hasLog(r.logs, "SSL/TLS (wss://) WebSocket connection") || !hasLog(r.logs, "Version hixie-75, base64: 'True'") {
		t.Errorf("reply %q, logs %q", r.client, r.logs)
	}

	s3 := NewSession(&testSessionConfig, "10.0.0.1")
	s3.FromClient([]byte{0x16}, r)
	r.reset()
	if step := s3.TLSFailed(errors.New("bad record"), r); step != Close || !hasLog(r.logs, "TLS handshake failed: bad record") {
		t.Errorf("TLSFailed: %v, %q", step, r.logs)
	}
}

func TestSessionRelay(t *testing.T) {
	s, r := relaying(t, upgradeRequest)
	mask := [4]byte{1, 2, 3, 4}
	in := append(maskedFrame(0x82, []byte("hello"), mask), maskedFrame(0x89, []byte("p"), mask)...)
	in = append(in, maskedFrame(0x82, []byte("wor"), mask)[:5]...) // a partial frame
	n, step := s.FromClient(in, r)
	if step != Continue || string(r.target) != "hello" || !bytes.Equal(r.client, []byte{0x8A, 1, 'p'}) {
		t.Fatalf("relay: step %v, target %q, client %q", step, r.target, r.client)
	}
	if n >= len(in) {
		t.Errorf("consumed %d of %d: the partial header must stay", n, len(in))
	}
	r.reset()
	s.FromTarget([]byte("from target"), r)
	if r.frames != 1 || !bytes.Equal(r.client, append([]byte{0x82, 11}, "from target"...)) {
		t.Errorf("FromTarget: %d frames, %q", r.frames, r.client)
	}

	r.reset()
	closing := maskedFrame(0x88, []byte{0x03, 0xE8, 'b', 'y', 'e'}, mask)
	n, step = s.FromClient(closing, r)
	if n != len(closing) || step != Close || s.Phase() != Closed || !bytes.Equal(r.client, []byte{0x88, 5, 0x03, 0xE8, 'b', 'y', 'e'}) {
		t.Errorf("client close: consumed %d of %d, %v, %v, %q", n, len(closing), step, s.Phase(), r.client)
	}
	if !hasLog(r.logs, "10.0.0.1: Client closed connection (code 1000)") {
		t.Errorf("logs %q", r.logs)
	}
	// Whatever happens next sends nothing more: one close frame per session.
	r.reset()
	if step := s.TargetClosed(io.EOF, r); step != Close || len(r.client) > 0 {
		t.Errorf("TargetClosed after close: %v, %q", step, r.client)
	}
	s.FromTarget([]byte("late"), r)
	s.Heartbeat(r)
	if n, _ := s.FromClient([]byte("more"), r); n != 4 || len(r.client)+len(r.target) > 0 {
		t.Errorf("after close: consumed %d, client %q, target %q", n, r.client, r.target)
	}
}

func TestSessionBase64(t *testing.T) {
	s, r := relaying(t, strings.Replace(upgradeRequest, "Protocol: binary", "Protocol: base64", 1))
	s.FromTarget([]byte{0, 1, 2}, r)
	if string(r.client) != "\x81\x04AAEC" || r.frames != 0 {
		t.Errorf("base64 frame %q (%d split frames)", r.client, r.frames)
	}
	r.reset()
	if _, step := s.FromClient(maskedFrame(0x81, []byte("AAE!"), [4]byte{9, 9, 9, 9}), r); step != Close ||
		!bytes.HasPrefix(r.client, []byte{0x88, byte(2 + len("Invalid base64")), 0x03, 0xEF}) {
		t.Errorf("bad base64: %v, %q", step, r.client)
	}
}

func TestSessionEndings(t *testing.T) {
	tests := []struct {
		name   string
		end    func(s *Session, r *recorder) Step
		code   uint16 // 0: no frame
		reason string
		log    string
	}{
		{"target closes", func(s *Session, r *recorder) Step { return s.TargetClosed(io.EOF, r) }, 1000, "Target closed",
			"10.0.0.1: Target closed connection"},
		{"target fails", func(s *Session, r *recorder) Step { return s.TargetClosed(errors.New("reset"), r) }, 1000, "Target closed",
			"10.0.0.1: Target connection error: reset"},
		{"client goes", func(s *Session, r *recorder) Step { return s.ClientGone(r) }, 0, "", "10.0.0.1: Client disconnected"},
		{"shutdown", func(s *Session, r *recorder) Step { return s.Shutdown(r) }, 1001, "Going away",
			"10.0.0.1: Closing connection: 1001 Going away"},
		{"protocol error", func(s *Session, r *recorder) Step {
			_, step := s.FromClient([]byte{0x82, 0x01, 'x'}, r) // unmasked
			return step
		}, 1002, "Unmasked client frame", "Closing connection: 1002 Unmasked client frame"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, r := relaying(t, upgradeRequest)
			if step := tt.end(s, r); step != Close || s.Phase() != Closed {
				t.Fatalf("step %v, phase %v", step, s.Phase())
			}
			if tt.code == 0 && len(r.client) > 0 {
				t.Errorf("client got %q", r.client)
			}
			if tt.code != 0 {
				want := append([]byte{0x88, byte(2 + len(tt.reason)), byte(tt.code >> 8), byte(tt.code)}, tt.reason...)
				if !bytes.Equal(r.client, want) {
					t.Errorf("client got %q, want %q", r.client, want)
				}
			}
			if !hasLog(r.logs, tt.log) {
				t.Errorf("logs %q lack %q", r.logs, tt.log)
			}
		})
	}

	// A failed dial closes with 1011, after the 101.
	s := NewSession(&testSessionConfig, "10.0.0.1")
	r := &recorder{}
	s.FromClient([]byte(upgradeRequest), r)
	r.reset()
	if step := s.DialFailed(errors.New("connection refused"), r); step != Close ||
		!bytes.Contains(r.client, []byte("Failed to connect to downstream server")) ||
		!hasLog(r.logs, "Failed to connect to 127.0.0.1:5900: connection refused") {
		t.Errorf("DialFailed: %v, %q, %q", step, r.client, r.logs)
	}
	// A session closed while dialing refuses the late target.
	s = NewSession(&testSessionConfig, "10.0.0.1")
	s.FromClient([]byte(upgradeRequest), r)
	s.Shutdown(r)
	if step := s.Dialed(); step != Close {
		t.Errorf("Dialed after shutdown: %v", step)
	}
}

func TestSessionTimers(t *testing.T) {
	r := &recorder{}
	s := NewSession(&testSessionConfig, "10.0.0.1")
	if step := s.FirstByteExpired(r); step != Close || !hasLog(r.logs, "debug: 10.0.0.1: no data within 3s, closing") {
		t.Errorf("first byte: %v, %q", step, r.logs)
	}
	r.reset()
	s = NewSession(&testSessionConfig, "10.0.0.1")
	s.FromClient([]byte("GET / HTTP/1.1\r\n"), r)
	if step := s.FirstByteExpired(r); step != Continue {
		t.Errorf("first byte while reading a head: %v", step)
	}
	if step := s.RequestHeadExpired(true, r); step != Close || !hasLog(r.logs, "request head not complete within 30s") {
		t.Errorf("request head: %v, %q", step, r.logs)
	}

	// An idle keep-alive connection closes quietly.
	cfg := testSessionConfig
	cfg.Web = true
	s = NewSession(&cfg, "10.0.0.1")
	r.reset()
	s.FromClient([]byte("GET / HTTP/1.1\r\n\r\n"), r)
	s.WebStatus(200, r)
	if !hasLog(r.logs, `"GET / HTTP/1.1" 200 -`) {
		t.Errorf("web status logs %q", r.logs)
	}
	if step := s.WebDone(true); step != Continue || s.Phase() != ReadingHead || !s.KeptAlive() {
		t.Fatalf("WebDone(true): %v, %v", step, s.Phase())
	}
	r.reset()
	if step := s.RequestHeadExpired(false, r); step != Close || !hasLog(r.logs, "debug: 10.0.0.1: idle keep-alive connection closed") {
		t.Errorf("idle keep-alive: %v, %q", step, r.logs)
	}

	// Heartbeats: a ping for HyBi, nothing for Hixie.
	hs, r2 := relaying(t, upgradeRequest)
	hs.Heartbeat(r2)
	if !bytes.Equal(r2.client, []byte{0x89, 0}) {
		t.Errorf("HyBi heartbeat %q", r2.client)
	}
	hx, r3 := relaying(t, "GET /demo HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\r\n")
	hx.Heartbeat(r3)
	if len(r3.client) > 0 {
		t.Errorf("Hixie heartbeat %q", r3.client)
	}
}

// The relay path allocates nothing per frame.
func TestSessionRelayAllocs(t *testing.T) {
	s, r := relaying(t, upgradeRequest)
	frame := maskedFrame(0x82, bytes.Repeat([]byte{7}, 1000), [4]byte{1, 2, 3, 4})
	in := make([]byte, len(frame))
	payload := bytes.Repeat([]byte{9}, 4096)
	r.client = make([]byte, 0, 1<<20)
	r.target = make([]byte, 0, 1<<20)
	r.Scratch(64)
	allocs := testing.AllocsPerRun(100, func() {
		copy(in, frame)
		s.FromClient(in, r)
		s.FromTarget(payload, r)
		r.client, r.target = r.client[:0], r.target[:0]
	})
	if allocs != 0 {
		t.Errorf("%v allocations per relayed frame pair", allocs)
	}
}

// maskedFrame builds a final client frame with first byte b0.
func maskedFrame(b0 byte, payload []byte, mask [4]byte) []byte {
	f := []byte{b0, 0x80 | byte(len(payload))}
	f = append(f, mask[:]...)
	for i, c := range payload {
		f = append(f, c^mask[i%4])
	}
	return f
}
