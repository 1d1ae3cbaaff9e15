package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// relayTemplate runs this binary's relay mode from the same kind of template
// as any proxy, so the relay is measured exactly like the others.
const relayTemplate = "{self} relay {listen} {target}"

// settings are the flags every measurement mode shares, plus the mode's own.
type settings struct {
	mode       string
	proxyURL   string
	proxyCmd   string
	relay      bool
	raw        bool
	tls        bool
	proxyPID   int
	backendPID int // a server the proxy consults (a token plugin's Redis): its CPU is read beside the proxy's
	target     string
	label      string
	jsonOut    bool
	proxyLog   string
	hardLimit  time.Duration
	repeat     int
	opTimeout  time.Duration
	commit     string
	path       string // request path and query of the WebSocket handshake
	round      int    // which round of an interleaved series this run is (0: none)
	proxyCPUs  string // CPU list the started proxy is pinned to with taskset ("": not pinned)

	// throughput
	dir       string
	nbytes    int64
	frameSize int

	// echo, setup, hold
	conns        int
	duration     time.Duration
	think        time.Duration
	msgSize      int
	rampTimeout  time.Duration
	dialParallel int
	maxFail      int
	concurrency  int
	background   int
	settle       time.Duration
	minAvailMiB  int64
	aliveSample  int
	targetPorts  int  // hold: echo targets on this many ports behind a TokenFile
	proxyProcs   int  // hold: processes the proxy spreads sessions over (-1: from --workers)
	tuneKernel   bool // hold: raise the sysctls the pre-flight finds too low, for the run

	// stall
	proveBytes     int64
	resumeBytes    int64
	resumeDeep     int
	rcvBuf         int
	sample         time.Duration
	plateauWindow  time.Duration
	plateauTimeout time.Duration
	quietTimeout   time.Duration
	cpuWindow      time.Duration
	resumeTimeout  time.Duration
	tcpMemGuard    float64

	openLoop openLoopSettings // openloop.go
}

// env is what a mode runs against.
type env struct {
	cfg      *settings
	client   *client
	proxy    *proxyProc // nil when the proxy was started by hand
	proxyPID int        // 0 when unknown: no CPU or memory figures then
	result   *Result

	// The client's and the target's CPU per measurement window, beside the
	// proxy's (see sidecpu.go).
	targetPID            int // 0 when unknown
	clientCPU, targetCPU []float64
}

