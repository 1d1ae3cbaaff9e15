package codec

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/gowebsockify/websockify/sniff"
)

// Session is the life of one client connection, from its first byte to its
// last frame, as a state machine: the owner of the sockets feeds it what the
// client and the target send and what happened to them (a dial finished, a
// timer fired, the TLS handshake ended), and it answers through a Peer (bytes
// for either side, log lines) and with a Step, what the owner must do next.
// It never touches a socket, never blocks and, once relaying, never
// allocates, so the event loop, a table test and a fuzzer drive it alike.
//
// Every transport (ws://, wss://, --ssl-target, unix sockets) goes through
// the same Session: TLS is the owner's business, below it. That is what
// keeps each of a connection's steps, and each of its log lines, in one
// place.
//
// The phases, in order (Phase reports the current one):
//
//	[ReadingProxyHeader ─►] Sniffing ─► Handshaking ─► Sniffing ─► ReadingHead ─► ServingWeb ─► ReadingHead ...
//	                           (TLS only)                               │
//	                                                                    ├─► Routing ─┐ (--token-plugin)
//	                                                                    └────────────┴─► Dialing ─► Relaying ─► Closed
//
// ReadingProxyHeader comes first only with --proxy-protocol and a trusted
// peer (realaddr.go). Any phase can end in Closed. A Session is not safe for concurrent use.
type Session struct {
	cfg      *SessionConfig
	addr     string // client address, the prefix of its log lines
	phase    Phase
	tls      bool // the client's bytes come through TLS
	upgraded bool
	keepIdle bool // the request being read follows a kept-alive response

	origin origin // where the client really is (realaddr.go)

	handshook  bool   // a request head was complete: the Limiter counted the connection
	admitted   bool   // the Limiter counts a session for admittedAs, until release
	admittedAs string // the address the Limiter was asked about

	req    *Request
	target string   // where the session is proxied to, as logged
	route  *routing // the upgrade waiting for its target (Routing)
	end    End      // why it closed, for the metrics (end.go)
	dec    Decoder
	enc    Encoder
}

// routing is an upgrade held while the owner looks its token up.
type routing struct {
	req   *Request
	hs    Handshake
	token string
}

// SessionConfig is what every Session of a proxy shares.
type SessionConfig struct {
	// TLSAvailable says a certificate is loaded, so TLS clients can be
	// served; without one they are closed with a log line naming CertFile.
	TLSAvailable bool
	CertFile     string
	SSLOnly      bool // refuse clients that do not start with TLS
	Web          bool // a web server answers requests that are not upgrades
	// Target is where every session goes, as logged ("host:port", an
	// absolute socket path, or a wrapped program as 'PROGRAM ARGS' (port
	// P)), unless Tokens is set.
	Target string
	// TargetTLS says the target is reached over TLS (--ssl-target): only
	// for the log line of each dial.
	TargetTLS bool
	// Tokens, when set, says where each session's token is read from: the
	// session then asks its owner to look the target up (Step Route).
	Tokens TokenFrom
	// Auth, when set, checks each upgrade request (--auth-plugin) and, with
	// WebAuth, each web request too.
	Auth    Authenticator
	WebAuth bool
	// ProxyProtocol expects a PROXY header (v1 or v2) first from every
	// peer in TrustedProxies and refuses one from anyone else.
	// TrustedProxies also says whose X-Forwarded-For and Forwarded
	// headers are believed (realaddr.go).
	ProxyProtocol  bool
	TrustedProxies []netip.Prefix
	// HealthPath, when set, is answered 200 "OK" to GET and HEAD, before
	// auth and the web server: a load balancer's probe (--health-path).
	HealthPath  string
	FirstByte   time.Duration // only for log lines; the owner keeps the time
	RequestHead time.Duration

	// Limiter, when set, admits each connection and session (limit.go).
	// MaxRequestHead caps a request head (0: MaxHeaderBytes) and
	// MaxFrame a client's data frame payload (0: no cap).
	Limiter        Limiter
	MaxRequestHead int
	MaxFrame       uint64
}

