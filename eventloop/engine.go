// Package eventloop owns the sockets: gnet reactors (one per core, each with
// its own SO_REUSEPORT listener) accept clients, dial targets, pair the two on
// one loop, and move bytes between them with backpressure. What the bytes
// mean, and what to answer, is decided by package codec (codec.Session); this
// package never parses HTTP or frames itself.
//
// Where to start reading:
//
//   - engine.go: Serve, the gnet callbacks, shutdown and the process timers;
//   - session.go: one client and its target, driving a codec.Session;
//   - side.go: one socket of a session: writes, pausing, lossless close;
//   - drain.go: how a loop learns that a full socket can take bytes again;
//   - tls.go: TLS as a transport on the loop (handshakes on goroutines);
//   - web.go: web responses (--web), files read off the loop;
//   - inherited.go: listeners bound by someone else (--inetd, systemd);
//   - log.go, traffic.go: log lines and --traffic, written off the loops;
//   - fdbudget.go: staying under the open-file limit.
//
// A session lives on one loop goroutine from accept to close, so its state
// needs no locks. Every transport, ws:// and wss://, --ssl-target, unix
// sockets, inherited listeners, goes through the same session and the same
// steps; a token's lookup (--token-plugin) runs on the goroutine that then
// dials, and a recording (--record) is written by package record's.
package eventloop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gowebsockify/websockify/codec"
	"github.com/gowebsockify/websockify/limits"
	"github.com/gowebsockify/websockify/record"
	"github.com/gowebsockify/websockify/webserver"
	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/logging"
	"golang.org/x/sys/unix"
)

// server is a running proxy: gnet's event handler.
type server struct {
	cfg        Config
	sessionCfg codec.SessionConfig
	budget     *fdBudget
	started    time.Time
	web        *webserver.Server // nil without --web
	drain      *drainPoller
	limiter    *limits.Limiter // --max-sessions and the like (limits.go)
	holdLimit  int             // client bytes held unused before reading stops

	engineMu   sync.Mutex
	engine     gnet.Engine
	booted     bool
	stopEngine func() // stops a client engine (inherited listeners); nil: engine.Stop
	umask      int    // the process's umask while Serve set one for the unix socket
	umaskSet   bool

	loopsMu sync.Mutex
	loops   map[gnet.EventLoop]*loop

	sessions atomic.Int64  // sessions not yet finished
	accepted atomic.Uint64 // connections accepted, numbering --record's files
	recorder *record.Recorder
	upgraded atomic.Bool // for --run-once
	stopping atomic.Bool
	lastIdle atomic.Int64 // unix nanos when the session count last hit zero
	fatal    atomic.Pointer[error]

	gnet.BuiltinEventEngine
}

// ErrEngineDied is returned when gnet stopped on its own (for instance when
// accept failed with something no budget covers, such as ENFILE).
var ErrEngineDied = errors.New("event engine stopped unexpectedly")

