package eventloop

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"time"

	"github.com/gowebsockify/websockify/codec"
	"github.com/gowebsockify/websockify/record"
	"github.com/gowebsockify/websockify/token"
	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/pool/goroutine"
)

// session is one client and (once dialed) its target, on one loop. What the
// connection means (sniffing, the request, the upgrade, frames, close codes,
// log lines) is decided by its codec.Session, the same for every transport;
// this type moves the bytes: it feeds the machine what the sockets deliver,
// writes what the machine answers, and carries out its steps (a TLS
// handshake, a web response, a dial, a close). Every method runs on the
// loop's goroutine, so nothing here needs a lock.
//
// After anything happens to a session, sync brings its sockets in line with
// its state: which side is read, which timer runs, whether it is over.
type session struct {
	l      *loop
	m      codec.Session
	client side
	target side
	x      *sessionState // what few sessions need; nil for most

	prev, next *session    // in l.sessions
	deadline   int64       // unix nanos: when the timer of the machine's phase is due
	phase      codec.Phase // the machine's phase when that timer was set

	// fds is what this session holds of the descriptor budget: its client,
	// plus until the dial is over the reserve for it (fdbudget.go).
	fds int32

	dialing  bool // a dial is in flight; it reports back with dialDone
	targetUp bool // the dialed target joined the loop
	ended    bool // the machine said Close: both sides are closing
	finished bool // both sides are gone and the budget settled
	counted  bool // its upgrade was counted (loop.stats)
}

// sessionState is what only some sessions need, for a while or for good: a
// TLS handshake running, a client certificate, a web response being sent.
type sessionState struct {
	handshake net.Conn // the TLS handshake's connection while it runs
	clientCN  string   // subject CN of a verified client certificate

	// A web response being sent (web.go).
	file         *os.File
	fileLeft     int64
	chunkPending bool // a chunk is being read off the loop; it owns file meanwhile
	webPending   bool // the response is being built off the loop
	keepAlive    bool

	// --record: the session's number, and once upgraded its recording
	// and when the upgrade was (unix nanos).
	recordN     uint64
	rec         *record.Session
	recordStart int64
}

// idle reports whether the state holds nothing any more.
func (x *sessionState) idle() bool {
	return x.handshake == nil && x.file == nil && !x.webPending && !x.chunkPending && x.clientCN == "" &&
		x.recordN == 0 && x.rec == nil
}

func (s *session) state() *sessionState {
	if s.x == nil {
		s.x = &sessionState{}
	}
	return s.x
}

// addr is the client's address, as logged.
func (s *session) addr() string { return s.m.Addr() }

func newSession(l *loop, c gnet.Conn, fds int64) *session {
	s := &session{l: l, fds: int32(fds)}
	s.m = codec.NewSession(&l.srv.sessionCfg, hostOf(c.RemoteAddr()))
	s.phase = s.m.Phase() // its first-byte timer runs from here, PROXY header or not
	s.client = side{sess: s, isClient: true}
	s.target = side{sess: s}
	s.client.attach(c)
	s.deadline = l.firstByte.add(time.Now().UnixNano(), s)
	l.sessions.add(s)
	l.stats.Accepted()
	return s
}

func (s *session) debugf(format string, args ...any) {
	s.l.srv.cfg.Log.ConnDebugf(s.addr(), format, args...)
}

func (s *session) relaying() bool { return s.m.Phase() == codec.Relaying }

// ---- what the sockets deliver ----

// readable handles what gnet read from one side. When several sessions of
// the loop are taking whole reads (bulk transfers), each that takes one
// yields that side for yieldFor, so that they take turns, and the
// interactive sessions between them, rather than each taking a whole read
// every round of the loop.
func (s *session) readable(sd *side) {
	buf, _ := sd.c.Next(-1)
	s.consume(sd, buf)
	if len(buf) == readChunk && sd.stage == open {
		if now := time.Now().UnixNano(); !s.l.alone(s, now) {
			sd.yielding = true
			s.l.yielded.add(now, sd)
		}
	}
	s.sync()
}