// Phase is where a Session is in its life.
type Phase uint8

const (
	ReadingProxyHeader Phase = iota // waiting for a trusted proxy's PROXY header
	Sniffing                        // waiting for the first bytes
	Handshaking                     // the owner runs the TLS handshake
	ReadingHead                     // reading an HTTP request head
	ServingWeb                      // the owner answers a web request
	Routing                         // the owner looks the session's token up
	Dialing                         // the 101 went out; the owner connects to the target
	Relaying                        // both sides up
	Closed                          // over; whatever else comes is dropped
)

func (p Phase) String() string {
	return [...]string{"reading PROXY header", "sniffing", "handshaking", "reading head", "serving web", "routing", "dialing", "relaying", "closed"}[p]
}

// Step is what the owner must do after a call.
type Step uint8

const (
	// Continue: nothing but to keep feeding bytes as they come. Bytes a
	// FromClient call did not consume are offered again, with more after.
	Continue Step = iota
	// StartTLS: the client speaks TLS. Run the handshake with every byte
	// offered so far, then call TLSReady or TLSFailed and feed the
	// plaintext.
	StartTLS
	// ServeWeb: answer WebRequest, call WebStatus once the status is
	// known and WebDone once the response is out.
	ServeWeb
	// Dial: connect to the target, then call Dialed or DialFailed.
	Dial
	// Route: look up the target of Token, then call Routed or
	// RouteFailed. The owner may dial at once when the lookup succeeds:
	// Routed's Dial is then already under way.
	Route
	// Close: the session is over. Send what is queued for each side,
	// then close both without losing it.
	Close
)

func (s Step) String() string {
	return [...]string{"continue", "start TLS", "serve web", "dial", "route", "close"}[s]
}

// Peer is the owner of a Session's sockets: everything the Session sends or
// logs goes through it. Slices are valid only during the call.
type Peer interface {
	Output // ToTarget: payload for the target; ToClient: bytes for the client
	// ToClientFrame sends a frame whose payload is apart from its header:
	// a binary frame carries the target's bytes without a copy.
	ToClientFrame(head, body []byte)
	// Scratch lends n bytes to build one frame in, until the next call.
	Scratch(n int) []byte
	// Log writes a line about this client; debug lines only with -v.
	Log(debug bool, msg string)
	// ClientCertCN is the subject CN of the client's verified TLS
	// certificate, "" when it has none.
	ClientCertCN() string
}

// NewSession starts the session of a client whose address (as logged) is addr.
func NewSession(cfg *SessionConfig, addr string) Session {
	s := Session{cfg: cfg, addr: addr, target: cfg.Target, phase: Sniffing}
	s.startOrigin()
	return s
}

// Addr is the client's address, as logged: once a PROXY header or a
// trusted proxy's X-Forwarded-For or Forwarded header named the real
// client, that one (it is set as each request head is complete).
func (s *Session) Addr() string { return s.addr }

// Phase reports where the session is.
func (s *Session) Phase() Phase { return s.phase }

// Upgraded reports whether a 101 went out (--run-once counts these).
func (s *Session) Upgraded() bool { return s.upgraded }

// Version is the protocol the upgrade negotiated.
func (s *Session) Version() Version { return s.enc.Version }

// FrameLen is the most bytes FromTarget sends the client for n bytes from
// the target.
func (s *Session) FrameLen(n int) int {
	if s.enc.Version == HyBi && s.enc.Mode == Binary {
		return s.enc.MaxFrameLen(n) + n // the header; the payload is apart
	}
	return s.enc.MaxFrameLen(n)
}

// WebRequest is the request to answer after ServeWeb.
func (s *Session) WebRequest() *Request { return s.req }

// KeptAlive reports whether the request head being read follows a response
// on the same connection (an idle keep-alive connection is closed quietly).
func (s *Session) KeptAlive() bool { return s.keepIdle }

func (s *Session) logf(out Peer, format string, args ...any) {
	out.Log(false, fmt.Sprintf(format, args...))
}

func (s *Session) debugf(out Peer, format string, args ...any) {
	out.Log(true, fmt.Sprintf(format, args...))
}