func runMeasurement(mode string, args []string) error {
	cfg := &settings{mode: mode}
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	fs.StringVar(&cfg.proxyURL, "proxy", "", "URL of a proxy already running (ws://127.0.0.1:P/, or tcp://127.0.0.1:P for a raw relay); its target must be -target")
	fs.StringVar(&cfg.proxyCmd, "proxy-cmd", "", "command template to start the proxy: {listen} {port} {target} {target_host} {target_port} {self}")
	fs.BoolVar(&cfg.relay, "relay", false, "measure the built-in plain TCP relay with a raw TCP client (the protocol-free reference)")
	fs.BoolVar(&cfg.raw, "raw", false, "speak raw TCP instead of WebSocket (implied by -relay and tcp:// URLs)")
	fs.BoolVar(&cfg.tls, "tls", false, "speak wss:// to the started proxy (its certificate is not verified)")
	fs.IntVar(&cfg.proxyPID, "proxy-pid", 0, "PID of a proxy given with -proxy, for CPU and memory figures")
	fs.IntVar(&cfg.backendPID, "backend-pid", 0, "PID of a server the proxy consults, such as a token plugin's redis-server: its CPU is reported beside the proxy's (setup) and not counted as other processes'")
	fs.StringVar(&cfg.target, "target", "127.0.0.1:0", "address the target listens on (fix the port when the proxy was started by hand)")
	fs.StringVar(&cfg.label, "label", "", "name of the proxy in the results (default: derived from the command)")
	fs.BoolVar(&cfg.jsonOut, "json", false, "print the result as one JSON object on stdout (the summary goes to stderr)")
	fs.StringVar(&cfg.proxyLog, "proxy-log", "", "file for the started proxy's stdout and stderr (default: discarded)")
	fs.DurationVar(&cfg.hardLimit, "timeout", 0, "hard limit for the whole run (default: derived from the other flags)")
	fs.DurationVar(&cfg.opTimeout, "op-timeout", 10*time.Second, "limit for one step of a session (dial, handshake, round trip)")
	fs.StringVar(&cfg.commit, "commit", "", "what the proxy was built from, recorded in the result (git describe --always --dirty)")
	fs.StringVar(&cfg.path, "path", "/", "path and query the client asks for in the WebSocket handshake, such as /?token=NAME (replaces the path of a -proxy URL when given)")
	fs.IntVar(&cfg.round, "round", 0, "number of this run in a series of interleaved rounds, recorded in the result for the report to pair runs by")
	fs.StringVar(&cfg.proxyCPUs, "proxy-cpus", "", "run the started proxy on these CPUs only (taskset -c LIST); start loadtest itself under taskset on the others to keep client and target apart from it")
	switch mode {
	case "throughput":
		fs.StringVar(&cfg.dir, "dir", "down", "down: the target sends, the client reads; up: the client sends, the target counts")
		fs.Int64Var(&cfg.nbytes, "bytes", 1<<30, "bytes to move per run")
		fs.IntVar(&cfg.frameSize, "frame", 64<<10, "payload bytes per client frame (up)")
		fs.IntVar(&cfg.repeat, "repeat", 3, "runs, each on new connections")
		fs.IntVar(&cfg.conns, "conns", 1, "connections at once, each moving bytes/conns (the rate is their sum)")
	case "echo":
		fs.IntVar(&cfg.conns, "conns", 1000, "concurrent connections")
		fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "length of one measurement window")
		fs.IntVar(&cfg.repeat, "repeat", 3, "measurement windows, back to back on the same connections")
		fs.DurationVar(&cfg.think, "think", 100*time.Millisecond, "mean pause between a connection's round trips (uniform in [0.5, 1.5] of it)")
		fs.IntVar(&cfg.msgSize, "size", 64, "message bytes per round trip")
		fs.DurationVar(&cfg.rampTimeout, "ramp-timeout", 60*time.Second, "limit for opening the connections")
		fs.IntVar(&cfg.dialParallel, "dial-parallel", 64, "connections being opened at once during the ramp")
		fs.IntVar(&cfg.maxFail, "max-fail", 100, "stop the ramp after this many failed opens")
		fs.IntVar(&cfg.background, "background", 0, "sessions moving bulk data (64 KiB frames, echoed back) during the windows, as background load")
	case "setup":
		fs.IntVar(&cfg.concurrency, "concurrency", 50, "sessions being set up at once")
		fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "length of one measurement window")
		fs.IntVar(&cfg.repeat, "repeat", 3, "measurement windows, back to back")
	case "hold":
		fs.IntVar(&cfg.conns, "conns", 9900, "idle sessions to hold")
		fs.DurationVar(&cfg.rampTimeout, "ramp-timeout", 120*time.Second, "limit for opening the sessions")
		fs.IntVar(&cfg.dialParallel, "dial-parallel", 64, "sessions being opened at once")
		fs.IntVar(&cfg.maxFail, "max-fail", 100, "stop opening after this many failures")
		fs.DurationVar(&cfg.settle, "settle", 2*time.Second, "wait between the last open and the memory reading")
		fs.Int64Var(&cfg.minAvailMiB, "min-avail-mib", 3072, "stop opening when the machine's MemAvailable falls below this")
		fs.IntVar(&cfg.aliveSample, "alive-sample", 0, "held sessions re-checked with a round trip after the memory reading (0: every one)")
		fs.IntVar(&cfg.targetPorts, "target-ports", 1, "echo targets on this many ports of 127.0.0.1, reached through a TokenFile the tool writes (tokens t0, t1, ...; the holders' sessions spread evenly over them): -proxy-cmd must pass {token_file} to --token-source")
		fs.IntVar(&cfg.proxyProcs, "proxy-procs", -1, "processes the proxy spreads its sessions over, for the descriptor check (-1: --workers N in -proxy-cmd, else 1; 0: it forks one per session)")
		fs.BoolVar(&cfg.tuneKernel, "tune-kernel", false, "raise the sysctls the pre-flight check finds too low (port range, nf_conntrack_max, tcp_mem, file-max, nr_open) for the run and restore them after it (root)")
	case "openloop":
		openLoopFlags(fs, cfg)
	case "stall":
		fs.IntVar(&cfg.conns, "conns", 1000, "sessions to stall")
		fs.Int64Var(&cfg.proveBytes, "prove", 64<<10, "bytes each session reads and checks before it stops reading")
		fs.IntVar(&cfg.rcvBuf, "rcvbuf", 64<<10, "SO_RCVBUF of the client's sockets (the kernel doubles it; 0: autotuned)")
		fs.DurationVar(&cfg.sample, "sample", 250*time.Millisecond, "interval of the proxy memory readings while waiting for the plateau")
		fs.DurationVar(&cfg.plateauWindow, "plateau-window", 3*time.Second, "the proxy's memory is flat when it stayed within the tolerance for this long")
		fs.DurationVar(&cfg.plateauTimeout, "plateau-timeout", 60*time.Second, "longest wait for the plateau after the last session opened")
		fs.DurationVar(&cfg.quietTimeout, "quiet-timeout", 60*time.Second, "longest wait, after the plateau, for the proxy's read and write calls to go quiet before its CPU is read")
		fs.DurationVar(&cfg.cpuWindow, "cpu-window", 10*time.Second, "the proxy's CPU is read over this, once memory is flat")
		fs.Int64Var(&cfg.resumeBytes, "resume", 256<<10, "bytes every session reads and checks after the stall")
		fs.IntVar(&cfg.resumeDeep, "resume-deep", 4, "sessions that read on to 64 MiB after the stall (more than any buffer on the path)")
		fs.DurationVar(&cfg.resumeTimeout, "resume-timeout", 120*time.Second, "limit for all sessions' reading on")
		fs.IntVar(&cfg.dialParallel, "dial-parallel", 32, "sessions being opened at once")
		fs.DurationVar(&cfg.rampTimeout, "ramp-timeout", 120*time.Second, "limit for opening the sessions")
		fs.IntVar(&cfg.maxFail, "max-fail", 100, "stop opening after this many failures")
		fs.Int64Var(&cfg.minAvailMiB, "min-avail-mib", 3072, "stop opening when the machine's MemAvailable falls below this")
		fs.Float64Var(&cfg.tcpMemGuard, "tcp-mem-guard", 0.7, "stall only as many sessions as fit in this share of the kernel's TCP pressure threshold (tcp_mem), judging by what the first 16 add to the machine's socket buffers (0: no guard)")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	pathGiven := false
	fs.Visit(func(f *flag.Flag) { pathGiven = pathGiven || f.Name == "path" })
	if !pathGiven {
		cfg.path = ""
	}
	if err := cfg.check(); err != nil {
		return err
	}

	res := &Result{Mode: mode, Label: cfg.label, Commit: cfg.commit, Time: time.Now().UTC().Format(time.RFC3339),
		Round: cfg.round, Machine: machineLine()}
	// The last-resort deadline still leaves a JSON line, so a results file
	// always says what happened to every run.
	armWatchdog(cfg.hardLimitOrDefault(), func() {
		partial := &Result{Mode: res.Mode, Label: res.Label, Proxy: res.Proxy, Transport: res.Transport, TLS: res.TLS,
			Commit: res.Commit, Time: res.Time, Machine: res.Machine, Path: res.Path, Round: res.Round, Dir: cfg.dir,
			Error: "hard deadline reached; the run was killed"}
		if cfg.jsonOut {
			writeJSON(os.Stdout, partial)
		}
	})

	res.LoadAvg1 = loadAverage()
	var err error
	if mode == "hold" {
		res.Preflight, err = preflight(cfg, cfg.tuneKernel)
		for _, l := range res.Preflight {
			fmt.Fprintln(os.Stderr, "hold: pre-flight: "+l)
		}
	}
	var e *env
	if err == nil {
		e, err = setUp(cfg, res)
	}
	if err == nil {
		var extra []int
		if cfg.backendPID > 0 {
			extra = append(extra, cfg.backendPID)
		}
		machine := startOtherCPU(extra...)
		err = runModeOn(e, mode)
		if err == nil && e.proxy != nil {
			// A proxy that crashed under load fails the run even if the
			// numbers looked fine until then.
			err = e.proxy.alive()
		}
		res.OtherCPUPct = machine.percent()
		res.ClientCPU, res.TargetCPU = newSpread(e.clientCPU), newSpread(e.targetCPU)
		res.Affinity, res.Pinned = affinityLine(e), pinned(e)
	}
	runCleanups()
	if err != nil {
		res.Error = err.Error()
	}
	printOutcome(cfg.jsonOut, summarize(res), res)
	if err != nil {
		os.Exit(1)
	}
	return nil
}

