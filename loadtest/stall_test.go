package main

import (
	"testing"
	"time"
)

// samplesAt builds readings every step seconds from the values given (MiB).
func samplesAt(step float64, mib ...float64) []memSample {
	out := make([]memSample, len(mib))
	for i, v := range mib {
		out[i] = memSample{T: float64(i) * step, PrivateDirty: int64(v * (1 << 20))}
	}
	return out
}

func TestOnPlateau(t *testing.T) {
	const tol = 1 << 20 // 1 MiB
	w := 2 * time.Second
	for _, c := range []struct {
		name    string
		samples []memSample
		want    bool
	}{
		{"no readings", nil, false},
		{"one reading", samplesAt(0.5, 10), false},
		{"flat, but not for a whole window yet", samplesAt(0.5, 10, 10, 10, 10), false},
		{"flat for exactly the window", samplesAt(0.5, 10, 10, 10, 10, 10), true},
		{"still rising", samplesAt(0.5, 10, 20, 30, 40, 50, 60, 70), false},
		{"rose, then flat for the window", samplesAt(0.5, 10, 40, 70, 70, 70.5, 70, 70.2, 70), true},
		{"rose, flat, but not for long enough", samplesAt(0.5, 10, 40, 70, 70, 70.5, 70), false},
		{"wobbles within the tolerance", samplesAt(0.5, 50, 50.9, 50.1, 50.8, 50, 50.5), true},
		{"one reading in the window out of the tolerance", samplesAt(0.5, 50, 50, 52, 50, 50), false},
		{"creeping up slowly: 0.3 MiB a reading crosses 1 MiB within the window", samplesAt(0.5, 50, 50.3, 50.6, 50.9, 51.2), false},
		{"dropped (a collection), then flat", samplesAt(0.5, 90, 60, 60, 60, 60, 60), true},
	} {
		if got := onPlateau(c.samples, privateDirtyOf, w, tol); got != c.want {
			t.Errorf("%s: onPlateau = %v, want %v", c.name, got, c.want)
		}
	}
	// Uneven sampling: the window is in seconds, not readings.
	s := []memSample{{T: 0, PrivateDirty: 5 << 20}, {T: 1.9, PrivateDirty: 5 << 20}, {T: 2.1, PrivateDirty: 5 << 20}}
	if !onPlateau(s, privateDirtyOf, w, tol) {
		t.Error("uneven readings spanning 2.1 s of a 2 s window: not a plateau")
	}
	if onPlateau(s[1:], privateDirtyOf, w, tol) {
		t.Error("readings spanning 0.2 s of a 2 s window: a plateau")
	}
}

func TestPlateauTolerance(t *testing.T) {
	// 1 KiB a session when the sessions added little...
	if got := plateauTolerance(100<<20, 110<<20, 1000); got != 1000<<10 {
		t.Errorf("1000 sessions adding 10 MiB: tolerance %d, want %d", got, 1000<<10)
	}
	// ... 2% of what they added when that is more.
	if got := plateauTolerance(100<<20, 1100<<20, 1000); got != (1000<<20)/50 {
		t.Errorf("1000 sessions adding 1000 MiB: tolerance %d, want %d", got, (1000<<20)/50)
	}
	// Memory below the reading before (a collection) is no reason for a
	// negative tolerance.
	if got := plateauTolerance(100<<20, 90<<20, 10); got != 10<<10 {
		t.Errorf("memory fell: tolerance %d", got)
	}
}

// The readings can be of the machine's TCP buffers too.
func TestOnPlateauOfTCPMemory(t *testing.T) {
	s := samplesAt(0.5, 1, 1, 1, 1, 1)
	for i := range s {
		s[i].TCPMemBytes = int64(i) << 20
	}
	if !onPlateau(s, privateDirtyOf, 2*time.Second, 1<<10) || onPlateau(s, tcpMemOf, 2*time.Second, 1<<10) {
		t.Error("onPlateau does not tell private dirty from TCP memory")
	}
}