// FromClient consumes a prefix of what the client sent (plaintext, for a TLS
// client) and reports how much, and what to do next. Bytes not consumed are
// offered again with more appended; in may be modified (frames are unmasked
// in place).
func (s *Session) FromClient(in []byte, out Peer) (n int, step Step) {
	switch s.phase {
	case ReadingProxyHeader:
		return s.readProxyHeader(in, out)
	case Sniffing:
		if n, step, done := s.untrustedProxyHeader(in, out); done {
			return n, step
		}
		switch sniff.Classify(in) {
		case sniff.NeedMore:
			return 0, Continue
		case sniff.FlashPolicy:
			s.logf(out, "%s: Sending flash policy response", s.addr)
			out.ToClient([]byte(sniff.PolicyResponse))
			return len(in), s.close()
		case sniff.TLS:
			if !s.tls { // inside TLS a 0x16 is just a bad request
				return s.startTLS(in, out)
			}
		}
		if s.cfg.SSLOnly && !s.tls {
			s.logf(out, "%s: non-SSL connection received but disallowed", s.addr)
			s.endAs(EndNotTLS)
			return len(in), s.close()
		}
		s.phase = ReadingHead
		return s.readRequest(in, out)
	case ReadingHead:
		return s.readRequest(in, out)
	case Relaying:
		n, err := s.dec.Feed(in, out)
		if err != nil {
			var ce *CloseError
			if !errors.As(err, &ce) {
				s.endAs(EndProtocolError)
				return len(in), s.close()
			}
			switch {
			case ce.Remote:
				s.endAs(EndClientClosed)
			case ce.Code == 1009:
				s.endAs(EndMessageTooBig)
			default:
				s.endAs(EndProtocolError)
			}
			return len(in), s.closeWithFrame(out, ce.Code, ce.Reason, ce.Remote)
		}
		return n, Continue
	case Closed:
		return len(in), Continue
	}
	// Handshaking, Web, Dialing: the owner holds the bytes until the
	// phase moves on.
	return 0, Continue
}

// startTLS leaves the bytes to the owner's handshake, or drops the client
// when there is no certificate.
func (s *Session) startTLS(in []byte, out Peer) (int, Step) {
	if !s.cfg.TLSAvailable {
		s.logf(out, "%s: SSL connection but '%s' not found", s.addr, s.cfg.CertFile)
		s.endAs(EndNoCert)
		return len(in), s.close()
	}
	s.phase = Handshaking
	return 0, StartTLS
}

// TLSReady is called once the owner's TLS handshake succeeded: what comes
// next is the decrypted stream, sniffed again (wss://, https://).
func (s *Session) TLSReady() {
	if s.phase == Handshaking {
		s.tls = true
		s.phase = Sniffing
	}
}

// TLSFailed is called when the TLS handshake failed or timed out.
func (s *Session) TLSFailed(err error, out Peer) Step {
	if s.phase != Handshaking {
		return s.close()
	}
	s.logf(out, "%s: TLS handshake failed: %v", s.addr, err)
	s.endAs(EndTLSFailed)
	return s.close()
}