func (c *settings) check() error {
	n := 0
	for _, set := range []bool{c.proxyURL != "", c.proxyCmd != "", c.relay} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("give exactly one of -proxy, -proxy-cmd and -relay")
	}
	if c.relay {
		c.proxyCmd = relayTemplate
		c.raw = true
		if c.label == "" {
			c.label = "relay"
		}
	}
	if c.label == "" {
		if c.proxyCmd != "" {
			c.label = filepath.Base(strings.Fields(c.proxyCmd)[0])
		} else {
			c.label = "proxy"
		}
	}
	if c.path != "" {
		if c.raw {
			return errors.New("-path needs a WebSocket client, not raw TCP")
		}
		if !strings.HasPrefix(c.path, "/") {
			return fmt.Errorf("-path %q: want a path from /, with an optional ?query", c.path)
		}
	}
	if c.backendPID != 0 {
		if c.backendPID < 0 {
			return errors.New("-backend-pid must be positive")
		}
		if _, err := readStat(c.backendPID); err != nil {
			return fmt.Errorf("-backend-pid %d: %w", c.backendPID, err)
		}
	}
	if c.proxyCPUs != "" {
		if c.proxyCmd == "" {
			return errors.New("-proxy-cpus needs a proxy this tool starts (-proxy-cmd or -relay)")
		}
		if strings.Trim(c.proxyCPUs, "0123456789,-") != "" {
			return fmt.Errorf("-proxy-cpus %q: want a CPU list such as 0 or 0,2-3", c.proxyCPUs)
		}
		if _, err := exec.LookPath("taskset"); err != nil {
			return errors.New("-proxy-cpus needs taskset (util-linux)")
		}
	}
	if c.round < 0 {
		return errors.New("-round must not be negative")
	}
	if c.mode == "hold" {
		if err := c.checkHold(); err != nil {
			return err
		}
	}
	if c.mode == "openloop" {
		if err := c.checkOpenLoop(); err != nil {
			return err
		}
	}
	if c.mode == "throughput" && c.dir != "down" && c.dir != "up" {
		return fmt.Errorf("-dir %q: want down or up", c.dir)
	}
	if c.repeat < 1 {
		c.repeat = 1
	}
	if c.frameSize < 1 && c.mode == "throughput" {
		return errors.New("-frame must be positive")
	}
	if c.mode == "stall" {
		if c.conns < 1 || c.proveBytes < 1 || c.resumeBytes < 1 {
			return errors.New("-conns, -prove and -resume must be positive")
		}
		if c.sample <= 0 || c.plateauWindow < c.sample {
			return errors.New("-sample must be positive and -plateau-window at least -sample")
		}
	}
	return nil
}