// consume hands bytes read from a side to where they go.
func (s *session) consume(sd *side, buf []byte) {
	switch {
	case sd.stage != open || sd.closeAsked || sd.gone:
		// Closing: what the peer still sends is dropped.
	case sd.isClient && s.m.Phase() == codec.Handshaking:
		// Reading is off while the handshake's goroutine reads the socket;
		// an event already queued for it is all that can land here.
		s.debugf("%s: %d bytes during the TLS handshake dropped", s.addr(), len(buf))
	case sd.tlsConn() != nil:
		s.readTLS(sd, buf)
	case sd.isClient:
		s.fromClient(buf)
	default:
		s.fromTarget(buf)
	}
}

// fromClient gives the machine what the client sent (plaintext), after
// whatever it could not use before.
func (s *session) fromClient(p []byte) {
	sd := &s.client
	fromHeld := false
	if sd.heldLen() > 0 {
		sd.x.held = append(sd.x.held, p...)
		p, fromHeld = sd.x.held, true
	}
	relaying := s.relaying()
	for len(p) > 0 {
		n, step := s.m.FromClient(p, s)
		s.flushTarget()
		if step == codec.StartTLS {
			s.startTLS(p) // every byte so far belongs to the handshake
			p = nil
			break
		}
		p = p[n:]
		s.act(step)
		if n == 0 || step != codec.Continue {
			break
		}
	}
	if relaying {
		// "}." when part of a frame is left waiting for more.
		s.traffic(trafficFromClient, len(p) > 0)
	}
	s.keep(p, fromHeld)
}

// keep holds the client bytes the machine did not consume until it can.
func (s *session) keep(p []byte, fromHeld bool) {
	sd := &s.client
	switch {
	case len(p) == 0 || sd.stage != open:
		if sd.x != nil {
			sd.x.held = nil // an idle session keeps no buffer
		}
	case fromHeld:
		sd.x.held = sd.x.held[:copy(sd.x.held, p)]
	default:
		x := sd.state()
		x.held = append(x.held[:0], p...)
	}
}

// fromTarget gives the machine what the target sent.
func (s *session) fromTarget(p []byte) {
	if len(p) == 0 || !s.relaying() {
		return
	}
	s.traffic(trafficFromTarget, false)
	s.l.stats.FromTarget(len(p))
	if s.x != nil && s.x.rec != nil {
		s.x.rec.ToClient(s.recordMillis(), p)
	}
	s.m.FromTarget(p, s)
}

// deliver routes plaintext a TLS side decrypted.
func (s *session) deliver(sd *side, p []byte) {
	if sd.isClient {
		s.fromClient(p)
	} else {
		s.fromTarget(p)
	}
}

// act carries out a step of the machine (StartTLS is handled where the
// bytes are: fromClient).
func (s *session) act(step codec.Step) {
	switch step {
	case codec.ServeWeb:
		s.serveWeb()
	case codec.Dial, codec.Route:
		s.startDial() // with Route, the dialing goroutine looks the token up first
	case codec.Close:
		s.end()
	}
}

// ---- codec.Peer: what the machine sends ----

// ToTarget gathers payload for the target. A read often holds several
// frames, so their payloads are written with one writev by flushTarget,
// which must run before the client's input is reused: the slices point into
// it. The few bytes the decoder hands out from its own storage are copied,
// since they are valid only during the call.
func (s *session) ToTarget(p []byte) {
	l := s.l
	if s.x != nil && s.x.rec != nil {
		s.x.rec.FromClient(s.recordMillis(), p)
	}
	if l.targetGatherFull(len(p)) {
		s.flushTarget()
	}
	if len(p) <= codec.MaxUnaliasedPayload {
		start := len(l.smallBytes)
		l.smallBytes = append(l.smallBytes, p...)
		p = l.smallBytes[start:]
	}
	l.targetIov = append(l.targetIov, p)
}