func (s *Session) readRequest(in []byte, out Peer) (int, Step) {
	req, n, err := ParseRequest(in, s.maxHead())
	if err != nil {
		return len(in), s.refuseHead(err, out)
	}
	if n == 0 {
		return 0, Continue
	}
	s.keepIdle = false
	s.forwardedFor(req, out)
	if s.isHealthProbe(req) { // before the limits: a balancer probes often
		return len(in), s.answerHealthProbe(req, out)
	}
	if s.cfg.Limiter != nil && s.admit(req, out) {
		return len(in), s.close()
	}
	if !req.IsWebSocket() {
		if s.cfg.Web {
			if s.cfg.WebAuth && !s.authorized(req, out) {
				return len(in), s.close()
			}
			s.req = req
			s.phase = ServingWeb
			return n, ServeWeb
		}
		s.logf(out, `"%s %s %s" 405 -`, req.Method, req.Target, req.Proto)
		s.endAs(EndNotUpgrade)
		return len(in), s.refuse(out, &HTTPError{Status: 405, Reason: "Method Not Allowed"})
	}
	hs, err := Upgrade(req, s.tls)
	if err != nil {
		s.logf(out, `"%s %s %s" %d -`, req.Method, req.Target, req.Proto, statusOf(err))
		s.endAs(EndBadUpgrade)
		return len(in), s.refuse(out, err)
	}
	// The token first, as the original: a client with no target is told so
	// before it is asked for credentials.
	token, ok := TokenOf(req, s.cfg.Tokens)
	if s.cfg.Tokens != NoToken && !ok {
		s.endAs(EndTokenMissing)
		return len(in), s.deny(out, req, &HTTPError{Status: 403, Reason: "Token not present"}, "")
	}
	if s.cfg.Auth != nil && !s.authorized(req, out) {
		return len(in), s.close()
	}
	if s.cfg.Tokens != NoToken {
		s.route = &routing{req: req, hs: hs, token: token}
		s.phase = Routing
		return n, Route
	}
	return n, s.upgrade(req, hs, out)
}

// upgrade sends the 101 and moves on to dialing.
func (s *Session) upgrade(req *Request, hs Handshake, out Peer) Step {
	out.ToClient(hs.Response)
	s.logUpgrade(out, req, hs)
	s.dec = NewDecoder(hs.Version, hs.Mode)
	s.dec.maxFrame = s.cfg.MaxFrame
	s.enc = Encoder{Version: hs.Version, Mode: hs.Mode}
	s.upgraded = true
	s.req = nil
	s.phase = Dialing
	line := connectingTo(s.target)
	if s.cfg.TargetTLS {
		line += " (using SSL)"
	}
	s.logf(out, "%s", line)
	return Dial
}

// connectingTo is the original's line for a dial about to start.
func connectingTo(target string) string {
	switch {
	case strings.HasPrefix(target, "/"):
		return "connecting to unix socket: " + target
	case strings.HasPrefix(target, "'"): // a wrapped program: 'PROGRAM ARGS' (port P)
		return "connecting to command: " + target
	}
	return "connecting to: " + target
}

// Token is the token of a session in Routing, to look up.
func (s *Session) Token() string {
	if s.route == nil {
		return ""
	}
	return s.route.token
}

// Routed is called with the target the session's token names (as logged:
// "host:port" or an absolute socket path): the 101 goes out and the
// session dials it.
func (s *Session) Routed(target string, out Peer) Step {
	if s.phase != Routing || s.route == nil {
		return s.close()
	}
	r := s.route
	s.route = nil
	s.target = target
	return s.upgrade(r.req, r.hs, out)
}

// RouteFailed is called when the token names no target (ErrTokenNotFound),
// or its lookup failed: 502, or 504 when err is a timeout.
func (s *Session) RouteFailed(err error, out Peer) Step {
	if s.phase != Routing || s.route == nil {
		return s.close()
	}
	r := s.route
	s.route = nil
	var refusal *HTTPError
	var timeout interface{ Timeout() bool }
	switch {
	case errors.Is(err, ErrTokenNotFound):
		s.endAs(EndTokenNotFound)
		refusal = &HTTPError{Status: 403, Reason: "Token '" + printable(r.token) + "' not found"}
	case errors.As(err, &timeout) && timeout.Timeout():
		s.logf(out, "%s: token lookup failed: %v", s.addr, err)
		refusal = &HTTPError{Status: 504, Reason: "Token lookup timed out"}
		s.endAs(EndLookupTimeout)
	default:
		s.logf(out, "%s: token lookup failed: %v", s.addr, err)
		refusal = &HTTPError{Status: 502, Reason: "Token lookup failed"}
		s.endAs(EndLookupFailed)
	}
	return s.deny(out, r.req, refusal, "")
}

// ErrTokenNotFound is what RouteFailed takes for a token that names no
// target (or was refused: a bad signature, an expired JWT).
var ErrTokenNotFound = errors.New("token not found")

