package main

import (
	"bufio"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// buildWebsockify builds our proxy into a temporary directory.
func buildWebsockify(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "websockify")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/websockify").CombinedOutput()
	if err != nil {
		t.Fatalf("building websockify: %v\n%s", err, out)
	}
	return bin
}

// shortSoak is a soak small and fast enough for a shared CI machine, with
// faults often enough that every kind happens. Its quiesce is short, so its
// goroutine readings may include gnet pool workers; the slack covers them.
func shortSoak() *soakConfig {
	return &soakConfig{target: "127.0.0.1:0", duration: 10 * time.Second, opTimeout: 10 * time.Second,
		progress: 5 * time.Second, sessions: 20, bulkWorkers: 2, churnWorkers: 2, b64Share: 0.25,
		slowReaders: 2, halfClosers: 2, fragmenters: 2,
		think: 20 * time.Millisecond, lifeMin: 2 * time.Second, lifeMax: 5 * time.Second, bulkMax: 4 << 20,
		faultEvery: 200 * time.Millisecond, restartEvery: 3 * time.Second, restartGap: 500 * time.Millisecond,
		warmup: 2 * time.Second, quiesce: 3 * time.Second,
		halfOpenLimit: 45 * time.Second, drainLimit: 15 * time.Second, fdSlack: 4, goroutineSlack: 16, maxErrors: -1}
}

