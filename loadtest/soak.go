package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gowebsockify/websockify/wsclient"
)

// The soak mode runs a proxy for a long time under a mix of verified traffic
// and faults, and checks that no byte was ever wrong and that nothing leaked.

// targetSoak is the target kind the soak and slow modes use (protocol in
// soakwire.go).
const targetSoak = "soak"

// soakConfig is the soak mode's flags.
type soakConfig struct {
	proxyURL, proxyCmd, target, label, proxyLog string
	commit                                      string
	proxyPID                                    int
	jsonOut                                     bool
	duration, opTimeout, progress               time.Duration
	sessions, bulkWorkers, churnWorkers         int
	slowReaders, halfClosers, fragmenters       int
	b64Share, wssShare                          float64
	rssGrowthMiB                                float64
	warmup, quiesce                             time.Duration
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
	fs.IntVar(&c.slowReaders, "slow-readers", 4, "downloads read slowly (small reads with pauses, so the proxy's backpressure engages), then at full speed")
	fs.IntVar(&c.halfClosers, "halfclose", 2, "loops of echo sessions that end by a TCP half-close or a close frame while echoes are still due")
	fs.IntVar(&c.fragmenters, "fragmented", 4, "echo sessions sending fragmented messages (continuation frames, pings between fragments)")
	fs.Float64Var(&c.b64Share, "base64", 0.25, "share of sessions using the base64 subprotocol")
	fs.Float64Var(&c.wssShare, "wss-share", 0, "share of sessions over wss:// on the proxy's one port (the proxy needs a certificate: put --cert {cert} in -proxy-cmd)")
	fs.Float64Var(&c.rssGrowthMiB, "rss-growth", 0, "RSS growth in MiB, fitted over the run after its warm-up, that fails it when the median of the last quarter is also above the first quarter's by half of it (0: the larger of 8 MiB and 10% of the median)")
	fs.DurationVar(&c.warmup, "warmup", 10*time.Second, "traffic (every kind, no faults) before the baseline reading of goroutines and descriptors")
	fs.DurationVar(&c.quiesce, "quiesce", 25*time.Second, "idle time before each of the baseline and final readings (gnet retires an idle pool worker within 20 s)")
	fs.DurationVar(&c.think, "think", 100*time.Millisecond, "mean pause between an echo session's messages")
	fs.DurationVar(&c.lifeMin, "life-min", 10*time.Second, "shortest life of an echo session")
	fs.DurationVar(&c.lifeMax, "life-max", 5*time.Minute, "longest life of an echo session")
	fs.Int64Var(&c.bulkMax, "bulk-max", 64<<20, "largest bulk transfer in bytes")
	fs.DurationVar(&c.faultEvery, "fault-every", time.Second, "pause between injected faults (0: none)")
	fs.DurationVar(&c.restartEvery, "restart-every", time.Minute, "pause between target restarts (0: none)")
	fs.DurationVar(&c.restartGap, "restart-gap", time.Second, "how long the target stays down")
	fs.DurationVar(&c.halfOpenLimit, "halfopen-limit", 45*time.Second, "a half-open or stalled client must be closed by the proxy within this")
	fs.DurationVar(&c.drainLimit, "drain", 15*time.Second, "wait for the proxy's sessions to drain after the warm-up and after the traffic")
	fs.IntVar(&c.fdSlack, "fd-slack", 4, "descriptors the proxy may hold above its baseline")
	fs.IntVar(&c.goroutineSlack, "goroutine-slack", 8, "goroutines the proxy may run above its baseline")
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
	armWatchdog(c.warmup+c.duration+2*(c.drainLimit+c.quiesce+c.opTimeout)+c.halfOpenLimit+2*time.Minute, nil)
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
	if c.wssShare < 0 || c.wssShare > 1 || c.b64Share < 0 || c.b64Share > 1 {
		return errors.New("-wss-share and -base64 are shares between 0 and 1")
	}
	if c.wssShare > 0 && c.proxyCmd != "" && !strings.Contains(c.proxyCmd, "--cert") {
		return errors.New("-wss-share needs a proxy with a certificate: put --cert {cert} in -proxy-cmd")
	}
	if strings.Contains(c.proxyCmd, "{cert}") {
		pem, err := selfSignedPEM()
		if err != nil {
			return err
		}
		c.proxyCmd = strings.ReplaceAll(c.proxyCmd, "{cert}", pem)
	}
	return checkLoopback(c.target)
}

