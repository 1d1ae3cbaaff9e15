// Package eventloop owns the sockets: gnet reactors (one per core, each with
// its own SO_REUSEPORT listener) accept clients, dial targets, pair the two on
// one loop, and move bytes between them with backpressure. It asks sniff and
// codec what the bytes mean and what to send; it never parses HTTP or frames
// itself.
//
// With --web, requests that are not upgrades are answered by package
// webserver on gnet's worker pool, off the loops (web.go).
//
// A session (one client and its target) lives on one loop goroutine from
// accept to close, so its state needs no locks. Timers (first byte, request
// head, heartbeat) and read pausing run on the loop too, driven by a shared
// tick that queues work with EventLoop.Execute.
//
// TLS clients (and every client with --ssl-target) leave the loop after
// their first bytes and run on goroutines with crypto/tls: see tls.go.
package eventloop

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gowebsockify/websockify/webserver"
	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/logging"
	"golang.org/x/sys/unix"
)

// Config is everything the proxy needs, fixed at start.
type Config struct {
	ListenAddr     string      // "host:port" (host may be empty: all addresses, IPv4 and IPv6)
	ListenUnix     string      // path of a unix socket to listen on instead
	ListenUnixMode os.FileMode // permissions of that socket

	TargetNetwork string // "tcp" or "unix"
	TargetAddr    string // "host:port" or a socket path
	PreferIPv6    bool   // order the target's IPv6 addresses first

	Heartbeat   time.Duration // ping period; 0 = off
	IdleTimeout time.Duration // exit after this long with no session; 0 = never
	Timeout     time.Duration // stop accepting after this long, exit when the last session ends; 0 = never
	RunOnce     bool          // exit after the first upgraded session ends

	// TLS, when set, serves clients whose first byte is a TLS hello (see
	// tls.go); nil closes them. CertFile only names the certificate in the
	// log line of that refusal. SSLOnly refuses clients that are not TLS.
	TLS      *tls.Config
	CertFile string
	SSLOnly  bool
	// TargetTLS, when set, speaks TLS to the target (--ssl-target); an empty
	// ServerName means the target's host.
	TargetTLS *tls.Config
	// WebRoot, when set, serves the files under it to plain GET and HEAD
	// requests (--web); FileOnly refuses directory listings (--file-only).
	WebRoot  string
	FileOnly bool

	Verbose bool
	Traffic io.Writer // per-frame traffic symbols; nil = off
	Log     *Logger

	// Loops is the number of event loops; 0 means one per core.
	Loops int

	// StatusRequests, when it delivers, logs one status line: open
	// sessions, goroutines and open descriptors (websockify passes its
	// SIGUSR1 channel). Soak tests compare the line before and after a run.
	StatusRequests <-chan os.Signal

	// Worker marks one of several processes sharing the listening port
	// (websockify --workers): their parent checked that the address was free
	// and checks that only its workers listen there, so a worker skips both
	// checks, which would see its siblings. Ready, if set, is called once
	// the listeners are bound.
	Worker bool
	Ready  func()
}

// Timeouts and sizes. The first-byte wait matches the original websockify.
const (
	firstByteTimeout   = 3 * time.Second
	requestHeadTimeout = 30 * time.Second
	dialTimeout        = 10 * time.Second
	drainTimeout       = 10 * time.Second

	tickFast = 1 * time.Millisecond   // while any read is paused or a close waits for a flush
	tickSlow = 100 * time.Millisecond // timers only

	// Reading of a side stops when its peer has more than pauseAbove bytes
	// waiting to be written, and resumes at resumeBelow. A session whose
	// peer piles up more than hardOutboundCap anyway (see pause.go) is closed.
	pauseAbove      = 2 << 20
	resumeBelow     = 512 << 10
	hardOutboundCap = 16 << 20

	readChunk = 256 << 10 // gnet's per-loop read buffer: the most one read adds
	// maxPending bounds what a client may send before its target is up.
	maxPending = 1 << 20
)

