package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/gowebsockify/websockify/wsclient"
)

// The soak mode runs a proxy for a long time under a mix of verified traffic
// and faults, and checks that no byte was ever wrong and that nothing leaked.

// targetSoak is the target kind the soak and slow modes use (protocol in
// soakwire.go).
const targetSoak = "soak"

// serveSoak is the soak target: the first byte picks echo, download or upload.
func serveSoak(c net.Conn) {
	defer c.Close()
	var hdr [17]byte
	if _, err := io.ReadFull(c, hdr[:1]); err != nil {
		return
	}
	if hdr[0] == opEcho {
		serveEcho(c)
		return
	}
	if _, err := io.ReadFull(c, hdr[1:]); err != nil {
		return
	}
	seed, n := binary.BigEndian.Uint64(hdr[1:9]), int64(binary.BigEndian.Uint64(hdr[9:]))
	src := stream(seed)
	buf := make([]byte, 64<<10)
	switch hdr[0] {
	case opDown:
		for n > 0 {
			chunk := buf[:min(int64(len(buf)), n)]
			_, _ = src.Read(chunk)
			if _, err := c.Write(chunk); err != nil {
				return
			}
			n -= int64(len(chunk))
		}
	case opUp:
		want := make([]byte, len(buf))
		var bad int64
		for n > 0 {
			r, err := c.Read(buf[:min(int64(len(buf)), n)])
			if r > 0 {
				_, _ = src.Read(want[:r])
				bad += diffCount(buf[:r], want[:r])
				n -= int64(r)
			}
			if err != nil {
				return
			}
		}
		if _, err := c.Write(binary.BigEndian.AppendUint64(nil, uint64(bad))); err != nil {
			return
		}
	default:
		return
	}
	// The client closes once it has everything; closing first could cut the
	// last bytes off with a reset.
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	_, _ = io.Copy(io.Discard, c)
}

// soakConfig is the soak mode's flags.
type soakConfig struct {
	proxyURL, proxyCmd, target, label, proxyLog string
	commit                                      string
	proxyPID                                    int
	jsonOut                                     bool
	duration, opTimeout, progress               time.Duration
	sessions, bulkWorkers, churnWorkers         int
	b64Share                                    float64
	think                                       time.Duration
	lifeMin, lifeMax                            time.Duration
	bulkMax                                     int64
	faultEvery, restartEvery, restartGap        time.Duration
	halfOpenLimit, drainLimit                   time.Duration
	fdSlack, goroutineSlack                     int
	maxErrors                                   int
	seed                                        uint64
}

func soakFlags(fs *flag.FlagSet, c *soakConfig) {
	fs.StringVar(&c.proxyURL, "proxy", "", "URL of a proxy already running (ws://127.0.0.1:P/); its target must be -target")
	fs.StringVar(&c.proxyCmd, "proxy-cmd", "", "command template to start the proxy: {listen} {port} {target} {target_host} {target_port} {self}")
	fs.IntVar(&c.proxyPID, "proxy-pid", 0, "PID of a proxy given with -proxy, for memory and descriptor readings")
	fs.StringVar(&c.target, "target", "127.0.0.1:0", "address the target listens on (fix the port when the proxy was started by hand)")
	fs.StringVar(&c.label, "label", "", "name of the proxy in the results (default: derived from the command)")
	fs.StringVar(&c.proxyLog, "proxy-log", "", "file for the started proxy's stdout and stderr (default: a temporary file, removed at the end)")
	fs.BoolVar(&c.jsonOut, "json", false, "print the result as one JSON object on stdout (the table goes to stderr)")
	fs.DurationVar(&c.opTimeout, "op-timeout", 15*time.Second, "limit for one step of a session (dial, handshake, one message)")
	fs.StringVar(&c.commit, "commit", "", "what the proxy was built from, recorded in the result (git describe --always --dirty)")
}

func soakMain(args []string) error {
	c := &soakConfig{}
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	soakFlags(fs, c)
	fs.DurationVar(&c.duration, "duration", 30*time.Minute, "how long traffic and faults run")
	fs.IntVar(&c.sessions, "sessions", 200, "long-lived echo sessions")
	fs.IntVar(&c.bulkWorkers, "bulk", 2, "bulk transfers running at once (alternating download and upload)")
	fs.IntVar(&c.churnWorkers, "churn", 4, "connection-churn loops (connect, one echo, close)")
	fs.Float64Var(&c.b64Share, "base64", 0.25, "share of sessions using the base64 subprotocol")
	fs.DurationVar(&c.think, "think", 100*time.Millisecond, "mean pause between an echo session's messages")
	fs.DurationVar(&c.lifeMin, "life-min", 10*time.Second, "shortest life of an echo session")
	fs.DurationVar(&c.lifeMax, "life-max", 5*time.Minute, "longest life of an echo session")
	fs.Int64Var(&c.bulkMax, "bulk-max", 64<<20, "largest bulk transfer in bytes")
	fs.DurationVar(&c.faultEvery, "fault-every", time.Second, "pause between injected faults (0: none)")
	fs.DurationVar(&c.restartEvery, "restart-every", time.Minute, "pause between target restarts (0: none)")
	fs.DurationVar(&c.restartGap, "restart-gap", time.Second, "how long the target stays down")
	fs.DurationVar(&c.halfOpenLimit, "halfopen-limit", 45*time.Second, "a half-open or stalled client must be closed by the proxy within this")
	fs.DurationVar(&c.drainLimit, "drain", 15*time.Second, "wait for the proxy's sessions and descriptors to drain after the traffic")
	fs.IntVar(&c.fdSlack, "fd-slack", 4, "descriptors the proxy may hold above its count before traffic")
	fs.IntVar(&c.goroutineSlack, "goroutine-slack", 8, "goroutines the proxy may run above its count before traffic")
	fs.IntVar(&c.maxErrors, "max-errors", -1, "fail the run above this many unexpected session errors (-1: report only)")
	fs.DurationVar(&c.progress, "progress", 5*time.Second, "interval of the progress lines on stderr")
	fs.Uint64Var(&c.seed, "seed", 0, "seed of payloads and choices (0: from the clock); timing still differs between runs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := c.check(); err != nil {
		return err
	}
	armWatchdog(c.duration+c.drainLimit+c.halfOpenLimit+2*c.opTimeout+2*time.Minute, nil)
	res, err := runSoak(c, os.Stderr)
	runCleanups()
	if res != nil {
		printOutcome(c.jsonOut, res.table(), res)
	}
	if err != nil {
		return err
	}
	if !res.Pass {
		os.Exit(1)
	}
	return nil
}