// Serve listens and proxies until a signal, a timeout or --run-once ends it.
// stop, when closed, shuts the server down gracefully.
func Serve(cfg Config, stop <-chan struct{}) error {
	if cfg.Loops <= 0 {
		cfg.Loops = runtime.NumCPU()
	}
	if cfg.Log == nil {
		cfg.Log = NewLogger(os.Stderr, cfg.Verbose)
	}
	if cfg.Traffic != nil {
		cfg.Traffic = newTrafficWriter(cfg.Traffic)
	}
	s := &server{cfg: cfg, loops: make(map[gnet.EventLoop]*loop), started: time.Now()}
	s.sessionCfg = codec.SessionConfig{
		TLSAvailable: cfg.TLS != nil,
		CertFile:     cfg.CertFile,
		SSLOnly:      cfg.SSLOnly,
		Web:          cfg.WebRoot != "",
		Target:       cfg.TargetAddr,
		TargetTLS:    cfg.TargetTLS != nil,
		Auth:         cfg.Auth,
		WebAuth:      cfg.WebAuth,
		HealthPath:   cfg.HealthPath,
		FirstByte:    firstByteTimeout,
		RequestHead:  requestHeadTimeout,
	}
	s.sessionCfg.ProxyProtocol, s.sessionCfg.TrustedProxies = cfg.ProxyProtocol, cfg.TrustedProxies
	if cfg.TargetLabel != "" {
		s.sessionCfg.Target = cfg.TargetLabel
	}
	s.setUpLimits()
	if cfg.Tokens != nil {
		s.sessionCfg.Tokens = cfg.TokenFrom
		if s.sessionCfg.Tokens == codec.NoToken {
			s.sessionCfg.Tokens = codec.TokenFromQuery
		}
	}
	s.lastIdle.Store(s.started.UnixNano())
	if cfg.WebRoot != "" {
		web, err := webserver.New(cfg.WebRoot, cfg.FileOnly)
		if err != nil {
			return fmt.Errorf("--web: %w", err)
		}
		s.web = web
	}
	if cfg.Record != "" {
		s.recorder = record.NewRecorder(cfg.Record, func(msg string) { cfg.Log.Infof("%s", msg) })
		defer s.recorder.Close() // after the loops: every file finished with 'EOF'];
	}
	drain, err := newDrainPoller()
	if err != nil {
		return fmt.Errorf("drain poller: %w", err)
	}
	s.drain = drain
	defer drain.close()
	go drain.run()
	s.budget = newFDBudget(cfg.Loops, dialReserve(cfg))
	if cfg.Tokens != nil {
		// The plugin's own sockets (a Redis pool, HTTP connections), and a
		// resolver's two while it dials one.
		s.budget.reserve += int64(cfg.Tokens.Sockets()) + 2
	}
	cfg.Metrics.SetEngine(metricsView{s})

	proto := "tcp://" + cfg.ListenAddr
	if cfg.ListenUnix != "" {
		proto = "unix://" + cfg.ListenUnix
	}
	if !cfg.Worker && len(cfg.Listeners) == 0 {
		if err := CheckAddressFree(cfg); err != nil {
			return err
		}
	}
	go func() {
		<-stop
		s.shutdown("signal")
	}()
	tickerDone := make(chan struct{})
	defer close(tickerDone)
	defer cfg.Log.Flush()
	defer s.limiter.Stop() // the summary of a burst of refusals still open, before the flush
	go s.runTicker(tickerDone)
	go s.logStatusOnRequest(tickerDone)
	opts := []gnet.Option{
		gnet.WithNumEventLoop(cfg.Loops),
		gnet.WithReusePort(true),
		gnet.WithReuseAddr(true),
		gnet.WithEdgeTriggeredIO(false), // pausing relies on level-triggered epoll (epoll.go)
		gnet.WithReadBufferCap(readChunk),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithTCPKeepAlive(60 * time.Second),
		gnet.WithLogLevel(logging.ErrorLevel),
		gnet.WithLogger(gnetLogger{cfg.Log}),
	}
	if len(cfg.Listeners) > 0 {
		err = s.serveInherited(opts)
	} else {
		if cfg.ListenUnix != "" {
			// gnet binds and listens at once: the umask gives the socket
			// its mode from the start, so no client connects through a
			// wider one before OnBoot's chmod (which restores the umask).
			s.umask = unix.Umask(int(0o777 &^ cfg.ListenUnixMode.Perm()))
			s.umaskSet = true
		}
		err = gnet.Run(s, proto, opts...)
		s.restoreUmask()
	}
	if err != nil {
		return err
	}
	if p := s.fatal.Load(); p != nil {
		return *p
	}
	if !s.stopping.Load() {
		return ErrEngineDied
	}
	return nil
}

// CheckAddressFree fails when another process listens on the address.
// SO_REUSEPORT, which each loop's listener needs, would otherwise let a
// second websockify bind the same port and silently take half its clients;
// a plain bind still conflicts with any listener. A unix socket file left by
// a dead process is removed; one that answers is in use.
func CheckAddressFree(cfg Config) error {
	if cfg.ListenUnix != "" {
		fi, err := os.Lstat(cfg.ListenUnix)
		if err != nil || fi.Mode()&os.ModeSocket == 0 {
			return nil // absent, or not a socket: the bind reports it
		}
		if c, err := net.DialTimeout("unix", cfg.ListenUnix, time.Second); err == nil {
			_ = c.Close()
			return fmt.Errorf("listen unix %s: address already in use", cfg.ListenUnix)
		}
		return os.Remove(cfg.ListenUnix)
	}
	return bindProbe(cfg.ListenAddr)
}