// Server is a running proxy.
type Server struct {
	cfg     Config
	budget  *fdBudget
	started time.Time
	web     *webserver.Server // nil without --web

	engine   gnet.Engine
	kick     chan struct{} // wakes the ticker early
	loopsMu  sync.Mutex
	loops    map[gnet.EventLoop]*loop
	sessions atomic.Int64 // open client connections
	upgraded atomic.Bool  // for --run-once
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
	s := &Server{cfg: cfg, loops: make(map[gnet.EventLoop]*loop), started: time.Now(), kick: make(chan struct{}, 1)}
	s.lastIdle.Store(s.started.UnixNano())
	s.budget = newFDBudget(cfg.Loops)
	if cfg.WebRoot != "" {
		web, err := webserver.New(cfg.WebRoot, cfg.FileOnly)
		if err != nil {
			return fmt.Errorf("--web: %w", err)
		}
		s.web = web
	}

	proto := "tcp://" + cfg.ListenAddr
	if cfg.ListenUnix != "" {
		proto = "unix://" + cfg.ListenUnix
	}
	if !cfg.Worker {
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
	go s.runTicker(tickerDone)
	go s.logStatusOnRequest(tickerDone)
	err := gnet.Run(s, proto,
		gnet.WithNumEventLoop(cfg.Loops),
		gnet.WithReusePort(true),
		gnet.WithReuseAddr(true),
		gnet.WithEdgeTriggeredIO(false), // pausing relies on level-triggered epoll (pause.go)
		gnet.WithReadBufferCap(readChunk),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithTCPKeepAlive(60*time.Second),
		gnet.WithLogLevel(logging.ErrorLevel),
		gnet.WithLogger(gnetLogger{cfg.Log}),
	)
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
func (s *Server) logStatusOnRequest(done <-chan struct{}) {
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

// shutdown stops the engine from any goroutine but a loop's.
func (s *Server) shutdown(why string) {
	if s.stopping.Swap(true) {
		return
	}
	s.cfg.Log.Debugf("stopping: %s", why)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.engine.Stop(ctx)
	}()
}

// OnBoot records the engine and applies the unix socket's mode.
func (s *Server) OnBoot(eng gnet.Engine) gnet.Action {
	s.engine = eng
	if s.cfg.ListenUnix != "" {
		if err := os.Chmod(s.cfg.ListenUnix, s.cfg.ListenUnixMode); err != nil {
			e := fmt.Errorf("chmod %s: %w", s.cfg.ListenUnix, err)
			s.fatal.Store(&e)
			s.stopping.Store(true)
			return gnet.Shutdown
		}
	} else if !s.cfg.Worker {
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

// runTicker drives every loop's timers and read resumption. It runs on its
// own goroutine, never on a loop: it only queues each loop's tick onto that
// loop with Execute. gnet's OnTick is not used because its timer cannot be
// cut short: a read paused while it sleeps the slow period would stay paused
// that long, which is what capped throughput at a fraction of loopback's.
func (s *Server) runTicker(done <-chan struct{}) {
	timer := time.NewTimer(tickSlow)
	defer timer.Stop()
	for {
		select {
		case <-done:
			return
		case <-s.kick:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-timer.C:
		}
		s.cfg.Log.Flush()
		now := time.Now()
		if s.checkProcessTimers(now) {
			timer.Reset(tickSlow)
			continue
		}
		fast := false
		s.loopsMu.Lock()
		for el, l := range s.loops {
			if l.wantsFastTick.Load() {
				fast = true
			}
			if !l.tickQueued.Swap(true) {
				_ = el.Execute(context.Background(), l)
			}
		}
		s.loopsMu.Unlock()
		if fast {
			timer.Reset(tickFast)
		} else {
			timer.Reset(tickSlow)
		}
	}
}

// kickTicker makes the ticker run now; a loop calls it when it starts
// needing the fast tick.
func (s *Server) kickTicker() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// checkProcessTimers applies --timeout and --idle-timeout; it reports
// whether the server is stopping.
func (s *Server) checkProcessTimers(now time.Time) bool {
	if s.stopping.Load() {
		return true
	}
	open := s.sessions.Load()
	if t := s.cfg.Timeout; t > 0 && now.Sub(s.started) >= t && open == 0 {
		s.shutdown("--timeout reached")
		return true
	}
	if t := s.cfg.IdleTimeout; t > 0 && open == 0 && now.Sub(time.Unix(0, s.lastIdle.Load())) >= t {
		s.cfg.Log.Infof("idle timeout of %v reached, exiting", t)
		s.shutdown("--idle-timeout reached")
		return true
	}
	return false
}

// accepting reports whether new clients are still welcome.
func (s *Server) accepting() bool {
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
func (s *Server) loopOf(c gnet.Conn) (*loop, error) {
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
	s.loops[el] = l
	return l, nil
}

// OnOpen handles both a newly accepted client and a target enrolled by a
// dial (those carry their session as context).
func (s *Server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if sess, ok := c.Context().(*session); ok {
		return nil, sess.targetOpened(c)
	}
	if !s.accepting() {
		return nil, gnet.Close
	}
	if !s.budget.admit() {
		s.cfg.Log.refusal("open-file limit reached: refusing new clients until sessions end")
		return nil, gnet.Close
	}
	l, err := s.loopOf(c)
	if err != nil {
		s.budget.add(-1 - fdsPerDial)
		e := fmt.Errorf("cannot pause reads: %w", err)
		s.fatal.Store(&e)
		s.shutdown(e.Error())
		return nil, gnet.Close
	}
	_ = c.SetNoDelay(true) // not inherited from the listener on every kernel; fails harmlessly on unix sockets
	s.sessions.Add(1)
	sess := newSession(l, c)
	c.SetContext(sess)
	return nil, gnet.None
}

// OnTraffic routes readable bytes to the session's state machine.
func (s *Server) OnTraffic(c gnet.Conn) gnet.Action {
	sess, ok := c.Context().(*session)
	if !ok {
		_, _ = c.Discard(-1)
		return gnet.Close
	}
	if c == sess.target {
		return sess.targetReadable()
	}
	return sess.clientReadable()
}

// OnClose releases a side of a session.
func (s *Server) OnClose(c gnet.Conn, err error) gnet.Action {
	sess, ok := c.Context().(*session)
	if !ok {
		return gnet.None
	}
	if c == sess.target {
		sess.targetClosed(err)
	} else if c == sess.client {
		sess.clientClosed(err)
	}
	return gnet.None
}

// OnShutdown notes an engine that died by itself (gnet.Run returns nil then).
func (s *Server) OnShutdown(gnet.Engine) {
	if !s.stopping.Load() {
		s.cfg.Log.Errorf("event engine stopped unexpectedly; see the log above")
	}
}

// sessionEnded updates the process-wide counters when a client goes away.
func (s *Server) sessionEnded(wasUpgraded bool) {
	if s.sessions.Add(-1) == 0 {
		s.lastIdle.Store(time.Now().UnixNano())
	}
	if s.cfg.RunOnce && wasUpgraded {
		s.shutdown("--run-once: session ended")
	}
}

// wholePortRange gives a socket about to connect a per-socket source port
// range as wide as the system's. Every session dials the same target, so
// only the source port tells those connections apart, and Linux picks it
// preferring ports of one parity (leaving the others to bind): once that
// half is used up, about 32,000 sessions with the widest range, each dial
// scans all of it before trying the other half, and set-ups slow to a crawl.
// A per-socket range, even the system's own, turns the preference off
// (measured on Linux 6.18; kernels without the option refuse it, which is
// harmless).
func wholePortRange(_, _ string, rc syscall.RawConn) error {
	_ = rc.Control(func(fd uintptr) {
		// high<<16 | low: 1-65535 is clamped to the system's range.
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_LOCAL_PORT_RANGE, 65535<<16|1)
	})
	return nil
}

// dialTarget connects to the configured target. Go's dialer already tries
// every resolved address in order (and skips the resolver for an IP
// literal); with -6 the IPv6 addresses are tried first.
func (s *Server) dialTarget(ctx context.Context) (net.Conn, error) {
	// ctx carries the timeout. SO_KEEPALIVE with the system's timings, as
	// the original sets it; each timing would cost a syscall per session.
	d := net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}}
	if s.cfg.TargetNetwork == "tcp" {
		d.Control = wholePortRange
	}
	if s.cfg.TargetNetwork == "unix" || !s.cfg.PreferIPv6 {
		return d.DialContext(ctx, s.cfg.TargetNetwork, s.cfg.TargetAddr)
	}
	host, port, err := net.SplitHostPort(s.cfg.TargetAddr)
	if err != nil {
		return nil, err
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("no address for %s", host)
	}
	sortIPv6First(ips)
	for _, ip := range ips {
		var c net.Conn
		if c, err = d.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), port)); err == nil {
			return c, nil
		}
	}
	return nil, err
}

func sortIPv6First(ips []net.IPAddr) {
	v6 := make([]net.IPAddr, 0, len(ips))
	v4 := make([]net.IPAddr, 0, len(ips))
	for _, ip := range ips {
		if ip.IP.To4() == nil {
			v6 = append(v6, ip)
		} else {
			v4 = append(v4, ip)
		}
	}
	copy(ips, append(v6, v4...))
}