// checkKinds fails the test unless every named stream kind was verified
// with no corrupted byte.
func checkKinds(t *testing.T, res *soakResult, kinds ...string) {
	t.Helper()
	for _, k := range kinds {
		s := res.Streams[k]
		if s == nil || s.Verified == 0 || s.Corrupted != 0 {
			t.Errorf("stream %s: %+v, want bytes verified and none corrupted", k, s)
		}
	}
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Our proxy with wss sessions mixed in on its one port: every traffic kind
// over both transports, every fault, a clean verdict.
func TestSoakOurProxy(t *testing.T) {
	cfg := shortSoak()
	cfg.proxyCmd = buildWebsockify(t) + " --cert {cert} {listen} {target}"
	cfg.wssShare = 0.3
	defer runCleanups()
	res := mustSoak(t, cfg)
	if !res.Pass || res.CorruptedBytes != 0 {
		t.Fatalf("soak failed: %v", res.Failures)
	}
	if res.BytesVerified < 1<<20 || res.EchoRoundTrips == 0 || res.ChurnSessions == 0 || res.BulkTransfers == 0 ||
		res.SlowDownloads == 0 || res.FragmentedMessages == 0 {
		t.Fatalf("too little traffic was verified")
	}
	checkKinds(t, res, "echo", "echo/wss", "bulk-down", "bulk-up", "churn", "slow-reader", "fragmented", "halfclose")
	// Each way of ending with echoes due was seen, and only the documented
	// ends (anything else is an unexpected error, checked below).
	var tcp, frame int64
	for k, n := range res.HalfCloseEnds {
		switch {
		case strings.HasPrefix(k, halfCloseTCP+": eof ("):
			tcp += n
		case strings.HasPrefix(k, halfCloseFrame+": close-1000 then eof ("):
			frame += n
		}
	}
	if tcp == 0 || frame == 0 {
		t.Errorf("half-close ends %v: want both kinds", res.HalfCloseEnds)
	}
	if res.RSS == nil || res.RSS.Climbing || len(res.RSSSeries) < 10 {
		t.Errorf("RSS judgement %+v over %d samples", res.RSS, len(res.RSSSeries))
	}
	if res.End == "" || res.Machine == "" {
		t.Errorf("the run's end or machine is not recorded")
	}
	for k, n := range res.Faults {
		if n == 0 {
			t.Errorf("no %s fault was injected", k)
		}
	}
	if res.UnexpectedErrors != 0 {
		t.Errorf("%d unexpected errors: %v", res.UnexpectedErrors, res.Errors.Example)
	}
	// The leak check must have had something to check.
	if res.ProxyBefore.FDs <= 0 || res.ProxyAfter == nil || res.ProxyAfter.Goroutines == nil || res.ProxyAfter.Sessions == nil {
		t.Errorf("no status reading: before %v, after %v", res.ProxyBefore, res.ProxyAfter)
	}
	// Our proxy drops a silent client after 3 s, well inside the run.
	if d := res.HalfOpen["halfopen_silent"]; d == nil || d.Closed == 0 {
		t.Errorf("no silent half-open client was seen closed: %+v", d)
	}
}

// The soak must notice a proxy that delivers wrong bytes: here our proxy
// behind a relay that flips one bit in every binary frame going to the
// client.
func TestSoakDetectsCorruption(t *testing.T) {
	defer runCleanups()
	cfg := soakThroughRelay(t, flipRelay)
	cfg.b64Share, cfg.faultEvery, cfg.restartEvery = 0, 0, 0
	cfg.warmup, cfg.quiesce = 0, 0
	if err := cfg.check(); err != nil {
		t.Fatal(err)
	}
	res, err := runSoak(cfg, testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + res.table())
	if res.CorruptedBytes == 0 || res.Pass {
		t.Fatalf("corruption went unnoticed: %d corrupted bytes, pass %v", res.CorruptedBytes, res.Pass)
	}
	// Counted in bytes, by stream: one flipped byte per frame, so every
	// kind that reads frames from the proxy has some, and none has more
	// than it verified.
	var sum int64
	for _, k := range []string{"echo", "bulk-down", "slow-reader", "fragmented"} {
		s := res.Streams[k]
		if s == nil || s.Corrupted == 0 || s.Corrupted >= s.Verified {
			t.Errorf("stream %s: %+v, want some corrupted bytes among the verified", k, s)
		}
	}
	for _, s := range res.Streams {
		sum += s.Corrupted
	}
	if sum != res.CorruptedBytes {
		t.Errorf("streams sum to %d corrupted bytes, the total says %d", sum, res.CorruptedBytes)
	}
}

// A proxy that answers a client's half-close with a reset instead of a
// clean end must be caught: here our proxy behind a relay that does so.
// Sessions ended by a close frame pass the relay untouched and stay clean.
func TestSoakDetectsBadHalfClose(t *testing.T) {
	defer runCleanups()
	cfg := soakThroughRelay(t, resetOnHalfCloseRelay)
	cfg.sessions, cfg.bulkWorkers, cfg.churnWorkers, cfg.slowReaders, cfg.fragmenters = 0, 0, 0, 0, 0
	cfg.faultEvery, cfg.restartEvery, cfg.warmup, cfg.quiesce, cfg.maxErrors = 0, 0, 0, 0, 0
	if err := cfg.check(); err != nil {
		t.Fatal(err)
	}
	res, err := runSoak(cfg, testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + res.table())
	var bad, good int
	for k, n := range res.Errors.Count {
		if strings.Contains(k, halfCloseTCP) {
			bad += n
		} else {
			t.Errorf("unexpected error kind %s: %s", k, res.Errors.Example[k])
		}
	}
	for k, n := range res.HalfCloseEnds {
		if strings.HasPrefix(k, halfCloseFrame+": close-1000 then eof") {
			good += int(n)
		}
	}
	if bad == 0 || good == 0 || res.Pass {
		t.Fatalf("reset half-closes counted %d, clean close frames %d, pass %v: want both counted and a failed run", bad, good, res.Pass)
	}
}

// mustSoak checks cfg, runs the soak and logs its table; the caller defers
// runCleanups.
func mustSoak(t *testing.T, cfg *soakConfig) *soakResult {
	t.Helper()
	if err := cfg.check(); err != nil {
		t.Fatal(err)
	}
	res, err := runSoak(cfg, testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + res.table())
	return res
}

// soakThroughRelay starts our proxy, puts the relay that relayTo starts in
// front of it, and returns a 3-second soak aimed at that relay. The caller
// defers runCleanups.
func soakThroughRelay(t *testing.T, relayTo func(*testing.T, string) string) *soakConfig {
	bin := buildWebsockify(t)
	target, err := freeLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	p, err := startProxy(bin+" {listen} {target}", target, "")
	if err != nil {
		t.Fatal(err)
	}
	relay := relayTo(t, p.listen)
	cfg := shortSoak()
	cfg.proxyURL, cfg.target, cfg.duration = "ws://"+relay+"/", target, 3*time.Second
	return cfg
}

// resetOnHalfCloseRelay forwards to addr, and when its client half-closes
// it resets the client's connection instead of passing the FIN on.
func resetOnHalfCloseRelay(t *testing.T, addr string) string {
	return serveRelay(t, addr, func(c, up net.Conn) {
		go func() { _, _ = io.Copy(c, up); _ = c.(*net.TCPConn).CloseWrite() }()
		_, _ = io.Copy(up, c)
		_ = c.(*net.TCPConn).SetLinger(0)
	})
}

// serveRelay listens on a loopback port until the test ends and, for each
// client, dials addr and runs relay with both connections, closing both
// when it returns. It returns the address it listens on.
func serveRelay(t *testing.T, addr string, relay func(client, up net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer up.Close()
				relay(c, up)
			}()
		}
	}()
	return ln.Addr().String()
}