func (c *soakConfig) check() error {
	if (c.proxyURL == "") == (c.proxyCmd == "") {
		return errors.New("give exactly one of -proxy and -proxy-cmd")
	}
	if c.label == "" {
		c.label = "proxy"
		if c.proxyCmd != "" {
			c.label = filepath.Base(strings.Fields(c.proxyCmd)[0])
		}
	}
	if c.proxyURL != "" && strings.HasSuffix(c.target, ":0") {
		return errors.New("with -proxy, give -target with the port the proxy forwards to")
	}
	if c.seed == 0 {
		c.seed = uint64(time.Now().UnixNano())
	}
	if c.lifeMax < c.lifeMin {
		c.lifeMax = c.lifeMin
	}
	if c.bulkMax < 1<<10 {
		c.bulkMax = 1 << 10
	}
	if c.progress <= 0 {
		c.progress = 5 * time.Second
	}
	return checkLoopback(c.target)
}

// soakEnv is a target (restartable) and a proxy, shared by soak and slow.
type soakEnv struct {
	client  *client
	proxy   *proxyProc // nil when started by hand
	pid     int        // 0 when unknown
	logPath string     // the proxy's log, "" when not ours to read
	tmu     sync.Mutex
	tgt     *targetProc
}

func startSoakEnv(proxyURL, proxyCmd, target, proxyLog, label string, pid int, opTimeout time.Duration) (*soakEnv, string, error) {
	tgt, err := startTarget(targetSoak, target, 0, false)
	if err != nil {
		return nil, "", fmt.Errorf("target: %w", err)
	}
	e := &soakEnv{tgt: tgt, pid: pid}
	proxyDesc := proxyURL
	if proxyCmd != "" {
		proxyDesc = proxyCmd
		e.logPath = proxyLog
		if e.logPath == "" {
			f, err := os.CreateTemp("", "loadtest-proxy-*.log")
			if err != nil {
				return nil, "", err
			}
			f.Close()
			e.logPath = f.Name()
			atCleanup(func() { os.Remove(f.Name()) })
		}
		p, err := startProxy(proxyCmd, tgt.addr, e.logPath)
		if err != nil {
			return nil, "", err
		}
		e.proxy, e.pid = p, p.pid()
		proxyURL = "ws://" + p.listen + "/"
	}
	e.client, err = newClient(proxyURL, false, opTimeout, 64<<10)
	if err != nil {
		return nil, "", err
	}
	if e.client.raw || e.client.tls {
		return nil, "", errors.New("soak and slow speak plain ws:// only")
	}
	return e, proxyDesc, nil
}

// soakStats are the counters every worker adds to.
type soakStats struct {
	sent, verified, corrupted atomic.Int64
	opened, open, churned     atomic.Int64
	roundTrips, bulkDone      atomic.Int64
	affected                  atomic.Int64
	mu                        sync.Mutex
	faults                    map[string]int64
	errs                      errorTally
	firstCorruption           string
	drops                     map[string]*dropStat
}

// dropStat is how one kind of half-open client fared: closed by the proxy
// (and the slowest time it took), or still waiting when the run ended.
type dropStat struct {
	Closed     int     `json:"closed"`
	MaxS       float64 `json:"max_s"`
	Unresolved int     `json:"unresolved"`
}

func (s *soakStats) dropped(kind string, after time.Duration, closed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.drops[kind]
	if d == nil {
		d = &dropStat{}
		s.drops[kind] = d
	}
	if closed {
		d.Closed++
		d.MaxS = max(d.MaxS, after.Seconds())
	} else {
		d.Unresolved++
	}
}

func (s *soakStats) fault(kind string) {
	s.mu.Lock()
	s.faults[kind]++
	s.mu.Unlock()
}

func (s *soakStats) fail(kind string, err error) {
	s.mu.Lock()
	if c := causeOf(err); c != "" {
		kind += " " + c
	}
	s.errs.add(&phaseError{kind, err})
	s.mu.Unlock()
}

// causeOf names the class of a session's end, for the error table; empty for
// time-outs, which errorTally marks itself.
func causeOf(err error) string {
	var cl *wsclient.CloseError
	var ne net.Error
	var pe *phaseError
	switch {
	case errors.As(err, &pe) && pe.phase == "handshake":
		return "handshake"
	case errors.As(err, &cl):
		return fmt.Sprintf("close-%d", cl.Code)
	case errors.As(err, &ne) && ne.Timeout():
		return ""
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	}
	return "other"
}

// check counts got against want; a difference is corruption, wherever it
// happened.
func (s *soakStats) check(what string, got, want []byte) {
	bad := diffCount(got, want)
	s.verified.Add(int64(len(got)))
	if bad > 0 {
		s.corrupted.Add(bad)
		s.mu.Lock()
		if s.firstCorruption == "" {
			i := 0
			for got[i] == want[i] {
				i++
			}
			s.firstCorruption = fmt.Sprintf("%s: byte %d of %d is %#02x, want %#02x", what, i, len(got), got[i], want[i])
		}
		s.mu.Unlock()
	}
}

// soakRun is one soak in progress.
type soakRun struct {
	cfg           *soakConfig
	env           *soakEnv
	st            soakStats
	stop          atomic.Bool
	done          chan struct{} // closed when the traffic phase ends
	epoch         atomic.Int64  // target restarts: odd while the target is down
	restartBroken atomic.Bool   // the target could not be started again
	wg            sync.WaitGroup
}

func (r *soakRun) stopping() bool { return r.stop.Load() }

// affected says whether a session that started at epoch e may have been hit
// by a target restart.
func (r *soakRun) affected(e int64) bool { return e%2 == 1 || r.epoch.Load() != e }

