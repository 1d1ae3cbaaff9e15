package eventloop

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	"github.com/gowebsockify/websockify/codec"
	"github.com/gowebsockify/websockify/sniff"
	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/pool/goroutine"
)

// state is where a session is in its life.
type state uint8

const (
	sniffing  state = iota // waiting for the first bytes
	reading                // reading the HTTP request head
	serving                // a web response is being prepared or streamed (web.go)
	dialing                // 101 sent, target being dialed; what the client sends meanwhile is held
	proxying               // both sides up
	finishing              // flushing before close; reads ignored
)

// session is one client and (once dialed) its target. It is owned by the
// loop goroutine of l; every method runs there.
type session struct {
	l      *loop
	client gnet.Conn
	target gnet.Conn // nil until the dial completes
	addr   string    // client address, for log lines

	state       state
	upgraded    bool // a 101 went out (--run-once counts these)
	dialStarted bool // the fds reserved for the dial at admission are in use
	handedOff   bool // a TLS client moved to its own goroutines (tls.go), which own the reservation
	waiting     bool // on l.waiting

	// Reading of each side can be paused (pause.go); a side marked for close
	// is closed as soon as its output is flushed or its deadline passes.
	clientPaused, targetPaused   bool
	clientClosing, targetClosing bool
	clientGone, targetGone       bool
	closeBy                      int64 // unix nanos; flush deadline of a side marked for close

	dec codec.Decoder
	enc codec.Encoder

	headBy int64 // unix nanos; when the request head being read is due

	// A web response being streamed (web.go).
	file         *os.File
	fileLeft     int64
	chunkPending bool // a chunk is being read off the loop; it owns file meanwhile
	keepAlive    bool // read another request once the response is out
}

func newSession(l *loop, c gnet.Conn) *session {
	s := &session{l: l, client: c, addr: hostOf(c.RemoteAddr())}
	l.firstByte.add(time.Now().UnixNano(), s)
	return s
}

// logf logs a line about this client, in the original's format.
func (s *session) logf(format string, args ...any) { s.l.srv.cfg.Log.Connf(s.addr, format, args...) }

func (s *session) debugf(format string, args ...any) {
	s.l.srv.cfg.Log.ConnDebugf(s.addr, format, args...)
}

// ---- client side ----

func (s *session) clientReadable() gnet.Action {
	c := s.client
	switch s.state {
	case sniffing:
		buf, _ := c.Peek(-1)
		switch sniff.Classify(buf) {
		case sniff.NeedMore:
			return gnet.None
		case sniff.TLS:
			return s.handOff(c, true)
		case sniff.FlashPolicy:
			s.logf("%s: Sending flash policy response", s.addr)
			_, _ = c.Discard(-1)
			s.writeClient([]byte(sniff.PolicyResponse))
			s.finish()
			return gnet.None
		}
		if s.l.srv.cfg.SSLOnly {
			s.logf("%s: non-SSL connection received but disallowed", s.addr)
			return gnet.Close
		}
		if s.l.srv.cfg.TargetTLS != nil {
			return s.handOff(c, false)
		}
		s.startReading()
		return s.readRequest()
	case reading:
		return s.readRequest()
	case serving:
		return s.holdInput("while a response was prepared") // a pipelined request
	case dialing:
		// Kept for the target; forwarded in targetOpened.
		return s.holdInput("before the target connected")
	case proxying:
		s.forwardClient()
		return gnet.None
	}
	_, _ = c.Discard(-1) // finishing: whatever comes now is dropped
	return gnet.None
}

// holdInput keeps what the client sends while the session cannot act on it
// yet. A little is usual (a VNC client's first message, a pipelined request)
// and is held without pausing, which would cost two epoll_ctl calls; past one
// read chunk reading stops, and past maxPending the client is dropped.
func (s *session) holdInput(when string) gnet.Action {
	switch n := s.client.InboundBuffered(); {
	case n > maxPending:
		s.logf("%s: too much data %s", s.addr, when)
		return gnet.Close
	case n >= readChunk:
		s.pauseClient()
	}
	return gnet.None
}