// With --workers 2 the goroutines and sessions are summed over the
// workers' status lines, and descriptors and RSS over the process tree.
func TestSoakWorkers(t *testing.T) {
	cfg := shortSoak()
	cfg.proxyCmd = buildWebsockify(t) + " --workers 2 {listen} {target}"
	cfg.duration, cfg.restartEvery = 6*time.Second, 0
	defer runCleanups()
	res := mustSoak(t, cfg)
	if !res.Pass || res.UnexpectedErrors != 0 {
		t.Fatalf("soak failed: %v, errors %v", res.Failures, res.Errors.Example)
	}
	b := res.ProxyBefore
	// Each worker runs at least its loops' and signal goroutines; one
	// worker's count alone would be about half.
	if b.Goroutines == nil || *b.Goroutines < 8 || b.Sessions == nil || b.FDs < 20 {
		t.Fatalf("baseline %v: want two workers' goroutines and the tree's descriptors", b)
	}
}

// The RSS judge fails a steady climb and passes a flat, noisy series and
// one that climbs only in the warm-up.
func TestJudgeRSS(t *testing.T) {
	const dur = 10 * time.Minute
	series := func(f func(sec int) int64) []rssSample {
		var s []rssSample
		for sec := 0; sec <= int(dur/time.Second); sec++ {
			s = append(s, rssSample{T: float64(sec), RSS: f(sec)})
		}
		return s
	}
	noise := func(sec int) int64 { return int64((sec*7919)%13-6) << 18 } // ±1.5 MiB
	for _, c := range []struct {
		name  string
		rss   func(int) int64
		climb bool
	}{
		{"flat", func(sec int) int64 { return 100<<20 + noise(sec) }, false},
		{"climbs in the warm-up only", func(sec int) int64 { return 20<<20 + int64(min(sec, 100))<<20 + noise(sec) }, false},
		{"climbs 16 MiB", func(sec int) int64 { return 100<<20 + int64(sec)*(16<<20)/600 + noise(sec) }, true},
		{"climbs 8 MiB on 100", func(sec int) int64 { return 100<<20 + int64(sec)*(8<<20)/600 + noise(sec) }, false},
		// The fitted line rises past the bound, but the last quarter's
		// median does not: a spike at the end, not a climb.
		{"spikes in the last 20 s", func(sec int) int64 {
			if sec > 580 {
				return 200 << 20
			}
			return 100<<20 + noise(sec)
		}, false},
	} {
		v := judgeRSS(series(c.rss), dur, 0)
		if v.Climbing != c.climb {
			t.Errorf("%s: climbing %v, want %v (%s)", c.name, v.Climbing, c.climb, v.Verdict)
		}
	}
	// A fixed bound overrides the default, and too few samples are not judged.
	if v := judgeRSS(series(func(sec int) int64 { return 100<<20 + int64(sec)*(4<<20)/600 }), dur, 2<<20); !v.Climbing {
		t.Errorf("a 4 MiB climb with a 2 MiB bound passed: %s", v.Verdict)
	}
	if v := judgeRSS([]rssSample{{T: 200, RSS: 1}, {T: 300, RSS: 1 << 30}}, dur, 0); v.Climbing || v.Samples != 2 {
		t.Errorf("two samples judged: %+v", v)
	}
}

