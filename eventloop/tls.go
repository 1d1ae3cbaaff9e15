package eventloop

// TLS sessions: a convenience layer beside the event loop.
//
// gnet has no TLS, and a TLS record layer on the loop would need a
// non-blocking handshake state machine of our own. So a connection that
// sniffs as TLS is handed off: the loop copies the bytes it already read,
// dups the socket, and returns gnet.Close for its own conn. gnet's close
// only deletes its fd from epoll and calls close(2) on it (no shutdown(2)),
// so the dup keeps the socket open and the client sees nothing. The dup
// becomes a net.Conn, and the session runs in goroutines with crypto/tls
// and blocking I/O: the handshake has a deadline, so a client that stalls
// or sends garbage after 0x16 costs only its own goroutine, and a blocked
// write stops the reads that feed it, which is backpressure for free.
//
// With --ssl-target every client takes this path, plain ones without the
// server handshake: the loop cannot dial TLS either.
//
// Measured on 2 cores (BENCHMARKS.md, "wss sessions"): a held wss session
// costs about 70 KiB against 3 KiB for a ws session on the loop (crypto/tls's
// state and two goroutines), and one wss connection moves about half the bytes
// a ws one does, with the client's TLS on the same cores. That is cheap for
// the hundreds of wss sessions a deployment has and not worth a TLS engine
// of our own on the loop; plain sessions, the bulk, stay there.
//
// Bookkeeping is the loop's: the session takes over the fds reserved when
// the client was admitted (client, plus two), which also cover the hand-off's
// transient dups; once its target is dialed it holds two (client and
// target) and gives the third back, as a plain session does. It counts in
// Server.sessions and ends through Server.sessionEnded.

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gowebsockify/websockify/codec"
	"github.com/gowebsockify/websockify/sniff"
	"github.com/panjf2000/gnet/v2"
)

const (
	tlsHandshakeTimeout = 10 * time.Second
	tlsRelayChunk       = 32 << 10 // bytes read at a time from either side
)

// handOff moves a client off the loop: one whose first bytes are a TLS
// hello (isTLS), or, with --ssl-target, any client, since the target's TLS
// needs the goroutine path too. It runs on the loop; the returned action
// closes gnet's conn.
func (s *session) handOff(c gnet.Conn, isTLS bool) gnet.Action {
	srv := s.l.srv
	if isTLS && srv.cfg.TLS == nil {
		s.logf("%s: SSL connection but '%s' not found", s.addr, srv.cfg.CertFile)
		return gnet.Close
	}
	buf, _ := c.Peek(-1)
	pre := append([]byte(nil), buf...)
	fd, err := c.Dup()
	if err != nil {
		s.logf("%s: cannot hand off TLS connection: %v", s.addr, err)
		return gnet.Close
	}
	f := os.NewFile(uintptr(fd), "tls-client")
	conn, err := net.FileConn(f) // dups again; the transient fds fit the admission reserve
	_ = f.Close()
	if err != nil {
		s.logf("%s: cannot hand off TLS connection: %v", s.addr, err)
		return gnet.Close
	}
	s.handedOff = true
	s.state = finishing
	go srv.serveHandedOff(&prefixedConn{Conn: conn, pre: pre}, s.addr, isTLS)
	return gnet.Close
}

// prefixedConn reads pre before reading the connection: the bytes the loop
// had already taken off the socket.
type prefixedConn struct {
	net.Conn
	pre []byte
}