func (s *session) readRequest() gnet.Action {
	c := s.client
	buf, _ := c.Peek(-1)
	req, n, err := codec.ParseRequest(buf, codec.MaxHeaderBytes)
	if err != nil {
		s.refuse(err)
		return gnet.None
	}
	if n == 0 {
		return gnet.None
	}
	_, _ = c.Discard(n)
	if !req.IsWebSocket() && s.l.srv.web != nil {
		s.serve(req)
		return gnet.None
	}
	if !req.IsWebSocket() {
		s.logf(`"%s %s %s" 405 -`, req.Method, req.Target, req.Proto)
		s.refuse(&codec.HTTPError{Status: 405, Reason: "Method Not Allowed"})
		return gnet.None
	}
	hs, err := codec.Upgrade(req, false)
	if err != nil {
		s.logf(`"%s %s %s" %d -`, req.Method, req.Target, req.Proto, statusOf(err))
		s.refuse(err)
		return gnet.None
	}
	s.writeClient(hs.Response)
	s.l.srv.cfg.Log.upgraded(s.addr, req, hs, false)
	s.dec = codec.NewDecoder(hs.Version, hs.Mode)
	s.enc = codec.Encoder{Version: hs.Version, Mode: hs.Mode}
	s.upgraded = true
	s.l.srv.upgraded.Store(true)
	s.state = dialing // client reads are paused only if it speaks before the target is up
	s.startDial()
	return gnet.None
}

// refuse answers an HTTP error and closes once it is flushed.
func (s *session) refuse(err error) {
	var he *codec.HTTPError
	if !errors.As(err, &he) {
		he = &codec.HTTPError{Status: 400, Reason: err.Error()}
	}
	s.logf("%s: code %d, message %s", s.addr, he.Status, he.Reason)
	_, _ = s.client.Discard(-1)
	s.writeClient(he.Response())
	s.finish()
}

func statusOf(err error) int {
	var he *codec.HTTPError
	if errors.As(err, &he) {
		return he.Status
	}
	return 400
}

// forwardClient decodes the client's frames and writes their payload to the
// target.
func (s *session) forwardClient() {
	c := s.client
	buf, _ := c.Peek(-1)
	if len(buf) == 0 {
		return
	}
	wasPaused := s.clientPaused
	n, err := s.dec.Feed(buf, s)
	s.flushTarget()
	if n > 0 {
		_, _ = c.Discard(n) // gnet discards everything for n <= 0
		s.traffic(trafficFromClient)
	}
	if err != nil {
		var ce *codec.CloseError
		if errors.As(err, &ce) {
			s.closeWithFrame(ce.Code, ce.Reason, ce.Remote)
		} else {
			s.finish()
		}
		return
	}
	s.applyBackpressure()
	if wasPaused && s.clientPaused && !s.clientGone {
		s.setReading(c, false) // a spurious wake: gnet re-enabled reading (pause.go)
	}
}

// ToTarget implements codec.Output. A read often holds several frames, so
// their payloads are gathered and written to the target with one writev by
// flushTarget, which must run before the client's input is discarded: the
// slices point into it. The few bytes the decoder hands out from its own
// storage are copied, since they are valid only during the call.
func (s *session) ToTarget(p []byte) {
	l := s.l
	if len(l.targetIov) == cap(l.targetIov) || len(l.smallBytes)+len(p) > cap(l.smallBytes) {
		s.flushTarget()
	}
	if len(p) <= codec.MaxUnaliasedPayload {
		start := len(l.smallBytes)
		l.smallBytes = append(l.smallBytes, p...)
		p = l.smallBytes[start:]
	}
	l.targetIov = append(l.targetIov, p)
}

// ToClient implements codec.Output.
func (s *session) ToClient(p []byte) { s.writeClient(p) }