// authorized runs the auth plugin on req; a refused request is answered
// and logged here.
func (s *Session) authorized(req *Request, out Peer) bool {
	refusal, why := s.cfg.Auth.Authenticate(req, out.ClientCertCN())
	if refusal == nil {
		return true
	}
	s.endAs(EndAuthRefused)
	s.deny(out, req, refusal, "authentication failed: "+why)
	return false
}

// deny refuses req with its reason (or why, when given) in the log, as the
// original logs a refused token: "<ip>: Token 'x' not found".
func (s *Session) deny(out Peer, req *Request, refusal *HTTPError, why string) Step {
	if why == "" {
		why = refusal.Reason
	}
	s.logf(out, `"%s %s %s" %d -`, req.Method, printable(req.Target), req.Proto, refusal.Status)
	s.logf(out, "%s: %s", s.addr, why)
	out.ToClient(refusal.Response())
	return s.close()
}

// logUpgrade logs a completed WebSocket handshake in the original's lines.
func (s *Session) logUpgrade(out Peer, req *Request, hs Handshake) {
	s.logf(out, `"%s %s %s" 101 -`, req.Method, req.Target, req.Proto)
	if s.tls {
		s.logf(out, "%s: SSL/TLS (wss://) WebSocket connection", s.addr)
	} else {
		s.logf(out, "%s: Plain non-SSL (ws://) WebSocket connection", s.addr)
	}
	version := "hybi-" + req.Header.Get("Sec-WebSocket-Version")
	switch hs.Version {
	case Hixie76:
		version = "hixie-76"
	case Hixie75:
		version = "hixie-75"
	}
	base64 := "False"
	if hs.Mode == Base64 {
		base64 = "True" // Python's spelling
	}
	s.logf(out, "%s: Version %s, base64: '%s'", s.addr, version, base64)
	if req.Target != "/" { // as the original: the root path goes unsaid
		s.logf(out, "%s: Path: '%s'", s.addr, printable(req.Target))
	}
}

// refuse answers an HTTP error; the owner closes once it is sent.
func (s *Session) refuse(out Peer, err error) Step {
	var he *HTTPError
	if !errors.As(err, &he) {
		he = &HTTPError{Status: 400, Reason: err.Error()}
	}
	s.logf(out, "%s: code %d, message %s", s.addr, he.Status, he.Reason)
	out.ToClient(he.Response())
	return s.close()
}

func statusOf(err error) int {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Status
	}
	return 400
}

// WebStatus logs the status of the web response being sent.
func (s *Session) WebStatus(status int, out Peer) {
	if s.phase == ServingWeb && s.req != nil {
		s.logf(out, `"%s %s %s" %d -`, s.req.Method, s.req.Target, s.req.Proto, status)
	}
}

// WebDone is called once a web response is out: with keepAlive the next
// request is read (bytes held meanwhile are offered again), else the
// session ends.
func (s *Session) WebDone(keepAlive bool) Step {
	if s.phase != ServingWeb {
		return s.close()
	}
	s.req = nil
	if !keepAlive {
		return s.close()
	}
	s.phase = ReadingHead
	s.keepIdle = true
	return Continue
}

// WebFailed ends a web response cut short (the file could not be read).
func (s *Session) WebFailed(err error, out Peer) Step {
	if s.phase == ServingWeb {
		s.logf(out, "%s: %v", s.addr, err)
	}
	return s.close()
}

// Dialed is called once the target is connected: bytes held meanwhile are
// offered again, and from now on what the target sends goes to FromTarget.
// Close means the session ended while dialing: close the new connection.
func (s *Session) Dialed() Step {
	if s.phase != Dialing {
		return Close
	}
	s.phase = Relaying
	return Continue
}

// DialFailed is called when the target could not be reached.
func (s *Session) DialFailed(err error, out Peer) Step {
	if s.phase != Dialing {
		return s.close()
	}
	s.logf(out, "%s: Failed to connect to %s: %v", s.addr, s.target, err)
	s.endAs(EndTargetUnreachable)
	return s.closeWithFrame(out, 1011, "Failed to connect to downstream server", false)
}