// logStatusOnRequest logs a status line for each status request.
func (s *server) logStatusOnRequest(done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-s.cfg.StatusRequests:
			s.cfg.Log.Infof("status: sessions=%d goroutines=%d fds=%d pid=%d", s.sessions.Load(), runtime.NumGoroutine(), countOpenFDs(), os.Getpid())
			s.cfg.Log.Flush()
		}
	}
}

// shutdown stops the proxy from any goroutine but a loop's: new clients are
// refused, every session is told 1001 "Going away" and given
// cfg.ShutdownTimeout to close, then the engine stops. Before the engine has
// booted, OnBoot sees the flag and stops it instead.
func (s *server) shutdown(why string) {
	if s.stopping.Swap(true) {
		return
	}
	s.cfg.Log.Debugf("stopping: %s", why)
	s.engineMu.Lock()
	booted := s.booted
	s.engineMu.Unlock()
	if booted {
		go s.drainAndStop()
	}
}

func (s *server) drainAndStop() {
	deadline := time.Now().Add(s.cfg.ShutdownTimeout)
	var passes sync.WaitGroup
	s.loopsMu.Lock()
	for el, l := range s.loops {
		passes.Add(1)
		if el.Execute(context.Background(), shutdownPass{l, &passes}) != nil {
			passes.Done()
		}
	}
	s.loopsMu.Unlock()
	// Even with no time to drain, every session is told 1001 first (a
	// loop gets a second for that, should it be stuck).
	told := make(chan struct{})
	go func() { passes.Wait(); close(told) }()
	select {
	case <-told:
	case <-time.After(max(time.Until(deadline), time.Second)):
	}
	for s.sessions.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	s.engineMu.Lock()
	eng, stopEngine := s.engine, s.stopEngine
	s.stopEngine = nil // once
	s.engineMu.Unlock()
	if stopEngine != nil {
		stopEngine()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = eng.Stop(ctx)
}

// shutdownPass tells every session of a loop that the proxy stops.
type shutdownPass struct {
	l    *loop
	done *sync.WaitGroup
}

func (p shutdownPass) Run(context.Context) error {
	defer p.done.Done()
	for s := p.l.sessions.head; s != nil; {
		next := s.next // s may leave the list
		s.shutdown()
		s = next
	}
	return nil
}

// OnBoot records the engine and applies the unix socket's mode.
func (s *server) OnBoot(eng gnet.Engine) gnet.Action {
	s.engineMu.Lock()
	s.engine, s.booted = eng, true
	stopping := s.stopping.Load()
	s.engineMu.Unlock()
	if stopping {
		return gnet.Shutdown // a signal came before the engine was up
	}
	if s.cfg.ListenUnix != "" {
		s.restoreUmask()
		if err := os.Chmod(s.cfg.ListenUnix, s.cfg.ListenUnixMode); err != nil {
			e := fmt.Errorf("chmod %s: %w", s.cfg.ListenUnix, err)
			s.fatal.Store(&e)
			s.stopping.Store(true)
			return gnet.Shutdown
		}
	} else if !s.cfg.Worker && len(s.cfg.Listeners) == 0 {
		if err := CheckSoleListeners(s.cfg.ListenAddr, os.Getpid()); err != nil {
			s.fatal.Store(&err)
			s.stopping.Store(true)
			return gnet.Shutdown
		}
	}
	if s.cfg.Ready != nil {
		s.cfg.Ready()
	}
	return gnet.None
}

// restoreUmask puts back the umask Serve changed for the unix socket.
func (s *server) restoreUmask() {
	s.engineMu.Lock()
	defer s.engineMu.Unlock()
	if s.umaskSet {
		unix.Umask(s.umask)
		s.umaskSet = false
	}
}

// runTicker applies --timeout and --idle-timeout, when given; the loops'
// own timers are theirs (loop.go).
func (s *server) runTicker(done <-chan struct{}) {
	if s.cfg.Timeout <= 0 && s.cfg.IdleTimeout <= 0 {
		return
	}
	tick := time.NewTicker(tickPeriod)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		s.checkProcessTimers(time.Now())
	}
}