// targetGatherFull says whether what is gathered for the target must be
// written before a payload of n bytes joins it: the iovec is full, or a
// short payload (copied) would not fit the bytes kept for those. A long
// payload is not copied, so the copies' room does not limit it.
func (l *loop) targetGatherFull(n int) bool {
	if len(l.targetIov) == cap(l.targetIov) {
		return true
	}
	return n <= codec.MaxUnaliasedPayload && len(l.smallBytes)+n > cap(l.smallBytes)
}

func (s *session) flushTarget() {
	l := s.l
	iov := l.targetIov
	if len(iov) == 0 {
		return
	}
	countToTarget(l.stats, iov)
	s.target.sendv(iov)
	s.trafficSent(trafficToTarget, &s.target)
	clear(iov)
	l.targetIov = iov[:0]
	l.smallBytes = l.smallBytes[:0]
}

// ToClient writes to the client.
func (s *session) ToClient(p []byte) {
	s.client.send(p, nil)
	if s.relaying() {
		s.trafficSent(trafficToClient, &s.client)
	}
}

// ToClientFrame writes a frame's header and payload to the client.
func (s *session) ToClientFrame(head, body []byte) {
	s.client.send(head, body)
	s.trafficSent(trafficToClient, &s.client)
}

// Scratch lends the loop's frame buffer.
func (s *session) Scratch(n int) []byte { return s.l.scratchFor(n) }

// ClientCertCN is the CN of the client's verified certificate (auth plugins).
func (s *session) ClientCertCN() string {
	if s.x == nil {
		return ""
	}
	return s.x.clientCN
}

// Log writes one of the machine's lines about this client.
func (s *session) Log(debug bool, msg string) {
	if debug {
		s.l.srv.cfg.Log.ConnDebugf(s.addr(), "%s", msg)
	} else {
		s.l.srv.cfg.Log.Connf(s.addr(), "%s", msg)
	}
}

// ---- the target ----

// enrolled is the context a dialed target joins the loop with, and what a
// dial reports back.
type enrolled struct {
	s    *session
	tls  *tls.Conn // set with --ssl-target: its handshake is done
	wire *tlsWire

	target    string // what a token named, as logged ("" for the fixed target)
	lookupErr error  // the token's lookup failed: nothing was dialed
}

// startDial connects to the target off the loop; the connection joins this
// loop with Enroll (targetOpened), and the dial reports back (dialDone).
// A session that is routing has its token looked up on the same goroutine
// first: the lookup may block (Redis, an HTTP API, a file changed), and one
// hand-off from the loop serves both.
func (s *session) startDial() {
	s.dialing = true
	srv := s.l.srv
	token := s.m.Token() // "" unless routing
	// Dials run on gnet's worker pool (the one Enroll uses too), whose
	// goroutines and grown stacks are reused: a fresh goroutine per dial
	// cost about 5% of the set-up rate in stack growth alone.
	err := goroutine.DefaultWorkerPool.Submit(func() { srv.dialFor(s, token) })
	if err != nil {
		s.dialDone(&enrolled{s: s}, err)
	}
}

// dialFor looks up token (when routing), dials the target of s and enrolls
// it on s's loop; it runs off the loop and touches nothing of s but its
// loop.
func (srv *server) dialFor(s *session, tok string) {
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	e := &enrolled{s: s}
	network, addr := srv.cfg.TargetNetwork, srv.cfg.TargetAddr
	var err error
	if srv.cfg.Tokens != nil && tok != "" {
		lookupCtx, cancelLookup := context.WithTimeout(ctx, lookupTimeout)
		var t token.Target
		t, e.lookupErr = srv.cfg.Tokens.Lookup(lookupCtx, tok)
		cancelLookup()
		network, addr, e.target = t.Network, t.Addr, t.Addr
	}
	if e.lookupErr == nil {
		err = srv.enroll(ctx, s, e, network, addr)
	}
	done := gnet.RunnableFunc(func(context.Context) error {
		s.dialDone(e, err)
		return nil
	})
	_ = s.l.el.Execute(context.Background(), done)
}