// flipRelay forwards to the proxy at addr and flips a bit in the middle of
// every binary frame the proxy sends.
func flipRelay(t *testing.T, addr string) string {
	return serveRelay(t, addr, func(c, up net.Conn) {
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		flipFrames(c, bufio.NewReader(up))
	})
}

func flipFrames(dst io.Writer, src *bufio.Reader) {
	// The HTTP response head passes as it is.
	for {
		line, err := src.ReadString('\n')
		if _, werr := io.WriteString(dst, line); err != nil || werr != nil {
			return
		}
		if line == "\r\n" {
			break
		}
	}
	for {
		h, err := ws.ReadHeader(src)
		if err != nil || ws.WriteHeader(dst, h) != nil {
			return
		}
		body := make([]byte, h.Length)
		if _, err := io.ReadFull(src, body); err != nil {
			return
		}
		if h.OpCode == ws.OpBinary && len(body) > 0 {
			body[len(body)/2] ^= 0x10
		}
		if _, err := dst.Write(body); err != nil {
			return
		}
	}
}

// A proxy that does not catch SIGUSR1 (Python's websockify) must not be sent
// it, and its goroutines are unknown rather than zero.
func TestProxyStatusWithoutStatusLine(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	time.Sleep(100 * time.Millisecond) // past exec, so the mask is sleep's own
	st := readProxyStatus(cmd.Process.Pid, filepath.Join(t.TempDir(), "log"))
	if st.FDs <= 0 || st.Goroutines != nil || st.Sessions != nil {
		t.Fatalf("status %v", st)
	}
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the process died: %v", err)
	}
}

func TestSoakLeakJudgement(t *testing.T) {
	r := &soakRun{cfg: &soakConfig{fdSlack: 4, goroutineSlack: 8}, st: newSoakStats()}
	n := func(v int) *int { return &v }
	before := &proxyStatus{FDs: 10, Goroutines: n(9), Sessions: n(0)}
	for _, c := range []struct {
		after *proxyStatus
		leaks int
	}{
		{&proxyStatus{FDs: 14, Goroutines: n(17), Sessions: n(0)}, 0},
		{&proxyStatus{FDs: 15, Goroutines: n(9), Sessions: n(0)}, 1},
		{&proxyStatus{FDs: 10, Goroutines: n(18), Sessions: n(0)}, 1},
		{&proxyStatus{FDs: 10, Goroutines: n(9), Sessions: n(1)}, 1},
		{&proxyStatus{FDs: 10}, 0}, // goroutines unknown: not judged
	} {
		if got := r.leaks(before, c.after); len(got) != c.leaks {
			t.Errorf("after %v: %v", c.after, got)
		}
	}
}

// The slow consumer reads every byte at its pace, verified, and sees the
// proxy's memory.
func TestSlowConsumerOurProxy(t *testing.T) {
	cfg := shortSoak()
	cfg.proxyCmd = buildWebsockify(t) + " {listen} {target}"
	if err := cfg.check(); err != nil {
		t.Fatal(err)
	}
	defer runCleanups()
	const n, rate = 4 << 20, 2 << 20
	start := time.Now()
	res, err := runSlow(cfg, n, rate, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res.summary())
	if res.Error != "" || res.BytesVerified != n || res.CorruptedBytes != 0 || res.ProxyRSSPeak <= 0 {
		t.Fatalf("slow: %s", res.summary())
	}
	if el := time.Since(start); el < n/rate*time.Second*9/10 {
		t.Fatalf("read %d bytes at %d B/s in %v: the pace was not kept", n, rate, el)
	}
}