// closeWithFrame ends a proxied session from the client side: echo or send
// the close frame, close the target, close the client once flushed.
func (s *session) closeWithFrame(code uint16, reason string, remote bool) {
	if remote {
		s.logf("%s: Client closed connection (code %d)", s.addr, code)
	} else {
		s.logf("%s: Closing connection: %d %s", s.addr, code, reason)
	}
	_, _ = s.client.Discard(-1)
	s.writeClient(s.enc.Close(code, reason))
	s.finish()
}

// ---- target side ----

func (s *session) startDial() {
	s.logf("connecting to: %s", s.l.srv.cfg.TargetAddr)
	s.dialStarted = true
	budget := s.l.srv.budget
	// Dials run on gnet's worker pool (the one Enroll uses too), whose
	// goroutines and grown stacks are reused: a fresh goroutine per dial
	// cost about 5% of the set-up rate in stack growth alone.
	err := goroutine.DefaultWorkerPool.Submit(func() {
		ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
		defer cancel()
		conn, err := s.l.srv.dialTarget(ctx)
		if err == nil {
			var ch <-chan gnet.RegisteredResult
			ch, err = s.l.el.Enroll(gnet.NewContext(ctx, s), conn)
			if err != nil {
				_ = conn.Close()
			} else {
				// gnet closes the dialed socket (it keeps a dup) before it
				// closes the channel, so drain the channel, not one value.
				for res := range ch {
					err = res.Err
				}
			}
		}
		if err == nil {
			budget.add(-1) // the dialed socket; the dup is the target's fd
			return
		}
		budget.add(-fdsPerDial)
		_ = s.l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			s.dialFailed(err)
			return nil
		}))
	})
	if err != nil {
		budget.add(-fdsPerDial)
		s.dialFailed(err)
	}
}

func (s *session) dialFailed(err error) {
	if s.clientGone || s.state != dialing {
		return
	}
	s.logf("%s: Failed to connect to %s: %v", s.addr, s.l.srv.cfg.TargetAddr, err)
	s.closeWithFrame(1011, "Failed to connect to downstream server", false)
}

// targetOpened runs when the dialed target joins the client's loop.
func (s *session) targetOpened(c gnet.Conn) gnet.Action {
	s.target = c
	if s.clientGone || s.state != dialing {
		return gnet.Close // OnClose releases the fd
	}
	s.state = proxying
	if s.l.srv.cfg.Heartbeat > 0 && s.enc.Version == codec.HyBi {
		s.l.heartbeat.add(time.Now().UnixNano(), s)
	}
	if s.clientPaused {
		s.resumeClient()
	}
	if s.client.InboundBuffered() > 0 {
		s.forwardClient()
	}
	return gnet.None
}

// targetReadable frames what the target sent and writes it to the client.
func (s *session) targetReadable() gnet.Action {
	c := s.target
	if s.state != proxying || s.clientClosing {
		_, _ = c.Discard(-1)
		return gnet.None
	}
	wasPaused := s.targetPaused
	buf, _ := c.Next(-1)
	s.traffic(trafficFromTarget)
	head, body := s.enc.Encode(buf, s.l.scratchFor(s.enc.MaxFrameLen(len(buf))))
	if body == nil {
		s.writeClient(head)
	} else {
		s.writevClient(head, body)
	}
	s.traffic(trafficToClient)
	s.applyBackpressure()
	if wasPaused && s.targetPaused && !s.targetGone {
		s.setReading(c, false) // a spurious wake: gnet re-enabled reading (pause.go)
	}
	return gnet.None
}

func (s *session) targetClosed(err error) {
	s.targetGone = true
	s.l.srv.budget.add(-1)
	if s.clientGone || s.state != proxying {
		return
	}
	if err != nil && !errors.Is(err, io.EOF) {
		s.logf("%s: Target connection error: %v", s.addr, err)
	}
	if s.l.srv.stopping.Load() {
		// The engine is closing every connection; say why while the client's
		// connection can still carry it.
		s.closeWithFrame(1001, "Server shutting down", false)
		return
	}
	s.logf("%s: Target closed connection", s.addr)
	s.closeWithFrame(1000, "Target closed", false)
}