// hardLimitOrDefault bounds the run: the given -timeout, or what the phases
// may take by their own limits plus a margin for starting and stopping.
func (c *settings) hardLimitOrDefault() time.Duration {
	if c.hardLimit > 0 {
		return c.hardLimit
	}
	margin := time.Minute
	switch c.mode {
	case "throughput":
		return time.Duration(c.repeat)*throughputRunLimit(c) + margin
	case "echo":
		return c.rampTimeout + time.Duration(c.repeat)*c.duration + c.opTimeout + margin
	case "setup":
		return time.Duration(c.repeat)*c.duration + c.opTimeout + margin
	case "openloop":
		return c.openLoopLimit()
	case "stall":
		return c.rampTimeout + c.plateauTimeout + c.cpuWindow + c.resumeTimeout + 3*c.opTimeout + 2*margin
	default:
		return c.rampTimeout + c.settle + 2*c.opTimeout + 3*margin
	}
}

// setUp starts the target and, unless one was given, the proxy.
func setUp(cfg *settings, res *Result) (*env, error) {
	kind := targetEcho
	switch cfg.mode {
	case "throughput":
		kind = targetSource
		if cfg.dir == "up" {
			kind = targetSink
		}
	case "stall":
		kind = targetStream
	}
	if err := checkLoopback(cfg.target); err != nil {
		return nil, err
	}
	proxyCmd := cfg.proxyCmd
	var tgt *targetProc
	var err error
	if cfg.targetPorts > 1 {
		tgt, proxyCmd, err = startTokenTargets(cfg, kind)
	} else {
		tgt, err = startTargets(kind, cfg.target, targetBytes(cfg), cfg.conns)
	}
	if err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	e := &env{cfg: cfg, result: res, proxyPID: cfg.proxyPID}
	if tgt.cmd != nil && tgt.cmd.Process != nil {
		e.targetPID = tgt.cmd.Process.Pid
	}
	if cfg.proxyCPUs != "" {
		proxyCmd = "taskset -c " + cfg.proxyCPUs + " " + proxyCmd
	}
	proxyURL := cfg.proxyURL
	res.Proxy = proxyURL
	if cfg.proxyCmd != "" {
		res.Proxy = cfg.proxyCmd
		p, err := startProxy(proxyCmd, tgt.addr, cfg.proxyLog)
		if err != nil {
			return nil, err
		}
		e.proxy, e.proxyPID = p, p.pid()
		scheme := "ws"
		switch {
		case cfg.raw:
			scheme = "tcp"
		case cfg.tls:
			scheme = "wss"
		}
		proxyURL = scheme + "://" + p.listen + "/"
	}
	if cfg.path != "" {
		// Checked against raw TCP in check, but a tcp:// URL makes a raw
		// client too.
		if strings.HasPrefix(proxyURL, "tcp://") {
			return nil, errors.New("-path needs a WebSocket proxy URL, not tcp://")
		}
		if proxyURL, err = withPath(proxyURL, cfg.path); err != nil {
			return nil, err
		}
	}
	bufSize := 4096
	switch cfg.mode {
	case "throughput":
		bufSize = 256 << 10
	case "stall":
		bufSize = 64 << 10
	}
	e.client, err = newClient(proxyURL, cfg.raw, cfg.opTimeout, bufSize)
	if err != nil {
		return nil, err
	}
	e.client.rcvBuf = cfg.rcvBuf
	res.Transport = "websocket"
	if e.client.raw {
		res.Transport = "tcp"
	}
	res.TLS = e.client.tls
	if !e.client.raw {
		res.Path = e.client.url.RequestURI()
	}
	return e, nil
}