// ended classifies how a session ended. Only a target restart excuses an
// end, and then the proxy must have sent a close frame.
func (r *soakRun) ended(kind string, err error, e int64) {
	if err == nil {
		return
	}
	var cl *wsclient.CloseError
	switch {
	case r.affected(e) && errors.As(err, &cl):
		r.st.affected.Add(1)
	case r.affected(e):
		r.st.fail(kind+"-restart-no-close-frame", err)
	case r.stopping() && isOurDeadline(err):
		// Cut off by the end of the run.
	default:
		r.st.fail(kind, err)
	}
}

func isOurDeadline(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func runSoak(c *soakConfig, progress io.Writer) (*soakResult, error) {
	env, desc, err := startSoakEnv(c.proxyURL, c.proxyCmd, c.target, c.proxyLog, c.label, c.proxyPID, c.opTimeout)
	if err != nil {
		return nil, err
	}
	r := &soakRun{cfg: c, env: env, done: make(chan struct{})}
	r.st.faults = map[string]int64{}
	r.st.drops = map[string]*dropStat{}
	r.warmUp()
	res := &soakResult{Mode: "soak", Label: c.label, Proxy: desc, Commit: c.commit, Time: time.Now().UTC().Format(time.RFC3339), Seed: c.seed}
	res.ProxyBefore = r.baseline()

	mem := startMemPeak(env.pid, time.Second)
	start := time.Now()
	rng := mrand.New(mrand.NewPCG(c.seed, 1))
	for i := 0; i < c.sessions; i++ {
		b64 := rng.Float64() < c.b64Share // drawn here: rng is not for sharing
		r.spawn(func() { r.echoWorker(uint64(i), b64) })
	}
	for i := 0; i < c.bulkWorkers; i++ {
		r.spawn(func() { r.bulkWorker(uint64(i), i%2 == 1 && c.b64Share > 0) })
	}
	for i := 0; i < c.churnWorkers; i++ {
		r.spawn(func() { r.churnWorker(uint64(i)) })
	}
	if c.faultEvery > 0 {
		r.spawn(r.faultLoop)
	}
	if c.restartEvery > 0 {
		r.spawn(r.restartLoop)
	}
	ticker := time.NewTicker(c.progress)
	timer := time.NewTimer(c.duration)
	var proxyErr error
wait:
	for {
		select {
		case <-ticker.C:
			fmt.Fprintln(progress, r.progressLine(time.Since(start), mem))
			if env.proxy != nil {
				if proxyErr = env.proxy.alive(); proxyErr != nil {
					break wait
				}
			}
		case <-timer.C:
			break wait
		}
	}
	ticker.Stop()
	r.stop.Store(true)
	close(r.done)
	workersDone := make(chan struct{})
	go func() { r.wg.Wait(); close(workersDone) }()
	select {
	case <-workersDone:
	case <-time.After(c.opTimeout + c.drainLimit):
		r.st.fail("drain", errors.New("workers still busy after the run; result taken anyway"))
	}
	res.DurationS = time.Since(start).Seconds()
	fmt.Fprintln(progress, r.progressLine(time.Since(start), mem))
	if proxyErr == nil && env.proxy != nil {
		proxyErr = env.proxy.alive()
	}
	if proxyErr == nil {
		res.ProxyAfter = r.drainedStatus(res.ProxyBefore)
	}
	res.ProxyRSSPeak, res.ProxyPrivateDirtyPeak = mem.stop()
	res.ProxyRSSAfter, _ = mem.rssNowAndPeak()
	r.fill(res, proxyErr)
	return res, nil
}

// warmUp opens and closes a few sessions at once before the baseline
// reading, so what a proxy creates once and keeps (per-loop state, pools)
// is not mistaken for a leak.
func (r *soakRun) warmUp() {
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c, err := dialSoak(background, r.env.client, i%2 == 1); err == nil {
				c.deadline(r.cfg.opTimeout)
				if c.write([]byte{opEcho, 'w'}) == nil {
					var p [1]byte
					_, _ = c.readFull(p[:])
				}
				c.close()
			}
		}()
	}
	wg.Wait()
	time.Sleep(time.Second)
}

func (r *soakRun) spawn(f func()) {
	r.wg.Add(1)
	go func() { defer r.wg.Done(); f() }()
}

// pause sleeps d or until the run ends; false when it ended.
func (r *soakRun) pause(d time.Duration) bool {
	select {
	case <-r.done:
		return false
	case <-time.After(d):
		return true
	}
}

func (r *soakRun) dial(b64 bool) (*soakConn, int64, error) {
	e := r.epoch.Load()
	c, err := dialSoak(background, r.env.client, b64)
	if err == nil {
		r.st.opened.Add(1)
	}
	return c, e, err
}