func (s *session) clientClosed(err error) {
	s.clientGone = true
	if s.handedOff {
		return // the TLS session releases the fds and the count when it ends
	}
	if s.dialStarted {
		s.l.srv.budget.add(-1)
	} else {
		s.l.srv.budget.add(-1 - fdsPerDial) // the dial reserved at admission never ran
	}
	if s.state == proxying && !s.clientClosing {
		s.logf("%s: Client disconnected", s.addr)
	}
	s.state = finishing
	s.closeFile()
	if s.target != nil && !s.targetGone {
		s.closeTargetWhenFlushed()
	}
	s.l.srv.sessionEnded(s.upgraded)
}

// ---- closing ----

// finish ends the session: each side is closed once its output is flushed.
func (s *session) finish() {
	s.state = finishing
	s.closeClientWhenFlushed()
	s.closeTargetWhenFlushed()
}

// closeClientWhenFlushed closes the client at once if nothing waits to be
// written to it (gnet's close makes a single attempt to flush and drops the
// rest); otherwise it stops reading it and leaves the close to poll.
func (s *session) closeClientWhenFlushed() {
	if s.clientGone || s.clientClosing {
		return
	}
	s.clientClosing = true
	if s.client.OutboundBuffered() == 0 {
		_ = s.client.Close()
		return
	}
	s.pauseClient()
	s.waitForFlush()
}

func (s *session) closeTargetWhenFlushed() {
	if s.target == nil || s.targetGone || s.targetClosing {
		return
	}
	s.targetClosing = true
	if s.target.OutboundBuffered() == 0 {
		_ = s.target.Close()
		return
	}
	s.pauseTarget()
	s.waitForFlush()
}

func (s *session) waitForFlush() {
	if s.closeBy == 0 {
		s.closeBy = time.Now().Add(drainTimeout).UnixNano()
	}
	s.l.wait(s)
}

// poll runs on the fast tick for a waiting session: close what is flushed,
// resume what has drained. It reports whether the session still waits.
func (s *session) poll(now int64) bool {
	more := false
	if s.clientClosing && !s.clientGone {
		if s.client.OutboundBuffered() == 0 || now >= s.closeBy {
			_ = s.client.Close()
		} else {
			more = true
		}
	}
	if s.targetClosing && !s.targetGone && s.target != nil {
		if s.target.OutboundBuffered() == 0 || now >= s.closeBy {
			_ = s.target.Close()
		} else {
			more = true
		}
	}
	if s.state == proxying {
		s.applyBackpressure()
		more = more || s.clientPaused || s.targetPaused
	}
	if s.state == serving && s.file != nil && !s.chunkPending && !s.clientGone {
		if s.client.OutboundBuffered() >= fileLowWater {
			more = true
		} else {
			s.pumpFile()
		}
	}
	return more
}

// ---- timers ----

func (s *session) firstByteExpired() {
	if s.state == sniffing && !s.clientGone {
		s.debugf("%s: no data within %v, closing", s.addr, firstByteTimeout)
		_ = s.client.Close()
	}
}

func (s *session) requestHeadExpired() {
	if s.state == reading && !s.clientGone && time.Now().UnixNano() >= s.headBy {
		if s.keepAlive && s.client.InboundBuffered() == 0 {
			s.debugf("%s: idle keep-alive connection closed after %v", s.addr, requestHeadTimeout)
			_ = s.client.Close()
			return
		}
		s.logf("%s: request head not complete within %v, closing", s.addr, requestHeadTimeout)
		_ = s.client.Close()
	}
}

func (s *session) heartbeatDue() {
	if s.state != proxying || s.clientClosing || s.clientGone {
		return
	}
	s.debugf("%s: Sending ping", s.addr)
	s.writeClient(s.enc.Ping(nil))
	s.l.heartbeat.add(time.Now().UnixNano(), s)
}