// enroll dials network/addr and hands the connection to s's loop.
func (srv *server) enroll(ctx context.Context, s *session, e *enrolled, network, addr string) error {
	conn, err := srv.dialTarget(ctx, network, addr)
	if err != nil {
		return err
	}
	if srv.cfg.TargetTLS != nil {
		e.tls, e.wire, err = handshakeTarget(ctx, conn, srv.cfg.TargetTLS, network, addr)
		if err != nil {
			_ = conn.Close()
			return err
		}
	}
	ch, err := s.l.el.Enroll(gnet.NewContext(ctx, e), conn)
	if err != nil {
		_ = conn.Close()
		return err
	}
	// gnet closes the dialed socket (it keeps a dup) before it closes the
	// channel, so drain the channel, not one value.
	for res := range ch {
		if res.Err != nil {
			err = res.Err
		}
	}
	return err
}

// routed tells a routing session where its token led, so that its 101 goes
// out; it reports whether the session still wants its target.
func (s *session) routed(e *enrolled) bool {
	if s.m.Phase() != codec.Routing {
		return true
	}
	return s.m.Routed(e.target, s) != codec.Close
}

// targetOpened runs when the dialed target joins the client's loop.
func (s *session) targetOpened(c gnet.Conn, e *enrolled) gnet.Action {
	s.target.attach(c)
	s.targetUp = true
	reserve := s.l.srv.budget.dialReserve
	s.l.srv.budget.add(-(reserve - 1)) // the target's own descriptor stays counted
	s.fds -= int32(reserve - 1)
	if e.tls != nil {
		x := s.target.state()
		x.tls, x.wire = e.tls, e.wire
		e.wire.sd = &s.target
	}
	if !s.routed(e) || s.m.Dialed() == codec.Close || s.ended {
		s.target.closeAsked = true
		return gnet.Close // OnClose settles the descriptor
	}
	if tw := s.l.srv.cfg.Traffic; tw != nil {
		_, _ = io.WriteString(tw, trafficLegend)
	}
	if s.target.tlsConn() != nil {
		s.readTLS(&s.target, nil) // what came with the handshake's last flight
	}
	s.fromClient(nil) // what the client sent while the target was dialed
	s.sync()
	return gnet.None
}

// dialDone runs when a dial is over, after targetOpened if it succeeded.
func (s *session) dialDone(e *enrolled, err error) {
	s.dialing = false
	if !s.targetUp {
		// Nothing joined the loop: the reserve is unused. (gnet reports a
		// connection it could not register as enrolled without opening it;
		// it closed the descriptor itself.)
		reserve := s.l.srv.budget.dialReserve
		s.l.srv.budget.add(-reserve)
		s.fds -= int32(reserve)
		switch {
		case e.lookupErr != nil:
			s.act(s.m.RouteFailed(routeError(e.lookupErr), s))
		case !s.routed(e):
		default:
			if err == nil {
				err = errors.New("the event loop did not take the connection")
			}
			s.act(s.m.DialFailed(err, s))
		}
	}
	s.sync()
}

// routeError tells the machine what a failed lookup means for the client.
func routeError(err error) error {
	if errors.Is(err, token.ErrNotFound) {
		return codec.ErrTokenNotFound
	}
	return err
}

// ---- the end ----

// end closes both sides without losing what is queued for them (side.go).
func (s *session) end() {
	if s.ended {
		return
	}
	s.ended = true
	if s.x != nil && s.x.handshake != nil {
		_ = s.x.handshake.Close() // its goroutine reports back and finds the session ended
	}
	s.closeFile()
	if s.x != nil && s.x.rec != nil {
		s.x.rec.Close() // the writer finishes the file with 'EOF'];
		s.x.rec = nil
	}
	s.client.startClosing()
	s.target.startClosing()
}