// soakEnv is a target (restartable) and a proxy, shared by soak and slow.
type soakEnv struct {
	client  *client
	wss     *client    // the same proxy over wss://; nil unless -wss-share
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

// soakRun is one soak in progress.
type soakRun struct {
	cfg           *soakConfig
	env           *soakEnv
	st            *soakStats // shared by the warm-up and the run
	phase         string     // "warm-up" or "soak", for the progress lines
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
	if c.wssShare > 0 {
		wss := *env.client
		wss.tls = true
		env.wss = &wss
	}
	st := newSoakStats()
	res := &soakResult{Mode: "soak", Label: c.label, Proxy: desc, Commit: c.commit, Machine: machineLine(),
		Time: time.Now().UTC().Format(time.RFC3339), Seed: c.seed}
	fmt.Fprintf(progress, "soak of %s: %s\n  commit %s; %s; seed %d; started %s\n", c.label, desc, orDash(c.commit), res.Machine, c.seed, res.Time)
	if c.warmup > 0 {
		w := &soakRun{cfg: c.warmupConfig(), env: env, st: st, done: make(chan struct{}), phase: "warm-up"}
		fmt.Fprintf(progress, "warm-up: %v of every traffic kind, no faults\n", c.warmup)
		wmem := startMemPeak(env.pid, time.Second)
		if err := w.traffic(progress, wmem); err != nil {
			res.Failures = append(res.Failures, "during the warm-up: "+err.Error())
		}
		wmem.stop()
	}
	r := &soakRun{cfg: c, env: env, st: st, done: make(chan struct{}), phase: "soak"}
	res.ProxyBefore = r.quiesced()
	fmt.Fprintf(progress, "baseline after the warm-up and %v idle: %s\n", c.quiesce, res.ProxyBefore)

	mem := startMemPeak(env.pid, time.Second)
	start := time.Now()
	proxyErr := r.traffic(progress, mem)
	res.DurationS = time.Since(start).Seconds()
	if proxyErr == nil {
		res.ProxyAfter = r.quiesced()
		fmt.Fprintf(progress, "after the drain and %v idle: %s\n", c.quiesce, res.ProxyAfter)
	}
	res.ProxyRSSPeak, res.ProxyPrivateDirtyPeak = mem.stop()
	res.ProxyRSSAfter, _ = mem.rssNowAndPeak()
	res.RSSSeries = mem.samples()
	res.RSS = judgeRSS(res.RSSSeries, c.duration, c.rssGrowthMiB*(1<<20))
	res.End = time.Now().UTC().Format(time.RFC3339)
	r.fill(res, proxyErr)
	return res, nil
}

// warmupConfig is the run's configuration cut down to a warm-up: every kind
// of traffic, fewer sessions, short lives, no faults.
func (c *soakConfig) warmupConfig() *soakConfig {
	w := *c
	w.duration = c.warmup
	w.sessions = min(c.sessions, 16)
	w.bulkWorkers, w.churnWorkers = min(c.bulkWorkers, 2), min(c.churnWorkers, 1)
	w.slowReaders, w.halfClosers, w.fragmenters = min(c.slowReaders, 1), min(c.halfClosers, 1), min(c.fragmenters, 1)
	w.lifeMin, w.lifeMax = min(c.lifeMin, time.Second), min(c.lifeMax, 3*time.Second)
	w.bulkMax = min(c.bulkMax, 4<<20)
	w.faultEvery, w.restartEvery = 0, 0
	return &w
}

// traffic runs the workers for cfg.duration, printing a progress line every
// cfg.progress, and waits for them to finish; the error is the proxy's
// exit, if it died.
func (r *soakRun) traffic(progress io.Writer, mem *memPeak) error {
	c, env := r.cfg, r.env
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
	for i := 0; i < c.slowReaders; i++ {
		r.spawn(func() { r.slowReader(uint64(i), i%4 == 3 && c.b64Share > 0) })
	}
	for i := 0; i < c.halfClosers; i++ {
		r.spawn(func() { r.halfCloser(uint64(i)) })
	}
	for i := 0; i < c.fragmenters; i++ {
		r.spawn(func() { r.fragmenter(uint64(i), i%2 == 1 && c.b64Share > 0) })
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
	fmt.Fprintln(progress, r.progressLine(time.Since(start), mem))
	if proxyErr == nil && env.proxy != nil {
		proxyErr = env.proxy.alive()
	}
	return proxyErr
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

// wantWSS draws whether a session goes over wss://.
func (r *soakRun) wantWSS(rng *mrand.Rand) bool {
	return r.env.wss != nil && rng.Float64() < r.cfg.wssShare
}

func (r *soakRun) dial(b64, wss bool) (*soakConn, int64, error) {
	e := r.epoch.Load()
	cl := r.env.client
	if wss {
		cl = r.env.wss
	}
	c, err := dialSoak(background, cl, b64)
	if err == nil {
		r.st.opened.Add(1)
	}
	return c, e, err
}