// echoWorker keeps one long-lived echo session open at a time, sending
// pseudo-random messages of 1 B to 256 KiB and checking every echoed byte.
func (r *soakRun) echoWorker(id uint64, b64 bool) {
	rng := mrand.New(mrand.NewPCG(r.cfg.seed, 100+id))
	src := stream(r.cfg.seed ^ (id << 20))
	// Stagger the start so the sessions do not all open in the same second.
	if !r.pause(time.Duration(rng.Int64N(int64(min(r.cfg.duration/10, 2*time.Second)) + 1))) {
		return
	}
	for !r.stopping() {
		life := r.cfg.lifeMin + time.Duration(rng.Int64N(int64(r.cfg.lifeMax-r.cfg.lifeMin)+1))
		if err := r.echoSession(rng, src, b64, time.Now().Add(life)); err != nil {
			r.pause(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		}
	}
}

func (r *soakRun) echoSession(rng *mrand.Rand, src io.Reader, b64 bool, until time.Time) error {
	c, e, err := r.dial(b64)
	if err != nil {
		r.ended("echo-open", err, e)
		return err
	}
	r.st.open.Add(1)
	defer r.st.open.Add(-1)
	c.deadline(r.cfg.opTimeout)
	if err := c.write([]byte{opEcho}); err != nil {
		err = c.cause(err)
		c.close()
		r.ended("echo", err, e)
		return err
	}
	buf := make([]byte, 256<<10)
	got := make([]byte, 256<<10)
	for !r.stopping() && time.Now().Before(until) {
		n := logUniform(rng.Float64(), 1, 256<<10)
		msg := buf[:n]
		_, _ = src.Read(msg)
		c.deadline(r.cfg.opTimeout)
		// Written from a second goroutine: a 256 KiB message may not fit
		// in the socket buffers before its echo has to be read.
		werr := make(chan error, 1)
		cuts := rng.IntN(3)
		go func() { werr <- c.writeSplit(msg, cuts, rng2(n)) }()
		k, err := c.readFull(got[:n])
		if err != nil {
			c.reset() // unblocks the writer
		}
		if wErr := <-werr; err == nil && wErr != nil {
			err = wErr
		}
		r.st.sent.Add(int64(n))
		r.st.check("echo", got[:k], msg[:k])
		if err != nil {
			r.ended("echo", err, e)
			return err
		}
		r.st.roundTrips.Add(1)
		if r.cfg.think > 0 && !r.pause(time.Duration(rng.Int64N(2*int64(r.cfg.think)+1))) {
			break
		}
	}
	c.close()
	return nil
}

// rng2 is a cut-point picker for writeSplit that owns its state, because the
// writer goroutine must not share the worker's generator.
func rng2(seed int) func(int) int {
	g := mrand.New(mrand.NewPCG(uint64(seed), 7))
	return func(n int) int { return g.IntN(n) }
}

// bulkWorker alternates downloads and uploads of 1 KiB .. bulkMax.
func (r *soakRun) bulkWorker(id uint64, b64 bool) {
	rng := mrand.New(mrand.NewPCG(r.cfg.seed, 200+id))
	for i := 0; !r.stopping(); i++ {
		n := int64(logUniform(rng.Float64(), 1<<10, int(r.cfg.bulkMax)))
		var err error
		if (i+int(id))%2 == 0 {
			err = r.bulkDown(rng.Uint64(), n, b64, -1)
		} else {
			err = r.bulkUp(rng.Uint64(), n, b64, rng)
		}
		if err != nil {
			r.pause(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		}
	}
}

// bulkDown has the target send n bytes of seed's stream and verifies them.
// With resetAfter >= 0 it resets the connection after that many bytes (the
// client-reset fault).
func (r *soakRun) bulkDown(seed uint64, n int64, b64 bool, resetAfter int64) error {
	kind := "bulk-down"
	if resetAfter >= 0 {
		kind = "client-reset"
	}
	c, e, err := r.dial(b64)
	if err != nil {
		r.ended(kind+"-open", err, e)
		return err
	}
	r.st.open.Add(1)
	defer r.st.open.Add(-1)
	c.deadline(r.cfg.opTimeout)
	if err := c.write(opHeader(opDown, seed, uint64(n))); err != nil {
		err = c.cause(err)
		c.close()
		r.ended(kind, err, e)
		return err
	}
	want := stream(seed)
	got, exp := make([]byte, 64<<10), make([]byte, 64<<10)
	var read int64
	for read < n {
		if resetAfter >= 0 && read >= resetAfter {
			c.reset()
			return nil
		}
		if r.stopping() {
			c.close()
			return nil
		}
		c.deadline(r.cfg.opTimeout)
		k, err := c.read(got[:min(int64(len(got)), n-read)])
		if k > 0 {
			_, _ = want.Read(exp[:k])
			r.st.check(kind, got[:k], exp[:k])
			read += int64(k)
		}
		if err != nil {
			c.close()
			r.ended(kind, err, e)
			return err
		}
	}
	c.close()
	r.st.bulkDone.Add(1)
	return nil
}

// bulkUp sends n bytes of seed's stream in frames of varied size; the target
// checks them and answers how many differed.
func (r *soakRun) bulkUp(seed uint64, n int64, b64 bool, rng *mrand.Rand) error {
	c, e, err := r.dial(b64)
	if err != nil {
		r.ended("bulk-up-open", err, e)
		return err
	}
	r.st.open.Add(1)
	defer r.st.open.Add(-1)
	c.deadline(r.cfg.opTimeout)
	if err := c.write(opHeader(opUp, seed, uint64(n))); err != nil {
		err = c.cause(err)
		c.close()
		r.ended("bulk-up", err, e)
		return err
	}
	src := stream(seed)
	buf := make([]byte, 256<<10)
	for left := n; left > 0; {
		if r.stopping() {
			c.close()
			return nil
		}
		k := int64(logUniform(rng.Float64(), 1, len(buf)))
		k = min(k, left)
		_, _ = src.Read(buf[:k])
		c.deadline(r.cfg.opTimeout)
		if err := c.write(buf[:k]); err != nil {
			err = c.cause(err)
			c.close()
			r.ended("bulk-up", err, e)
			return err
		}
		left -= k
		r.st.sent.Add(k)
	}
	var ans [8]byte
	c.deadline(r.cfg.opTimeout)
	_, err = c.readFull(ans[:])
	c.close()
	if err != nil {
		r.ended("bulk-up", err, e)
		return err
	}
	// An answer above n is itself corrupt; n bytes is the most it can mean.
	bad := int64(min(binary.BigEndian.Uint64(ans[:]), uint64(n)))
	r.st.verified.Add(n)
	if bad > 0 {
		r.st.corrupted.Add(bad)
		r.st.mu.Lock()
		if r.st.firstCorruption == "" {
			r.st.firstCorruption = fmt.Sprintf("bulk-up: the target saw %d of %d bytes differ", bad, n)
		}
		r.st.mu.Unlock()
	}
	r.st.bulkDone.Add(1)
	return nil
}

// churnWorker opens, echoes one short message, and closes, again and again.
func (r *soakRun) churnWorker(id uint64) {
	rng := mrand.New(mrand.NewPCG(r.cfg.seed, 300+id))
	for !r.stopping() {
		b64 := rng.Float64() < r.cfg.b64Share
		if err := r.churnOnce(rng, b64); err != nil {
			r.pause(time.Duration(50+rng.IntN(200)) * time.Millisecond)
		}
		r.pause(time.Duration(rng.IntN(20)) * time.Millisecond)
	}
}

func (r *soakRun) churnOnce(rng *mrand.Rand, b64 bool) error {
	c, e, err := r.dial(b64)
	if err != nil {
		r.ended("churn-open", err, e)
		return err
	}
	defer c.close()
	msg := make([]byte, 1+1+rng.IntN(64))
	msg[0] = opEcho
	for i := 1; i < len(msg); i++ {
		msg[i] = byte(rng.Uint32())
	}
	c.deadline(r.cfg.opTimeout)
	if err := c.write(msg); err != nil {
		r.ended("churn", c.cause(err), e)
		return err
	}
	got := make([]byte, len(msg)-1)
	k, err := c.readFull(got)
	r.st.sent.Add(int64(len(got)))
	r.st.check("churn", got[:k], msg[1:1+k])
	if err != nil {
		r.ended("churn", err, e)
		return err
	}
	r.st.churned.Add(1)
	return nil
}

// Fault kinds, injected in turn by faultLoop; target restarts have their own
// schedule.
var faultKinds = []string{"client_reset", "halfopen_silent", "halfopen_partial", "stalled_handshake", "garbage", "bad_frame"}

const faultRestart = "target_restart"

func (r *soakRun) faultLoop() {
	rng := mrand.New(mrand.NewPCG(r.cfg.seed, 400))
	// Half-open probes wait for the proxy's timeouts (up to ~30 s); the
	// semaphore bounds how many sockets they hold.
	sem := make(chan struct{}, 32)
	for i := 0; r.pause(r.cfg.faultEvery); i++ {
		kind := faultKinds[i%len(faultKinds)]
		seed := rng.Uint64()
		select {
		case sem <- struct{}{}:
		default:
			continue
		}
		r.st.fault(kind)
		r.spawn(func() {
			defer func() { <-sem }()
			r.injectFault(kind, seed)
		})
	}
}

func (r *soakRun) injectFault(kind string, seed uint64) {
	rng := mrand.New(mrand.NewPCG(seed, 401))
	switch kind {
	case "client_reset":
		// Mid-download, or mid-echo of a large message.
		if rng.IntN(2) == 0 {
			_ = r.bulkDown(seed, 64<<20, false, int64(rng.IntN(1<<20)))
		} else {
			r.resetMidEcho(rng)
		}
	case "halfopen_silent":
		r.expectDropped(kind, nil, 0)
	case "halfopen_partial":
		r.expectDropped(kind, []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"), 0)
	case "stalled_handshake":
		// One byte every 500 ms: the request head never completes in time.
		r.expectDropped(kind, []byte(handshakeHead()), 500*time.Millisecond)
	case "garbage":
		g := make([]byte, 1+rng.IntN(2048))
		_, _ = stream(seed).Read(g)
		// Not a TLS ClientHello nor anything else a proxy could wait on
		// for more: the head ends, and it is nonsense.
		g[0] = 'X'
		g = append(g, "\r\n\r\n"...)
		r.expectDropped(kind, g, 0)
	case "bad_frame":
		r.badFrame(rng)
	}
}

func handshakeHead() string {
	return "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n"
}

// resetMidEcho sends half of a large echo message and resets.
func (r *soakRun) resetMidEcho(rng *mrand.Rand) {
	c, e, err := r.dial(false)
	if err != nil {
		r.ended("client-reset-open", err, e)
		return
	}
	c.deadline(r.cfg.opTimeout)
	msg := make([]byte, 1+(256<<10))
	msg[0] = opEcho
	wire := c.s.frame(msg)
	if _, err := c.s.conn.Write(wire[:len(wire)/2+rng.IntN(len(wire)/4)]); err != nil {
		r.ended("client-reset", err, e)
	}
	c.reset()
}

// expectDropped connects without a WebSocket handshake, sends prefix (one
// byte per drip if drip > 0), and then waits for the proxy to close the
// connection. Anything the proxy sends meanwhile (an HTTP error) is fine;
// still being open after halfOpenLimit is not.
func (r *soakRun) expectDropped(kind string, prefix []byte, drip time.Duration) {
	conn, err := net.DialTimeout("tcp", r.env.client.addr, r.cfg.opTimeout)
	if err != nil {
		r.st.fail(kind, &phaseError{"dial", err})
		return
	}
	defer conn.Close()
	start := time.Now()
	limit := start.Add(r.cfg.halfOpenLimit)
	closed := make(chan error, 1)
	go func() {
		_ = conn.SetReadDeadline(limit)
		_, err := io.Copy(io.Discard, conn)
		closed <- err
	}()
	finish := func(err error) {
		if isOurDeadline(err) {
			r.st.fail(kind, fmt.Errorf("the proxy kept the connection open for %v", r.cfg.halfOpenLimit))
			return
		}
		// EOF (nil from io.Copy) or a reset: the proxy let go.
		r.st.dropped(kind, time.Since(start), true)
	}
	if drip == 0 && len(prefix) > 0 {
		_ = conn.SetWriteDeadline(time.Now().Add(r.cfg.opTimeout))
		_, _ = conn.Write(prefix)
	}
	for i := 0; ; i++ {
		step := time.Second
		if drip > 0 {
			step = drip
		}
		select {
		case err := <-closed:
			finish(err)
			return
		case <-r.done:
			// The run ended before the proxy's timeout: not a verdict.
			r.st.dropped(kind, 0, false)
			return
		case <-time.After(step):
		}
		if drip > 0 && i < len(prefix) {
			_ = conn.SetWriteDeadline(time.Now().Add(r.cfg.opTimeout))
			_, _ = conn.Write(prefix[i : i+1])
		}
	}
}

// badFrame completes a handshake and one echo, then sends a frame that breaks
// RFC 6455. The proxy must answer close 1002 or drop the connection, and
// must not pass anything on.
func (r *soakRun) badFrame(rng *mrand.Rand) {
	c, e, err := r.dial(false)
	if err != nil {
		r.ended("bad_frame-open", err, e)
		return
	}
	defer c.reset()
	c.deadline(r.cfg.opTimeout)
	if err := c.write([]byte{opEcho, 'o', 'k'}); err != nil {
		r.ended("bad_frame", err, e)
		return
	}
	got := make([]byte, 2)
	k, err := c.readFull(got)
	r.st.check("bad_frame", got[:k], []byte("ok")[:k])
	if err != nil {
		r.ended("bad_frame", err, e)
		return
	}
	var wire []byte
	var what string
	bad := []byte("bad")
	switch rng.IntN(5) {
	case 0:
		what, wire = "unmasked client frame", wsclient.AppendFrame(nil, wsclient.Frame{Fin: true, Op: ws.OpBinary, Payload: bad}, nil)
	case 1:
		what, wire = "reserved opcode 3", c.s.ws.Encode(wsclient.Frame{Fin: true, Op: 0x3, Payload: bad})
	case 2:
		what, wire = "RSV1 without an extension", c.s.ws.Encode(wsclient.Frame{Fin: true, Rsv: 4, Op: ws.OpBinary, Payload: bad})
	case 3:
		what, wire = "continuation with no message", c.s.ws.Encode(wsclient.Frame{Fin: true, Op: ws.OpContinuation, Payload: bad})
	default:
		what, wire = "fragmented ping", c.s.ws.Encode(wsclient.Frame{Op: ws.OpPing, Payload: bad})
	}
	if _, err := c.s.conn.Write(wire); err != nil {
		return // already dropped
	}
	for {
		var p [64]byte
		n, err := c.read(p[:])
		if n > 0 {
			r.st.fail("bad_frame", fmt.Errorf("%s: the proxy passed %d bytes on", what, n))
			return
		}
		var cl *wsclient.CloseError
		switch {
		case err == nil:
			continue
		case errors.As(err, &cl) && cl.Code != 1002:
			if r.affected(e) {
				r.st.affected.Add(1)
				return
			}
			r.st.fail("bad_frame", fmt.Errorf("%s: want close 1002, got %v", what, err))
			return
		case isOurDeadline(err):
			r.st.fail("bad_frame", fmt.Errorf("%s: no close", what))
			return
		default:
			return // 1002, EOF or reset: all fine
		}
	}
}

// restartLoop kills the target child now and then, and starts it again on
// the same port while sessions are live.
func (r *soakRun) restartLoop() {
	for r.pause(r.cfg.restartEvery) {
		r.st.fault(faultRestart)
		if err := r.restartTarget(); err != nil {
			// Every later session would look fault-affected; say so loudly.
			r.st.fail(faultRestart, err)
			r.restartBroken.Store(true)
			return
		}
	}
}

func (r *soakRun) restartTarget() error {
	r.env.tmu.Lock()
	old := r.env.tgt
	r.env.tmu.Unlock()
	r.epoch.Add(1) // odd: down
	old.stop()
	// During the gap the proxy must still complete the handshake and then
	// say 1011: it cannot reach the target.
	gapEnd := time.Now().Add(r.cfg.restartGap)
	r.gapProbe()
	time.Sleep(time.Until(gapEnd))
	var tgt *targetProc
	var err error
	for try := 0; try < 20; try++ {
		if tgt, err = startTarget(targetSoak, old.addr, 0, false); err == nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("restart on %s: %w", old.addr, err)
	}
	r.env.tmu.Lock()
	r.env.tgt = tgt
	r.env.tmu.Unlock()
	r.epoch.Add(1) // even: up
	// And afterwards sessions work again.
	return r.probeWorks()
}

func (r *soakRun) gapProbe() {
	c, err := dialSoak(background, r.env.client, false)
	if err != nil {
		r.st.fail("restart-gap", err)
		return
	}
	defer c.reset()
	c.deadline(r.cfg.opTimeout)
	_ = c.write([]byte{opEcho, 'x'})
	var p [1]byte
	_, err = c.readFull(p[:])
	var cl *wsclient.CloseError
	if !errors.As(err, &cl) || cl.Code != 1011 {
		r.st.fail("restart-gap", fmt.Errorf("want close 1011 while the target is down, got %v", err))
	}
}

func (r *soakRun) probeWorks() error {
	c, err := dialSoak(background, r.env.client, false)
	if err != nil {
		return fmt.Errorf("after restart: %w", err)
	}
	defer c.close()
	c.deadline(r.cfg.opTimeout)
	if err := c.write([]byte{opEcho, 'u', 'p'}); err != nil {
		return fmt.Errorf("after restart: %w", err)
	}
	got := make([]byte, 2)
	k, err := c.readFull(got)
	r.st.check("restart-probe", got[:k], []byte("up")[:k])
	if err != nil {
		r.st.fail("after-restart", err)
	}
	return nil
}

func (r *soakRun) progressLine(el time.Duration, mem *memPeak) string {
	now, peak := mem.rssNowAndPeak()
	r.st.mu.Lock()
	var nf int64
	for _, v := range r.st.faults {
		nf += v
	}
	nerr := r.st.errs.total()
	r.st.mu.Unlock()
	rssText := "?"
	if peak > 0 {
		rssText = fmt.Sprintf("%.1f MiB (peak %.1f)", float64(now)/(1<<20), float64(peak)/(1<<20))
	}
	return fmt.Sprintf("soak %5.0fs  open %4d  opened %7d  verified %9.1f MB  corrupt %d  faults %5d  errors %d  rss %s",
		el.Seconds(), r.st.open.Load(), r.st.opened.Load(), float64(r.st.verified.Load())/1e6,
		r.st.corrupted.Load(), nf, nerr, rssText)
}

// proxyStatus is what is known about the proxy at one moment.
type proxyStatus struct {
	FDs        int            `json:"fds"`        // /proc/PID/fd entries; -1 unknown
	Goroutines *int           `json:"goroutines"` // from the status line; null when the proxy prints none
	Sessions   *int           `json:"sessions"`
	FDKinds    map[string]int `json:"fd_kinds,omitempty"` // socket, pipe, eventpoll, file, ...
}

func (p *proxyStatus) String() string {
	opt := func(v *int) string {
		if v == nil {
			return "unknown"
		}
		return strconv.Itoa(*v)
	}
	fds := "unknown"
	if p.FDs >= 0 {
		fds = strconv.Itoa(p.FDs)
	}
	kinds := make([]string, 0, len(p.FDKinds))
	for k, n := range p.FDKinds {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
	}
	slices.Sort(kinds)
	if len(kinds) > 0 {
		fds += " (" + strings.Join(kinds, ", ") + ")"
	}
	return fmt.Sprintf("fds %s, goroutines %s, sessions %s", fds, opt(p.Goroutines), opt(p.Sessions))
}

func (r *soakRun) proxyStatus() *proxyStatus { return readProxyStatus(r.env.pid, r.env.logPath) }

// readProxyStatus counts the proxy's descriptors and, when the proxy catches
// SIGUSR1 and we have its log, asks it for its status line.
func readProxyStatus(pid int, logPath string) *proxyStatus {
	st := &proxyStatus{FDs: -1}
	if pid == 0 {
		return st
	}
	// The whole tree: --workers processes, or Python's forked children,
	// hold descriptors of their own.
	for _, p := range processTree(pid) {
		dir := fmt.Sprintf("/proc/%d/fd", p)
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		if st.FDs < 0 {
			st.FDs, st.FDKinds = 0, map[string]int{}
		}
		st.FDs += len(ents)
		// By kind, so a leak report says what leaked.
		for _, e := range ents {
			l, err := os.Readlink(filepath.Join(dir, e.Name()))
			if err != nil {
				continue
			}
			kind := "file"
			if k, rest, ok := strings.Cut(l, ":"); ok && !strings.HasPrefix(l, "/") {
				kind = k
				if k == "anon_inode" {
					kind = strings.Trim(rest, "[]")
				}
			}
			st.FDKinds[kind]++
		}
	}
	// A process that does not catch SIGUSR1 would die of it (Python's
	// websockify does not).
	if logPath == "" || !catchesSignal(pid, syscall.SIGUSR1) {
		return st
	}
	before := len(statusLines(logPath))
	if syscall.Kill(pid, syscall.SIGUSR1) != nil {
		return st
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if len(statusLines(logPath)) > before {
			// With --workers each worker answers on its own; give the
			// others a moment, then sum the latest line of each.
			time.Sleep(300 * time.Millisecond)
			latest := map[int]statusLine{}
			for _, l := range statusLines(logPath)[before:] {
				latest[l.pid] = l
			}
			var sess, gor int
			for _, l := range latest {
				sess += l.sessions
				gor += l.goroutines
			}
			st.Sessions, st.Goroutines = &sess, &gor
			return st
		}
	}
	return st
}

// statusLineRE matches our websockify's answer to SIGUSR1; pid= is absent
// in older builds.
var statusLineRE = regexp.MustCompile(`status: sessions=(\d+) goroutines=(\d+) fds=(\d+)(?: pid=(\d+))?`)

type statusLine struct{ pid, sessions, goroutines int }

// statusLines returns every status line in the proxy's log, in order.
func statusLines(path string) []statusLine {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []statusLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if m := statusLineRE.FindSubmatch(sc.Bytes()); m != nil {
			var l statusLine
			l.sessions, _ = strconv.Atoi(string(m[1]))
			l.goroutines, _ = strconv.Atoi(string(m[2]))
			l.pid, _ = strconv.Atoi(string(m[4]))
			out = append(out, l)
		}
	}
	return out
}

// catchesSignal reads the SigCgt mask of /proc/PID/status.
func catchesSignal(pid int, sig syscall.Signal) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<(uint(sig)-1)) != 0
		}
	}
	return false
}