func (c *prefixedConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// tlsSession is one client handed off by the loop, and its target.
type tlsSession struct {
	srv    *Server
	addr   string
	isTLS  bool     // the client speaks TLS
	client net.Conn // a *tls.Conn when isTLS
	target net.Conn // a *tls.Conn with --ssl-target

	// clientCN is the subject CN of a verified client certificate
	// (--verify-client), kept for auth plugins.
	clientCN string

	reserved int64 // fds of the budget this session holds

	dec       codec.Decoder
	enc       codec.Encoder
	targetErr error // a failed write to the target, seen by the client reader

	wmu    sync.Mutex    // client writes come from both relay directions and the heartbeat
	ending atomic.Bool   // set once either side has ended the session
	done   chan struct{} // closed when the session ends, stops the heartbeat
}

// serveWeb answers a web request (--web) over the handed-off connection; it
// reports whether the connection may carry another request. Blocking here
// is fine: this goroutine is the session's own.
func (t *tlsSession) serveWeb(req *codec.Request) bool {
	resp := t.srv.web.Serve(req, time.Now())
	if resp.File != nil {
		defer resp.File.Close()
	}
	t.logf(`"%s %s %s" %d -`, req.Method, req.Target, req.Proto, resp.Status)
	if _, err := t.client.Write(resp.Head); err != nil {
		return false
	}
	if resp.Body != nil {
		if _, err := t.client.Write(resp.Body); err != nil {
			return false
		}
	}
	if resp.File != nil {
		if _, err := io.CopyN(t.client, resp.File, resp.FileSize); err != nil {
			return false
		}
	}
	return resp.KeepAlive
}

func (t *tlsSession) logf(format string, args ...any) { t.srv.cfg.Log.Connf(t.addr, format, args...) }

func (t *tlsSession) debugf(format string, args ...any) {
	t.srv.cfg.Log.ConnDebugf(t.addr, format, args...)
}

// serveHandedOff runs a handed-off session to its end and releases what the
// loop reserved for it.
func (srv *Server) serveHandedOff(raw net.Conn, addr string, isTLS bool) {
	t := &tlsSession{srv: srv, addr: addr, isTLS: isTLS, client: raw, reserved: 1 + fdsPerDial, done: make(chan struct{})}
	upgraded := t.run()
	_ = t.client.Close()
	if t.target != nil {
		_ = t.target.Close()
	}
	srv.budget.add(-t.reserved)
	srv.sessionEnded(upgraded)
}

// run does what the loop does for a plain client: sniff, read the request,
// upgrade, dial, relay. It reports whether a 101 went out.
func (t *tlsSession) run() bool {
	if t.isTLS {
		tc := tls.Server(t.client, t.srv.cfg.TLS)
		t.client = tc
		_ = tc.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
		if err := tc.Handshake(); err != nil {
			t.logf("%s: TLS handshake failed: %v", t.addr, err)
			return false
		}
		if st := tc.ConnectionState(); len(st.PeerCertificates) > 0 {
			t.clientCN = st.PeerCertificates[0].Subject.CommonName
			t.debugf("%s: client certificate CN '%s'", t.addr, t.clientCN)
		}
	}
	c := t.client

	// The decrypted stream is sniffed again: Flash policy or HTTP.
	_ = c.SetDeadline(time.Now().Add(firstByteTimeout))
	buf := make([]byte, 0, 4096)
	var req *codec.Request
	headStarted := false
nextRequest:
	for {
		if len(buf) > 0 {
			kind := sniff.Classify(buf)
			if kind == sniff.FlashPolicy {
				t.logf("%s: Sending flash policy response", t.addr)
				_, _ = c.Write([]byte(sniff.PolicyResponse))
				return false
			}
			if kind == sniff.HTTP || kind == sniff.TLS {
				if !headStarted {
					headStarted = true
					_ = c.SetDeadline(time.Now().Add(requestHeadTimeout))
				}
				r, n, err := codec.ParseRequest(buf, codec.MaxHeaderBytes)
				if err != nil {
					t.refuse(err)
					return false
				}
				if n > 0 {
					req, buf = r, buf[n:]
					break
				}
			}
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil && n == 0 {
			// Logged as the loop logs its own two timeouts.
			var ne net.Error
			if headStarted && errors.As(err, &ne) && ne.Timeout() {
				t.logf("%s: request head not complete within %v, closing", t.addr, requestHeadTimeout)
			} else {
				t.debugf("%s: no complete request: %v", t.addr, err)
			}
			return false
		}
	}
	_ = c.SetDeadline(time.Time{})

	if !req.IsWebSocket() {
		if t.srv.web == nil {
			t.logf(`"%s %s %s" 405 -`, req.Method, req.Target, req.Proto)
			t.refuse(&codec.HTTPError{Status: 405, Reason: "Method Not Allowed"})
			return false
		}
		if !t.serveWeb(req) {
			return false
		}
		// Keep-alive: the next request (perhaps an upgrade) gets the same
		// 30 s to arrive as the loop gives it.
		req, headStarted = nil, true
		_ = c.SetDeadline(time.Now().Add(requestHeadTimeout))
		goto nextRequest
	}
	hs, err := codec.Upgrade(req, t.isTLS)
	if err != nil {
		t.logf(`"%s %s %s" %d -`, req.Method, req.Target, req.Proto, statusOf(err))
		t.refuse(err)
		return false
	}
	if _, err := c.Write(hs.Response); err != nil {
		return false
	}
	t.srv.cfg.Log.upgraded(t.addr, req, hs, t.isTLS)
	t.dec = codec.NewDecoder(hs.Version, hs.Mode)
	t.enc = codec.Encoder{Version: hs.Version, Mode: hs.Mode}
	t.srv.upgraded.Store(true)

	if err := t.dial(); err != nil {
		t.logf("%s: Failed to connect to %s: %v", t.addr, t.srv.cfg.TargetAddr, err)
		t.closeWithFrame(1011, "Failed to connect to downstream server", false)
		return true
	}
	t.relay(buf)
	return true
}

// refuse answers an HTTP error.
func (t *tlsSession) refuse(err error) {
	var he *codec.HTTPError
	if !errors.As(err, &he) {
		he = &codec.HTTPError{Status: 400, Reason: err.Error()}
	}
	t.logf("%s: code %d, message %s", t.addr, he.Status, he.Reason)
	_ = t.client.SetWriteDeadline(time.Now().Add(drainTimeout))
	_, _ = t.client.Write(he.Response())
}

// dial connects to the target, over TLS with --ssl-target (certificate and
// host name verified against the system roots, SNI sent).
func (t *tlsSession) dial() error {
	cfg := t.srv.cfg
	t.logf("connecting to: %s", cfg.TargetAddr)
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	conn, err := t.srv.dialTarget(ctx)
	if err != nil {
		return err
	}
	if cfg.TargetTLS != nil {
		tc := tls.Client(conn, targetTLSConfig(cfg))
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return err
		}
		conn = tc
	}
	t.target = conn
	t.srv.budget.add(-1) // client and target are all it holds now
	t.reserved--
	return nil
}

// targetTLSConfig is cfg.TargetTLS with the server name set to the target's
// host when the caller left it empty.
func targetTLSConfig(cfg Config) *tls.Config {
	tc := cfg.TargetTLS
	if tc.ServerName != "" || cfg.TargetNetwork != "tcp" {
		return tc
	}
	host, _, err := net.SplitHostPort(cfg.TargetAddr)
	if err != nil {
		return tc
	}
	tc = tc.Clone()
	tc.ServerName = host
	return tc
}

// relay moves bytes both ways until either side ends. pending is what the
// client sent after its request head.
func (t *tlsSession) relay(pending []byte) {
	if hb := t.srv.cfg.Heartbeat; hb > 0 && t.enc.Version == codec.HyBi {
		go t.heartbeat(hb)
	}
	fromTarget := make(chan struct{})
	go func() {
		defer close(fromTarget)
		t.targetToClient()
	}()
	t.clientToTarget(pending)
	<-fromTarget
	close(t.done)
}

func (t *tlsSession) clientToTarget(pending []byte) {
	buf := make([]byte, len(pending)+tlsRelayChunk)
	have := copy(buf, pending)
	for {
		if have > 0 {
			t.traffic(trafficFromClient)
			used, err := t.dec.Feed(buf[:have], t)
			if t.targetErr != nil {
				t.targetEnded(t.targetErr)
				return
			}
			if err != nil {
				var ce *codec.CloseError
				if errors.As(err, &ce) {
					t.closeWithFrame(ce.Code, ce.Reason, ce.Remote)
				} else {
					t.end()
				}
				return
			}
			have = copy(buf, buf[used:have]) // at most a partial control frame stays
		}
		n, err := t.client.Read(buf[have:])
		have += n
		if err != nil && n == 0 {
			if !t.ending.Load() {
				t.logf("%s: Client disconnected", t.addr)
			}
			t.end()
			return
		}
	}
}

func (t *tlsSession) targetToClient() {
	buf := make([]byte, tlsRelayChunk)
	frame := make([]byte, t.enc.MaxFrameLen(tlsRelayChunk)+tlsRelayChunk)
	for {
		n, err := t.target.Read(buf)
		if n > 0 {
			t.traffic(trafficFromTarget)
			head, body := t.enc.Encode(buf[:n], frame)
			out := append(head, body...) // one TLS record rather than two
			if t.writeClient(out) != nil {
				t.end()
				return
			}
			t.traffic(trafficToClient)
		}
		if err != nil {
			t.targetEnded(err)
			return
		}
	}
}

// targetEnded closes the session after the target went away.
func (t *tlsSession) targetEnded(err error) {
	if t.ending.Load() {
		t.end()
		return
	}
	if !errors.Is(err, io.EOF) {
		t.logf("%s: Target connection error: %v", t.addr, err)
	}
	t.logf("%s: Target closed connection", t.addr)
	t.closeWithFrame(1000, "Target closed", false)
}

// closeWithFrame sends (or echoes) a close frame and ends the session.
func (t *tlsSession) closeWithFrame(code uint16, reason string, remote bool) {
	if t.ending.Swap(true) {
		t.end()
		return
	}
	if remote {
		t.logf("%s: Client closed connection (code %d)", t.addr, code)
	} else {
		t.logf("%s: Closing connection: %d %s", t.addr, code, reason)
	}
	_ = t.client.SetWriteDeadline(time.Now().Add(drainTimeout))
	_ = t.writeClient(t.enc.Close(code, reason))
	t.end()
}

// end closes both sides, which unblocks both relay goroutines.
func (t *tlsSession) end() {
	t.ending.Store(true)
	_ = t.client.SetWriteDeadline(time.Now().Add(drainTimeout))
	_ = t.client.Close()
	if t.target != nil {
		_ = t.target.Close()
	}
}

func (t *tlsSession) writeClient(p []byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	_, err := t.client.Write(p)
	return err
}

func (t *tlsSession) heartbeat(every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-t.done:
			return
		case <-tick.C:
			if t.ending.Load() {
				return
			}
			t.debugf("%s: Sending ping", t.addr)
			_ = t.writeClient(t.enc.Ping(nil))
		}
	}
}

// ToTarget implements codec.Output: blocking writes, so a slow target stops
// the client's reads.
func (t *tlsSession) ToTarget(p []byte) {
	if t.targetErr != nil {
		return
	}
	if _, err := t.target.Write(p); err != nil {
		t.targetErr = err
		return
	}
	t.traffic(trafficToTarget)
}

// ToClient implements codec.Output (pongs).
func (t *tlsSession) ToClient(p []byte) { _ = t.writeClient(p) }

func (t *tlsSession) traffic(sym []byte) {
	if tw := t.srv.cfg.Traffic; tw != nil {
		_, _ = tw.Write(sym)
	}
}