// sideClosed runs from OnClose: the side's descriptor is about to be closed.
func (s *session) sideClosed(sd *side, err error) {
	if sd.gone {
		return
	}
	if sd.x != nil && sd.x.err != nil {
		err = sd.x.err
	}
	sd.closed()
	s.l.srv.budget.add(-1)
	s.fds--
	if !s.ended {
		if sd.isClient {
			s.act(s.m.ClientGone(s))
		} else {
			s.act(s.m.TargetClosed(err, s))
		}
	}
	s.sync()
}

// sideReady runs when the drain poller saw sd writable or hung up.
func (s *session) sideReady(sd *side, events uint32) {
	if sd.gone {
		return
	}
	if events&hangupEvents != 0 && sd.isClient && sd.stage == open && !sd.reading && !s.ended {
		// The client went away while it was not being read (its target is
		// backed up): gnet would not notice until it read.
		s.act(s.m.ClientGone(s))
	}
	sd.blocked = false
	sd.roomReady()
	sd.flush()
	if sd.stage == flushing && sd.queued() == 0 {
		sd.shutWrite()
	}
	if sd.isClient {
		s.pumpFile()
	}
	s.sync()
}

// shutdown tells the session the proxy is stopping.
func (s *session) shutdown() {
	if !s.ended {
		s.act(s.m.Shutdown(s))
	}
	s.sync()
}

// sync brings the sockets in line with the session's state: the timer of
// its phase, which side is read, and whether it is over.
func (s *session) sync() {
	if s.finished {
		return
	}
	if !s.counted && s.m.Upgraded() {
		s.counted = true // here, not below: a routed session can upgrade and close in one callback
		s.l.stats.Upgraded(&s.m)
	}
	if p := s.m.Phase(); p != s.phase {
		prev := s.phase
		s.phase = p
		now := time.Now().UnixNano()
		s.deadline = 0
		if prev < codec.Dialing && (p == codec.Dialing || p == codec.Relaying) {
			// The 101 went out. A routed session passes Dialing within one
			// callback (its target was dialed with the lookup), so it is
			// seen here already relaying.
			s.l.srv.upgraded.Store(true) // --run-once takes no other client
			s.startRecording(now)
		}
		switch p {
		case codec.Sniffing: // again, inside TLS
			s.deadline = s.l.firstByte.add(now, s)
		case codec.ReadingHead:
			s.deadline = s.l.requestHead.add(now, s)
		case codec.Relaying:
			if s.l.srv.cfg.Heartbeat > 0 && s.m.Version() == codec.HyBi {
				s.deadline = s.l.heartbeat.add(now, s)
			}
		}
	}

	// Each side is read only when its peer can take a whole read (side.go).
	c, t := &s.client, &s.target
	c.setReading(s.clientWantsRead())
	t.setReading(s.targetWantsRead())
	c.loop().watch(c, c.watchEvents())
	t.loop().watch(t, t.watchEvents())

	c.shrink()
	t.shrink()
	if s.x != nil && s.x.idle() {
		s.x = nil
	}
	if s.ended && c.gone && (t.c == nil || t.gone) && !s.dialing && (s.x == nil || s.x.handshake == nil) {
		s.finish()
	}
}

// clientWantsRead says whether the client should be read now: not during
// the TLS handshake (its goroutine reads), not while too much of it waits
// to be used or too much waits to go back to it, and not unless its target
// (once there) can take a whole read. A closing side is read only to drop
// what comes after its write side is shut.
func (s *session) clientWantsRead() bool {
	c, t := &s.client, &s.target
	switch c.stage {
	case flushing:
		return false
	case lingering:
		return true
	}
	if s.m.Phase() == codec.Handshaking || c.heldLen() >= s.l.srv.holdLimit || c.queued() >= replyLimit || c.yielding {
		return false
	}
	return t.c == nil || t.gone || t.stage != open || t.hasRoom(readChunk+tlsSlack)
}