func TestSessionsThatFit(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name                  string
		share                 float64
		pressure, before, now int64
		probe, wantFit        int
		wantCost              int64
	}{
		// 16 sessions took 100 MiB to 260 MiB: 10 MiB each; 0.7 × 1500 MiB
		// = 1050 MiB leaves 790 MiB: 79 more.
		{"relay-like", 0.7, 1500 * mib, 100 * mib, 260 * mib, 16, 16 + 79, 10 * mib},
		// 100 KiB each: far more than anyone asks for.
		{"bounded buffers", 0.7, 1500 * mib, 100 * mib, 100*mib + 1600<<10, 16, 16 + int((1050*mib-(100*mib+1600<<10))/(100<<10)), 100 << 10},
		// The probe alone is over the line: the probe is all.
		{"already over", 0.7, 1500 * mib, 900 * mib, 1100 * mib, 16, 16, 200 * mib / 16},
	} {
		fit, cost := sessionsThatFit(c.share, c.pressure, c.before, c.now, c.probe)
		if fit != c.wantFit || cost != c.wantCost {
			t.Errorf("%s: %d fit at %d each, want %d at %d", c.name, fit, cost, c.wantFit, c.wantCost)
		}
	}
	// Buffers that did not grow (or shrank: other programs) set no limit.
	if fit, _ := sessionsThatFit(0.7, 1500*mib, 100*mib, 90*mib, 16); fit < 1e6 {
		t.Errorf("no growth: %d fit", fit)
	}
}

func TestStallCPUPer1000(t *testing.T) {
	for _, c := range []struct {
		pct      float64
		sessions int
		want     float64
	}{
		{1, 1000, 1},
		{1, 200, 5},   // fewer sessions: scaled up
		{1, 4000, 1},  // more: not scaled down
		{0.3, 0, 0.3}, // nothing stalled: as measured
	} {
		if got := stallCPUPer1000(c.pct, c.sessions); got != c.want {
			t.Errorf("stallCPUPer1000(%g, %d) = %g, want %g", c.pct, c.sessions, got, c.want)
		}
	}
}

func stallSettings() *settings {
	return &settings{mode: "stall", target: "127.0.0.1:0", opTimeout: 20 * time.Second,
		conns: 12, proveBytes: 64 << 10, resumeBytes: 128 << 10, resumeDeep: 1, rcvBuf: 64 << 10,
		sample: 100 * time.Millisecond, plateauWindow: 500 * time.Millisecond, plateauTimeout: 20 * time.Second,
		cpuWindow: 500 * time.Millisecond, resumeTimeout: 60 * time.Second, dialParallel: 4,
		rampTimeout: 30 * time.Second, maxFail: 5, tcpMemGuard: 0.7}
}

// checkStall fails t unless every session stalled, was read on with every
// byte right, and the run has its figures.
func checkStall(t *testing.T, r *Result) {
	t.Helper()
	st := r.Stall
	if st == nil || r.PerSession == nil || r.MemBefore == nil || r.MemAfter == nil || len(st.Samples) == 0 {
		t.Fatalf("stall: figures missing: %s", summarize(r))
	}
	if r.ConnsOpen != 12 || r.AliveChecked != 12 || r.AliveOK != 12 || st.DeepSessions != 1 || st.DeepOK != 1 {
		t.Fatalf("stall: not every session stalled and read on: %s", summarize(r))
	}
	// Warm-up 1 MiB, 12 × 64 KiB proven, 11 × 128 KiB and 1 × 64 MiB read on.
	if want := int64(1<<20 + 12*64<<10 + 11*128<<10 + stallDeepBytes); st.BytesVerified != want || st.CorruptedBytes != 0 {
		t.Fatalf("stall: %d bytes checked (want %d), %d corrupted", st.BytesVerified, want, st.CorruptedBytes)
	}
	if r.ProxyCPU == nil || !st.Plateau {
		t.Fatalf("stall: no CPU figure or no plateau: %s", summarize(r))
	}
}

// The stall mode through the relay (raw TCP): the plateau comes, every
// session reads on and every byte checks.
func TestStallThroughRelay(t *testing.T) {
	cfg := stallSettings()
	cfg.relay = true
	checkStall(t, runMode(t, cfg))
}

// The same through our proxy: WebSocket framing, and a proxy that may hold
// bytes of its own. Only correctness is checked here, not the figures.
func TestStallThroughOurProxy(t *testing.T) {
	cfg := stallSettings()
	cfg.proxyCmd, cfg.label = buildWebsockify(t)+" {listen} {target}", "ours"
	checkStall(t, runMode(t, cfg))
}