// checkProcessTimers applies --timeout and --idle-timeout.
func (s *server) checkProcessTimers(now time.Time) {
	if s.stopping.Load() {
		return
	}
	open := s.sessions.Load()
	if t := s.cfg.Timeout; t > 0 && now.Sub(s.started) >= t && open == 0 {
		s.shutdown("--timeout reached")
		return
	}
	if t := s.cfg.IdleTimeout; t > 0 && open == 0 && now.Sub(time.Unix(0, s.lastIdle.Load())) >= t {
		s.cfg.Log.Infof("idle timeout of %v reached, exiting", t)
		s.shutdown("--idle-timeout reached")
	}
}

// accepting reports whether new clients are still welcome.
func (s *server) accepting() bool {
	if s.stopping.Load() {
		return false
	}
	if t := s.cfg.Timeout; t > 0 && time.Since(s.started) >= t {
		return false
	}
	if s.cfg.RunOnce && s.upgraded.Load() {
		return false
	}
	return true
}

// loopOf returns the per-loop state, creating it on the loop's first
// connection (which is also when its epoll descriptor can be found).
func (s *server) loopOf(c gnet.Conn) (*loop, error) {
	el := c.EventLoop()
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	if l, ok := s.loops[el]; ok {
		return l, nil
	}
	epfd, err := discoverEpoll(c.Fd())
	if err != nil {
		return nil, err
	}
	l := newLoop(s, el, epfd)
	s.drain.addLoop(l)
	s.loops[el] = l
	return l, nil
}

// OnOpen handles both a newly accepted client and a target enrolled by a
// dial (those carry their session as context).
func (s *server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	var reserved int64
	switch ctx := c.Context().(type) {
	case *enrolled:
		return nil, ctx.s.targetOpened(c, ctx)
	case *acceptedClient: // from an inherited listener: admitted already
		reserved = ctx.reserved
		if !s.accepting() {
			s.budget.add(-reserved)
			return nil, gnet.Close
		}
	default:
		if !s.accepting() {
			return nil, gnet.Close
		}
		if reserved = s.budget.admit(); reserved == 0 {
			s.cfg.Log.refusal("open-file limit reached: refusing new clients until sessions end")
			return nil, gnet.Close
		}
	}
	l, err := s.loopOf(c)
	if err != nil {
		s.budget.add(-reserved)
		e := fmt.Errorf("cannot pause reads: %w", err)
		s.fatal.Store(&e)
		s.shutdown(e.Error())
		return nil, gnet.Close
	}
	_ = c.SetNoDelay(true) // not inherited from the listener on every kernel; fails harmlessly on unix sockets
	s.sessions.Add(1)
	sess := newSession(l, c, reserved)
	if s.recorder != nil {
		n := s.accepted.Add(1)
		slots := uint64(max(1, s.cfg.RecordSlots))
		sess.state().recordN = (n-1)*slots + uint64(s.cfg.RecordSlot) + 1
	}
	return nil, gnet.None
}

// OnTraffic hands what gnet read to the side's session.
func (s *server) OnTraffic(c gnet.Conn) gnet.Action {
	sd, ok := c.Context().(*side)
	if !ok {
		_, _ = c.Discard(-1)
		return gnet.Close
	}
	sd.sess.readable(sd)
	return gnet.None
}

// OnClose tells the side's session that gnet closes it.
func (s *server) OnClose(c gnet.Conn, err error) gnet.Action {
	if sd, ok := c.Context().(*side); ok {
		sd.sess.sideClosed(sd, err)
	}
	return gnet.None
}

// OnShutdown notes an engine that died by itself (gnet.Run returns nil then).
func (s *server) OnShutdown(gnet.Engine) {
	if !s.stopping.Load() {
		s.cfg.Log.Errorf("event engine stopped unexpectedly; see the log above")
	}
}

// sessionEnded updates the process-wide counters when a session is over.
func (s *server) sessionEnded(wasUpgraded bool) {
	if s.sessions.Add(-1) == 0 {
		s.lastIdle.Store(time.Now().UnixNano())
	}
	if s.cfg.RunOnce && wasUpgraded {
		s.shutdown("--run-once: session ended")
	}
}