// FromTarget frames what the target sent for the client: one whole frame
// per call, never split into fragments.
func (s *Session) FromTarget(p []byte, out Peer) {
	if s.phase != Relaying || len(p) == 0 {
		return
	}
	head, body := s.enc.Encode(p, out.Scratch(s.enc.MaxFrameLen(len(p))))
	if body == nil {
		out.ToClient(head)
	} else {
		out.ToClientFrame(head, body)
	}
}

// TargetClosed is called when the target's connection ended (err is nil or
// io.EOF for an orderly close).
func (s *Session) TargetClosed(err error, out Peer) Step {
	s.endAs(EndTargetClosed)
	if s.phase != Relaying {
		return s.close()
	}
	if err != nil && !errors.Is(err, io.EOF) {
		s.logf(out, "%s: Target connection error: %v", s.addr, err)
	}
	s.logf(out, "%s: Target closed connection", s.addr)
	return s.closeWithFrame(out, 1000, "Target closed", false)
}

// ClientGone is called when the client's connection ended or failed.
func (s *Session) ClientGone(out Peer) Step {
	s.proxyHeaderCut(out)
	if !s.keepIdle { // a client leaving after its web responses failed nothing
		s.endAs(EndClientGone)
	}
	if s.phase == Relaying {
		s.logf(out, "%s: Client disconnected", s.addr)
		s.closedTarget(out)
	}
	return s.close()
}

// closedTarget is the original's -v line as a relayed session lets its
// target go.
func (s *Session) closedTarget(out Peer) {
	if s.phase == Relaying {
		s.debugf(out, "%s: Closed target", s.target)
	}
}

// Shutdown ends the session because the proxy stops: an upgraded client is
// told 1001 "Going away".
func (s *Session) Shutdown(out Peer) Step {
	s.endAs(EndShutdown)
	switch s.phase {
	case Dialing, Relaying:
		return s.closeWithFrame(out, 1001, "Going away", false)
	case Routing:
		s.route = nil
	}
	return s.close()
}

// FirstByteExpired is called when the first-byte wait is over; a session
// that has spoken since is unaffected (Continue).
func (s *Session) FirstByteExpired(out Peer) Step {
	if s.phase == ReadingProxyHeader {
		return s.proxyHeaderTimedOut(out)
	}
	if s.phase != Sniffing {
		return Continue
	}
	s.debugf(out, "%s: no data within %v, closing", s.addr, s.cfg.FirstByte)
	s.endAs(EndFirstByteTimeout)
	return s.close()
}

// RequestHeadExpired is called when a request head has not come in time.
// pending says whether part of one has arrived: an idle keep-alive
// connection is closed quietly.
func (s *Session) RequestHeadExpired(pending bool, out Peer) Step {
	if s.phase != ReadingHead {
		return Continue
	}
	if s.keepIdle && !pending {
		s.debugf(out, "%s: idle keep-alive connection closed after %v", s.addr, s.cfg.RequestHead)
	} else {
		s.logf(out, "%s: request head not complete within %v, closing", s.addr, s.cfg.RequestHead)
		s.endAs(EndRequestHeadTimeout)
	}
	return s.close()
}

// Heartbeat sends a ping (HyBi only; Hixie has none).
func (s *Session) Heartbeat(out Peer) {
	if s.phase != Relaying || s.enc.Version != HyBi {
		return
	}
	s.debugf(out, "%s: Sending ping", s.addr)
	out.ToClient(pingFrame)
}

var pingFrame = []byte{0x89, 0x00}

func (s *Session) closeWithFrame(out Peer, code uint16, reason string, remote bool) Step {
	if remote {
		s.logf(out, "%s: Client closed connection (code %d)", s.addr, code)
	} else {
		s.logf(out, "%s: Closing connection: %d %s", s.addr, code, reason)
	}
	out.ToClient(s.enc.Close(code, reason))
	s.closedTarget(out)
	return s.close()
}

func (s *Session) close() Step {
	s.release()
	s.phase = Closed
	s.req = nil
	s.route = nil
	return Close
}