// ---- writes and backpressure ----

// writeClient writes to the client and keeps a paused client paused: gnet
// turns reading back on when a write has to buffer (pause.go).
func (s *session) writeClient(p []byte) {
	if s.clientGone {
		return
	}
	before := s.client.OutboundBuffered()
	_, _ = s.client.Write(p)
	if (s.clientPaused || s.clientClosing) && before == 0 && s.client.OutboundBuffered() > 0 {
		s.setReading(s.client, false)
	}
}

func (s *session) writevClient(head, body []byte) {
	if s.clientGone {
		return
	}
	before := s.client.OutboundBuffered()
	iov := &s.l.iov
	iov[0], iov[1] = head, body
	_, _ = s.client.Writev(iov[:])
	iov[0], iov[1] = nil, nil
	if (s.clientPaused || s.clientClosing) && before == 0 && s.client.OutboundBuffered() > 0 {
		s.setReading(s.client, false)
	}
}

func (s *session) flushTarget() {
	iov := s.l.targetIov
	if len(iov) == 0 {
		return
	}
	if s.target != nil && !s.targetGone {
		before := s.target.OutboundBuffered()
		if len(iov) == 1 {
			_, _ = s.target.Write(iov[0])
		} else {
			_, _ = s.target.Writev(iov)
		}
		s.traffic(trafficToTarget)
		if (s.targetPaused || s.targetClosing) && before == 0 && s.target.OutboundBuffered() > 0 {
			s.setReading(s.target, false)
		}
	}
	clear(iov)
	s.l.targetIov = iov[:0]
	s.l.smallBytes = s.l.smallBytes[:0]
}

// applyBackpressure pauses reading a side whose peer is backed up, and
// resumes it once the peer has drained below resumeBelow.
func (s *session) applyBackpressure() {
	if s.state != proxying || s.target == nil || s.targetGone || s.clientGone {
		return
	}
	toClient, toTarget := s.client.OutboundBuffered(), s.target.OutboundBuffered()
	if toClient > hardOutboundCap || toTarget > hardOutboundCap {
		s.logf("%s: peer backlog over %d bytes, closing", s.addr, hardOutboundCap)
		s.closeWithFrame(1011, "Backlog too large", false)
		return
	}
	if toClient > pauseAbove && !s.targetPaused {
		s.pauseTarget()
	} else if toClient <= resumeBelow && s.targetPaused {
		s.targetPaused = false
		s.setReading(s.target, true)
	}
	if toTarget > pauseAbove && !s.clientPaused {
		s.pauseClient()
	} else if toTarget <= resumeBelow && s.clientPaused {
		s.resumeClient()
	}
}

func (s *session) pauseClient() {
	if s.clientGone {
		return
	}
	s.clientPaused = true
	s.setReading(s.client, false)
	if s.state == proxying {
		s.l.wait(s)
	}
}

func (s *session) resumeClient() {
	if s.clientGone || s.clientClosing {
		return
	}
	s.clientPaused = false
	s.setReading(s.client, true)
}

func (s *session) pauseTarget() {
	if s.target == nil || s.targetGone {
		return
	}
	s.targetPaused = true
	s.setReading(s.target, false)
	s.l.wait(s)
}

func (s *session) setReading(c gnet.Conn, on bool) {
	if err := setReading(s.l.epfd, c, on); err != nil {
		s.debugf("%s: epoll_ctl: %v", s.addr, err)
	}
}

// ---- traffic symbols (--traffic) ----

var (
	trafficFromClient = []byte("}")
	trafficToTarget   = []byte(">")
	trafficFromTarget = []byte("{")
	trafficToClient   = []byte("<")
)

func (s *session) traffic(sym []byte) {
	if tw := s.l.srv.cfg.Traffic; tw != nil {
		_, _ = tw.Write(sym)
	}
}