// withPath replaces the path and query of a ws:// or wss:// URL with
// pathQuery ("/", "/?token=bench", "/websockify?token=a%20b").
func withPath(proxyURL, pathQuery string) (string, error) {
	u, err := url.Parse(proxyURL)
	if err != nil {
		return "", err
	}
	pq, err := url.ParseRequestURI(pathQuery)
	if err != nil || pq.Host != "" || pq.Scheme != "" {
		return "", fmt.Errorf("-path %q: not a path with an optional query", pathQuery)
	}
	u.Path, u.RawPath, u.RawQuery, u.Fragment = pq.Path, pq.RawPath, pq.RawQuery, ""
	return u.String(), nil
}

// cpuMeter measures the proxy tree's CPU use over an interval.
type cpuMeter struct {
	pid   int
	ticks int64
	t     time.Time
}

func startCPU(pid int) cpuMeter {
	if pid == 0 {
		return cpuMeter{}
	}
	return cpuMeter{pid: pid, ticks: treeCPUTicks(pid), t: time.Now()}
}

// percent of one core used since start; -1 when unknown.
func (m cpuMeter) percent() float64 {
	if m.pid == 0 {
		return -1
	}
	d := treeCPUTicks(m.pid) - m.ticks
	el := time.Since(m.t).Seconds()
	if el <= 0 {
		return -1
	}
	return 100 * float64(d) / clockTicks / el
}

// background is the context for dials: the hard watchdog is what bounds the
// run; individual steps carry their own deadlines.
var background = context.Background()

// runModeOn runs one measurement mode on a prepared environment.
func runModeOn(e *env, mode string) error {
	switch mode {
	case "throughput":
		return runThroughput(e)
	case "echo":
		return runEcho(e)
	case "setup":
		return runSetup(e)
	case "hold":
		return runHold(e)
	case "stall":
		return runStall(e)
	case "openloop":
		return runOpenLoop(e)
	}
	return fmt.Errorf("unknown mode %q", mode)
}
