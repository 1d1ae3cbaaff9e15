package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for loadtest itself: the tool
// re-executes its own binary for the target, the relay and the holders, and under
// "go test" that binary is this one.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "target", "relay", "holder":
			main()
			return
		}
	}
	os.Exit(m.Run())
}

func TestSpreadAndPercentile(t *testing.T) {
	s := newSpread([]float64{5, 1, 3, 2})
	if s.Median != 2.5 || s.Min != 1 || s.Max != 5 {
		t.Fatalf("spread %+v", s)
	}
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i))
	}
	if p := percentile(ds, 0.5); p != 50 {
		t.Fatalf("p50 = %v", p)
	}
	if p := percentile(ds, 0.99); p != 99 {
		t.Fatalf("p99 = %v", p)
	}
}

func TestReplaceGeneratedKeepsHandWrittenText(t *testing.T) {
	path := filepath.Join(t.TempDir(), "B.md")
	orig := "# Intro\n\n" + beginMarker + "\nold\n" + endMarker + "\n\nTail.\n"
	if err := os.WriteFile(path, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := replaceGenerated(path, "new table\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	got := string(b)
	if !strings.HasPrefix(got, "# Intro\n\n") || !strings.HasSuffix(got, endMarker+"\n\nTail.\n") ||
		!strings.Contains(got, "new table") || strings.Contains(got, "old") {
		t.Fatalf("got:\n%s", got)
	}
}

func TestLoopbackOnly(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:1", "127.3.4.5:80", "[::1]:9", "localhost:5"} {
		if err := checkLoopback(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"10.0.0.1:80", "192.168.1.1:5900", "8.8.8.8:53", "example.com:80"} {
		if err := checkLoopback(bad); err == nil {
			t.Errorf("%s allowed", bad)
		}
	}
}

// setUpMode checks cfg and starts its proxy and target, as runMeasurement
// does; the caller defers runCleanups.
func setUpMode(t *testing.T, cfg *settings) (*env, *Result) {
	t.Helper()
	if err := cfg.check(); err != nil {
		t.Fatal(err)
	}
	res := &Result{Mode: cfg.mode, Label: cfg.label}
	e, err := setUp(cfg, res)
	if err != nil {
		t.Fatal(err)
	}
	return e, res
}

// runMode runs one mode the way runMeasurement does, minus printing and
// exiting, against cfg's proxy.
func runMode(t *testing.T, cfg *settings) *Result {
	t.Helper()
	defer runCleanups()
	e, res := setUpMode(t, cfg)
	if err := runModeOn(e, cfg.mode); err != nil {
		t.Fatalf("%s: %v (%s)", cfg.mode, err, summarize(res))
	}
	t.Log(summarize(res))
	return res
}

// Every mode, end to end, through the built-in relay: small sizes, well
// inside the limits of a busy CI machine.
func TestModesThroughRelay(t *testing.T) {
	base := func(mode string) *settings {
		return &settings{mode: mode, relay: true, target: "127.0.0.1:0", opTimeout: 20 * time.Second,
			repeat: 1, rampTimeout: 30 * time.Second, dialParallel: 8, maxFail: 5}
	}
	for _, dir := range []string{"down", "up"} {
		cfg := base("throughput")
		cfg.dir, cfg.nbytes, cfg.frameSize = dir, 4<<20, 64<<10
		if r := runMode(t, cfg); r.MBps == nil || r.MBps.Median <= 0 {
			t.Fatalf("throughput %s: no rate", dir)
		}
	}
	cfg := base("echo")
	cfg.conns, cfg.duration, cfg.think, cfg.msgSize = 20, 500*time.Millisecond, 20*time.Millisecond, 64
	if r := runMode(t, cfg); r.ConnsOpen != 20 || r.RoundTrips == 0 {
		t.Fatalf("echo: %d conns, %d round trips", r.ConnsOpen, r.RoundTrips)
	}
	cfg = base("echo") // the same beside bulk traffic
	cfg.conns, cfg.duration, cfg.think, cfg.msgSize, cfg.background = 20, 500*time.Millisecond, 20*time.Millisecond, 64, 2
	if r := runMode(t, cfg); r.RoundTrips == 0 || r.BackgroundMBps == nil || r.BackgroundMBps.Median <= 0 {
		t.Fatalf("echo with background: %s", summarize(r))
	}
	cfg = base("setup")
	cfg.concurrency, cfg.duration = 4, 500*time.Millisecond
	if r := runMode(t, cfg); r.Sessions == 0 {
		t.Fatal("setup: no session")
	}
	cfg = base("hold")
	cfg.conns, cfg.settle, cfg.minAvailMiB, cfg.aliveSample = 50, 100*time.Millisecond, 0, 10
	r := runMode(t, cfg)
	if r.ConnsOpen != 50 || r.AliveOK != r.AliveChecked || r.MemAfter == nil || r.MemAfter.Procs != 1 {
		t.Fatalf("hold: %s", summarize(r))
	}
}

// The WebSocket client against a real websockify: Debian's, which
// scripts/install-test-deps.sh installs.
func TestWebSocketThroughPythonWebsockify(t *testing.T) {
	const python = "/usr/bin/websockify"
	if _, err := os.Stat(python); err != nil {
		t.Fatalf("%s is missing: run scripts/install-test-deps.sh (make test does)", python)
	}
	cfg := &settings{mode: "throughput", proxyCmd: python + " {listen} {target}", label: "python",
		target: "127.0.0.1:0", opTimeout: 30 * time.Second, repeat: 1, dir: "up", nbytes: 1 << 20, frameSize: 64 << 10}
	runMode(t, cfg)
	cfg = &settings{mode: "echo", proxyCmd: python + " {listen} {target}", label: "python", target: "127.0.0.1:0",
		opTimeout: 30 * time.Second, repeat: 1, rampTimeout: 30 * time.Second, dialParallel: 2, maxFail: 3,
		conns: 3, duration: 500 * time.Millisecond, think: 20 * time.Millisecond, msgSize: 64}
	if r := runMode(t, cfg); r.Transport != "websocket" || r.RoundTrips == 0 {
		t.Fatalf("echo via Python: %s", summarize(r))
	}
}