// baseline is the reading before traffic: the lowest of a few, because the
// warm-up's sessions may still be winding down.
func (r *soakRun) baseline() *proxyStatus {
	best := r.proxyStatus()
	for i := 0; i < 4; i++ {
		time.Sleep(500 * time.Millisecond)
		st := r.proxyStatus()
		if st.FDs >= 0 && st.FDs < best.FDs {
			best = st
		}
	}
	return best
}

// drainedStatus polls until the proxy is back to its counts before the
// traffic or the drain limit passes, and returns the last reading; the
// slack is applied only when judging it.
func (r *soakRun) drainedStatus(before *proxyStatus) *proxyStatus {
	deadline := time.Now().Add(r.cfg.drainLimit)
	for {
		st := r.proxyStatus()
		back := st.FDs <= before.FDs && (st.Sessions == nil || *st.Sessions == 0) &&
			(st.Goroutines == nil || before.Goroutines == nil || *st.Goroutines <= *before.Goroutines)
		if back || time.Now().After(deadline) {
			return st
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// leaks compares after with before; each entry is one failure.
func (r *soakRun) leaks(before, after *proxyStatus) []string {
	var out []string
	if before.FDs >= 0 && after.FDs > before.FDs+r.cfg.fdSlack {
		out = append(out, fmt.Sprintf("descriptor leak: %d before, %d after", before.FDs, after.FDs))
	}
	if before.Goroutines != nil && after.Goroutines != nil && *after.Goroutines > *before.Goroutines+r.cfg.goroutineSlack {
		out = append(out, fmt.Sprintf("goroutine leak: %d before, %d after", *before.Goroutines, *after.Goroutines))
	}
	if after.Sessions != nil && *after.Sessions > 0 {
		out = append(out, fmt.Sprintf("session leak: the proxy still counts %d sessions", *after.Sessions))
	}
	return out
}

// memPeak samples the proxy tree's memory in the background.
type memPeak struct {
	pid       int
	mu        sync.Mutex
	rss, priv int64
	last      int64 // the latest RSS reading
	quit      chan struct{}
	done      chan struct{}
}

func startMemPeak(pid int, every time.Duration) *memPeak {
	m := &memPeak{pid: pid, quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			m.sample()
			select {
			case <-m.quit:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *memPeak) sample() {
	if m.pid == 0 {
		return
	}
	s := treeMemory(m.pid)
	m.mu.Lock()
	m.rss, m.priv = max(m.rss, s.RSS), max(m.priv, s.PrivateDirty)
	m.last = s.RSS
	m.mu.Unlock()
}

func (m *memPeak) rssNowAndPeak() (int64, int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last, m.rss
}

func (m *memPeak) stop() (rss, privateDirty int64) {
	close(m.quit)
	<-m.done
	m.sample()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rss, m.priv
}

// soakResult is the soak's JSON object.
type soakResult struct {
	Mode                  string               `json:"mode"`
	Label                 string               `json:"label"`
	Proxy                 string               `json:"proxy"`
	Commit                string               `json:"commit,omitempty"`
	Time                  string               `json:"time"`
	Seed                  uint64               `json:"seed"`
	DurationS             float64              `json:"duration"`
	BytesSent             int64                `json:"bytes_sent"`
	BytesVerified         int64                `json:"bytes_verified"`
	CorruptedBytes        int64                `json:"corrupted_bytes"`
	FirstCorruption       string               `json:"first_corruption,omitempty"`
	SessionsOpened        int64                `json:"sessions_opened"`
	EchoRoundTrips        int64                `json:"echo_round_trips"`
	ChurnSessions         int64                `json:"churn_sessions"`
	BulkTransfers         int64                `json:"bulk_transfers"`
	Faults                map[string]int64     `json:"faults"`
	FaultAffected         int64                `json:"fault_affected_sessions"`
	HalfOpen              map[string]*dropStat `json:"halfopen"`
	UnexpectedErrors      int                  `json:"unexpected_errors"`
	Errors                errorTally           `json:"errors"`
	ProxyBefore           *proxyStatus         `json:"proxy_before"`
	ProxyAfter            *proxyStatus         `json:"proxy_after"`
	ProxyRSSPeak          int64                `json:"proxy_rss_peak"`
	ProxyRSSAfter         int64                `json:"proxy_rss_after"` // after the drain: a steady climb shows here
	ProxyPrivateDirtyPeak int64                `json:"proxy_private_dirty_peak"`
	Failures              []string             `json:"failures"`
	Pass                  bool                 `json:"pass"`
}

func (r *soakRun) fill(res *soakResult, proxyErr error) {
	st := &r.st
	st.mu.Lock()
	defer st.mu.Unlock()
	res.BytesSent, res.BytesVerified, res.CorruptedBytes = st.sent.Load(), st.verified.Load(), st.corrupted.Load()
	res.FirstCorruption = st.firstCorruption
	res.SessionsOpened, res.EchoRoundTrips = st.opened.Load(), st.roundTrips.Load()
	res.ChurnSessions, res.BulkTransfers = st.churned.Load(), st.bulkDone.Load()
	res.Faults = map[string]int64{}
	for _, k := range append(slices.Clone(faultKinds), faultRestart) {
		res.Faults[k] = st.faults[k]
	}
	res.FaultAffected = st.affected.Load()
	res.HalfOpen = st.drops
	res.Errors = st.errs
	if res.Errors.Count == nil {
		res.Errors = errorTally{Count: map[string]int{}, Example: map[string]string{}}
	}
	res.UnexpectedErrors = st.errs.total()
	res.Failures = []string{}
	if res.CorruptedBytes > 0 {
		res.Failures = append(res.Failures, fmt.Sprintf("%d corrupted bytes (%s)", res.CorruptedBytes, res.FirstCorruption))
	}
	if proxyErr != nil {
		res.Failures = append(res.Failures, proxyErr.Error())
	}
	if r.restartBroken.Load() {
		why := ""
		for k, v := range st.errs.Example {
			if strings.HasPrefix(k, faultRestart) {
				why = v
			}
		}
		res.Failures = append(res.Failures, "the target did not come back after a restart: "+why)
	}
	if res.ProxyAfter != nil {
		res.Failures = append(res.Failures, r.leaks(res.ProxyBefore, res.ProxyAfter)...)
	}
	if r.cfg.maxErrors >= 0 && res.UnexpectedErrors > r.cfg.maxErrors {
		res.Failures = append(res.Failures, fmt.Sprintf("%d unexpected errors (limit %d)", res.UnexpectedErrors, r.cfg.maxErrors))
	}
	res.Pass = len(res.Failures) == 0
}

// table is the human-readable summary.
func (res *soakResult) table() string {
	var b bytes.Buffer
	row := func(k, format string, a ...any) { fmt.Fprintf(&b, "  %-26s "+format+"\n", append([]any{k}, a...)...) }
	fmt.Fprintf(&b, "soak of %s (%s), %.0f s, seed %d\n", res.Label, res.Proxy, res.DurationS, res.Seed)
	row("bytes sent", "%d", res.BytesSent)
	row("bytes verified", "%d", res.BytesVerified)
	row("corrupted bytes", "%d", res.CorruptedBytes)
	row("sessions opened", "%d", res.SessionsOpened)
	row("echo round trips", "%d", res.EchoRoundTrips)
	row("churn sessions", "%d", res.ChurnSessions)
	row("bulk transfers", "%d", res.BulkTransfers)
	kinds := append(slices.Clone(faultKinds), faultRestart)
	for _, k := range kinds {
		row("fault "+k, "%d", res.Faults[k])
	}
	row("fault-affected sessions", "%d (ended with a close frame)", res.FaultAffected)
	for _, k := range faultKinds[1:5] {
		if d := res.HalfOpen[k]; d != nil {
			row("  "+k, "closed by the proxy %d (slowest %.1f s), open at the end %d", d.Closed, d.MaxS, d.Unresolved)
		}
	}
	row("unexpected errors", "%d", res.UnexpectedErrors)
	keys := make([]string, 0, len(res.Errors.Count))
	for k := range res.Errors.Count {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		row("  "+k, "%d, e.g. %s", res.Errors.Count[k], res.Errors.Example[k])
	}
	if res.ProxyBefore != nil {
		row("proxy before", "%s", res.ProxyBefore)
	}
	if res.ProxyAfter != nil {
		row("proxy after", "%s", res.ProxyAfter)
	}
	row("proxy RSS peak", "%.1f MiB (private dirty %.1f MiB); %.1f MiB after the drain",
		float64(res.ProxyRSSPeak)/(1<<20), float64(res.ProxyPrivateDirtyPeak)/(1<<20), float64(res.ProxyRSSAfter)/(1<<20))
	if res.Pass && res.UnexpectedErrors > 0 {
		fmt.Fprintf(&b, "PASS (no corruption, no leak; but %d unexpected errors: -max-errors 0 fails on them)\n", res.UnexpectedErrors)
	} else if res.Pass {
		b.WriteString("PASS\n")
	} else {
		for _, f := range res.Failures {
			fmt.Fprintf(&b, "FAIL: %s\n", f)
		}
	}
	return b.String()
}