// targetWantsRead says whether the target should be read now: only when the
// client can take a whole read, framed.
func (s *session) targetWantsRead() bool {
	c, t := &s.client, &s.target
	switch t.stage {
	case flushing:
		return false
	case lingering:
		return true
	}
	return !t.yielding && !c.gone && c.stage == open && c.hasRoom(s.m.FrameLen(readChunk)+tlsSlack)
}

// finish settles the budget once both sides are gone.
func (s *session) finish() {
	s.finished = true
	s.l.sessions.remove(s)
	s.l.srv.budget.add(-int64(s.fds)) // the dial reserve, if no dial used it
	s.fds = 0
	s.l.stats.Finished(&s.m)
	s.l.srv.sessionEnded(s.m.Upgraded())
}

// ---- timers ----

func (s *session) firstByteExpired(at int64) {
	if s.deadline != at || s.finished {
		return
	}
	s.act(s.m.FirstByteExpired(s))
	s.sync()
}

func (s *session) requestHeadExpired(at int64) {
	if s.deadline != at || s.finished {
		return
	}
	s.act(s.m.RequestHeadExpired(s.client.heldLen() > 0, s))
	s.sync()
}

func (s *session) heartbeatDue(at int64) {
	if s.deadline != at || s.finished || !s.relaying() {
		return
	}
	s.m.Heartbeat(s)
	s.deadline = s.l.heartbeat.add(time.Now().UnixNano(), s)
	s.sync()
}

// ---- recording (--record) ----

// startRecording opens the session's recording as it upgrades (the file is
// created by the recorder's goroutine, not here).
func (s *session) startRecording(now int64) {
	rec := s.l.srv.recorder
	if rec == nil || s.x == nil || s.x.recordN == 0 {
		return
	}
	s.Log(false, "opening record file: "+rec.Path(s.x.recordN))
	s.x.rec = rec.Open(s.x.recordN)
	s.x.recordStart = now
	s.x.recordN = 0
}

// recordMillis is how long ago the session upgraded, in milliseconds.
func (s *session) recordMillis() int64 {
	return (time.Now().UnixNano() - s.x.recordStart) / 1e6
}

// ---- traffic symbols (--traffic) ----

// The original's symbols: a whole read or write, and with "." a partial one
// (a frame not complete yet, or a write the kernel took only part of).
var (
	trafficFromClient = [2][]byte{[]byte("}"), []byte("}.")}
	trafficToTarget   = [2][]byte{[]byte(">"), []byte(">.")}
	trafficFromTarget = [2][]byte{[]byte("{"), []byte("{")}
	trafficToClient   = [2][]byte{[]byte("<"), []byte("<.")}
)

// trafficLegend is printed as each session starts relaying, as the
// original does.
const trafficLegend = `
Traffic Legend:
    }  - Client receive
    }. - Client receive partial
    {  - Target receive

    >  - Target send
    >. - Target send partial
    <  - Client send
    <. - Client send partial
`

// traffic prints sym, its partial form when part is set.
func (s *session) traffic(sym [2][]byte, part bool) {
	if tw := s.l.srv.cfg.Traffic; tw != nil {
		if part {
			_, _ = tw.Write(sym[1])
		} else {
			_, _ = tw.Write(sym[0])
		}
	}
}

// trafficSent prints sym for a write to sd: partial when the kernel did
// not take all of it. Without --traffic it costs one nil check per frame.
func (s *session) trafficSent(sym [2][]byte, sd *side) {
	if s.l.srv.cfg.Traffic != nil {
		s.traffic(sym, sd.queued() > 0)
	}
}
