package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// Result is one measurement run, written as one JSON object. It carries the
// fields of every mode (unused ones are omitted) so the report step can read
// a results file without knowing in advance what is in it.
type Result struct {
	Mode      string   `json:"mode"`
	Label     string   `json:"label"`            // which proxy: "ours", "python", "relay", ...
	Proxy     string   `json:"proxy"`            // the command template or URL used
	Transport string   `json:"transport"`        // "websocket" or "tcp"
	TLS       bool     `json:"tls,omitempty"`    // wss://: WebSocket over TLS
	Commit    string   `json:"commit,omitempty"` // git describe --always --dirty of the tree the proxy was built from
	Time      string   `json:"time"`
	Machine   string   `json:"machine,omitempty"` // CPU model, cores and kernel of the machine the run was on
	Path      string   `json:"path,omitempty"`    // path and query of the WebSocket handshake (-path)
	Round     int      `json:"round,omitempty"`   // number of the run in a series of interleaved rounds (-round)
	Error     string   `json:"error,omitempty"`   // the run failed; what it measured so far is kept
	Notes     []string `json:"notes,omitempty"`

	// throughput
	Dir        string  `json:"dir,omitempty"`
	Bytes      int64   `json:"bytes,omitempty"`
	FrameBytes int     `json:"frame_bytes,omitempty"`
	MBps       *Spread `json:"mbps,omitempty"` // 10^6 bytes per second, at the client

	// Proxy CPU while measuring, in % of one core (throughput, echo, setup).
	ProxyCPU *Spread `json:"proxy_cpu_pct,omitempty"`
	// The same for a server the proxy consults (-backend-pid; setup).
	BackendCPU *Spread `json:"backend_cpu_pct,omitempty"`
	// The same, window by window, for the client (this tool's own process)
	// and the target (its child process) (throughput, echo, setup).
	ClientCPU *Spread `json:"client_cpu_pct,omitempty"`
	TargetCPU *Spread `json:"target_cpu_pct,omitempty"`
	// Where the proxy, the client and the target could run, read from
	// /proc during the run; Pinned when the proxy's CPUs differ from the
	// client's (-proxy-cpus with loadtest under taskset).
	Affinity string `json:"affinity,omitempty"`
	Pinned   bool   `json:"pinned,omitempty"`
	// RoundsPooled is set by the report on a result standing for that many
	// round runs (withPooledRounds); never in a results file.
	RoundsPooled int `json:"-"`

	// echo and hold
	ConnsWanted int     `json:"conns_wanted,omitempty"`
	ConnsOpen   int     `json:"conns_open,omitempty"`
	RampSeconds float64 `json:"ramp_s,omitempty"`
	StopReason  string  `json:"stop_reason,omitempty"` // why opening stopped short of ConnsWanted

	// echo
	WindowSeconds  float64 `json:"window_s,omitempty"`
	ThinkMs        float64 `json:"think_ms,omitempty"`
	MsgBytes       int     `json:"msg_bytes,omitempty"`
	RoundTrips     int64   `json:"round_trips,omitempty"`
	RTPerSec       *Spread `json:"round_trips_per_s,omitempty"`
	RTTP50us       *Spread `json:"rtt_p50_us,omitempty"`
	RTTP99us       *Spread `json:"rtt_p99_us,omitempty"`
	RTTMaxUs       float64 `json:"rtt_max_us,omitempty"`
	ConnsLost      int     `json:"conns_lost,omitempty"`
	Background     int     `json:"background,omitempty"`      // bulk sessions beside the round trips
	BackgroundMBps *Spread `json:"background_mbps,omitempty"` // what they got echoed back, in all

	// setup
	Concurrency    int     `json:"concurrency,omitempty"`
	Sessions       int64   `json:"sessions,omitempty"`
	SessionsPerSec *Spread `json:"sessions_per_s,omitempty"`
	SetupP50us     *Spread `json:"setup_p50_us,omitempty"`
	SetupP99us     *Spread `json:"setup_p99_us,omitempty"`

	// hold
	MemBefore     *memSnapshot  `json:"mem_before,omitempty"`
	MemAfter      *memSnapshot  `json:"mem_after,omitempty"`
	SockBefore    *sockSnapshot `json:"sock_before,omitempty"`
	SockAfter     *sockSnapshot `json:"sock_after,omitempty"`
	PerSession    *perSession   `json:"per_session,omitempty"`
	AliveChecked  int           `json:"alive_checked,omitempty"`
	AliveOK       int           `json:"alive_ok,omitempty"`
	SettleSeconds float64       `json:"settle_s,omitempty"`
	Holders       int           `json:"holders,omitempty"`   // client processes holding the sessions
	MemCurve      []memPoint    `json:"mem_curve,omitempty"` // proxy memory as sessions were opened
	MemFit        *memFit       `json:"mem_fit,omitempty"`   // line through MemCurve: memory per session is its slope
	Slab          *slabUse      `json:"slab,omitempty"`      // kernel slab memory per session (root only)
	Preflight     []string      `json:"preflight,omitempty"` // kernel limits checked, and any changed for the run

	// stall (with the hold fields above: memory at the plateau, sessions
	// that read on correctly after it, and ProxyCPU while stalled)
	Stall *stallInfo `json:"stall,omitempty"`

	// openloop: one step per offered rate (openloop.go)
	OpenLoop []openLoopStep `json:"open_loop,omitempty"`

	// The machine around the run: CPU used by processes other than the
	// client, the target and a proxy this tool started, in % of one core
	// (averaged over the run), and the load average when it started.
	OtherCPUPct float64 `json:"other_cpu_pct"`
	LoadAvg1    float64 `json:"loadavg_1m"`

	Errors errorTally `json:"errors"`
}

// memPoint is the proxy's memory with Sessions held, read during the ramp.
type memPoint struct {
	Sessions     int   `json:"sessions"`
	PrivateDirty int64 `json:"private_dirty"`
	RSS          int64 `json:"rss"`
	TCPMemBytes  int64 `json:"tcp_mem_bytes"`
}

// perSession is (after - before) / sessions held, in bytes.
type perSession struct {
	PrivateDirty float64 `json:"private_dirty"`
	PSS          float64 `json:"pss"`
	RSS          float64 `json:"rss"`
	Anonymous    float64 `json:"anonymous"`
	Procs        float64 `json:"procs"`
	TCPMemBytes  float64 `json:"tcp_mem_bytes"` // system-wide, all three legs' sockets
}

// Spread summarises repeated measurements of one quantity.
type Spread struct {
	Median  float64   `json:"median"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
	Samples []float64 `json:"samples"`
}

func newSpread(samples []float64) *Spread {
	if len(samples) == 0 {
		return nil
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return &Spread{Median: med, Min: s[0], Max: s[len(s)-1], Samples: samples}
}

// String is "median [min–max]" with the given number format.
func (s *Spread) format(f func(float64) string) string {
	if s == nil {
		return "-"
	}
	if len(s.Samples) == 1 {
		return f(s.Median)
	}
	return fmt.Sprintf("%s [%s–%s]", f(s.Median), f(s.Min), f(s.Max))
}

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

// machineLine names the machine a run is on, for its result. The cores are
// the machine's online CPUs, not the ones this process may use: under
// taskset (BENCH_PIN=1) runtime.NumCPU and nproc count only those.
func machineLine() string {
	return fmt.Sprintf("%s, %d cores (nproc), Linux %s", cpuModel(), onlineCPUs(), kernelRelease())
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func writeJSON(w io.Writer, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(w, "%s\n", b)
}

// printOutcome prints a run's human-readable summary and, with -json, its
// result as one JSON object on stdout (the summary then goes to stderr).
func printOutcome(jsonOut bool, summary string, result any) {
	out := os.Stdout
	if jsonOut {
		out = os.Stderr
	}
	fmt.Fprint(out, strings.TrimRight(summary, "\n")+"\n")
	if jsonOut {
		writeJSON(os.Stdout, result)
	}
}

// fmtDurUs prints microseconds at a readable scale.
func fmtDurUs(us float64) string {
	switch {
	case us >= 1e6:
		return fmt.Sprintf("%.2f s", us/1e6)
	case us >= 1e3:
		return fmt.Sprintf("%.2f ms", us/1e3)
	default:
		return fmt.Sprintf("%.0f µs", us)
	}
}

// fmtBytes prints a byte count with binary units.
func fmtBytes(b float64) string {
	a := math.Abs(b)
	switch {
	case a >= 1<<30:
		return fmt.Sprintf("%.2f GiB", b/(1<<30))
	case a >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case a >= 10<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	default:
		return fmt.Sprintf("%.0f B", b)
	}
}

func fmtFloat(prec int) func(float64) string {
	return func(v float64) string { return fmt.Sprintf("%.*f", prec, v) }
}

// summarize is the one human-readable line (or few) for a result.
func summarize(r *Result) string {
	if r.Error != "" && r.MBps == nil && r.ConnsOpen == 0 && r.Sessions == 0 {
		what := strings.Join(strings.Fields(r.Mode+" "+r.Dir+" "+r.Label), " ")
		return fmt.Sprintf("%s: FAILED: %s", what, r.Error)
	}
	var s string
	switch r.Mode {
	case "throughput":
		s = fmt.Sprintf("throughput %s %s: %s bytes/run, %s MB/s", r.Dir, r.Label, fmtBytes(float64(r.Bytes)), r.MBps.format(fmtFloat(1)))
		if r.ConnsWanted > 1 {
			s += fmt.Sprintf(" in all over %d connections", r.ConnsWanted)
		}
		if r.MBps != nil {
			s += fmt.Sprintf(" (median [min–max] of %d)", len(r.MBps.Samples))
		}
	case "echo":
		s = fmt.Sprintf("echo %s: %d/%d conns, %d round trips of %d B in %d×%gs, %s/s, p50 %s, p99 %s, max %s",
			r.Label, r.ConnsOpen, r.ConnsWanted, r.RoundTrips, r.MsgBytes, windowsOf(r.RTPerSec), r.WindowSeconds,
			r.RTPerSec.format(fmtFloat(0)), r.RTTP50us.format(fmtDurUs), r.RTTP99us.format(fmtDurUs), fmtDurUs(r.RTTMaxUs))
		if r.ConnsLost > 0 {
			s += fmt.Sprintf(", %d conns lost", r.ConnsLost)
		}
		if r.Background > 0 {
			s += fmt.Sprintf(", beside %d bulk sessions echoing %s MB/s", r.Background, r.BackgroundMBps.format(fmtFloat(0)))
		}
	case "setup":
		s = fmt.Sprintf("setup %s: %s sessions/s with %d at once, p50 %s, p99 %s, %d sessions",
			r.Label, r.SessionsPerSec.format(fmtFloat(0)), r.Concurrency, r.SetupP50us.format(fmtDurUs), r.SetupP99us.format(fmtDurUs), r.Sessions)
	case "hold":
		s = fmt.Sprintf("hold %s: %d/%d sessions held", r.Label, r.ConnsOpen, r.ConnsWanted)
		if p := r.PerSession; p != nil {
			s += fmt.Sprintf(", proxy memory per session: %s private dirty by the slope (%s by two readings), %s PSS, %s RSS (%d processes); kernel slab %s/session; %d/%d still echoing",
				fmtBytes(heldBytesPerSession(r)), fmtBytes(p.PrivateDirty), fmtBytes(p.PSS), fmtBytes(p.RSS), r.MemAfter.Procs, slabCell(r.Slab), r.AliveOK, r.AliveChecked)
		}
	case "openloop":
		s = openLoopSummary(r)
	case "stall":
		s = fmt.Sprintf("stall %s: %d/%d sessions stalled", r.Label, r.ConnsOpen, r.ConnsWanted)
		if p, st := r.PerSession, r.Stall; p != nil && st != nil {
			s += fmt.Sprintf(", proxy memory per stalled session: %s private dirty, %s RSS, read %s; kernel TCP memory %s/session",
				fmtBytes(p.PrivateDirty), fmtBytes(p.RSS), plateauText(st), fmtBytes(p.TCPMemBytes))
			if r.ProxyCPU != nil {
				s += fmt.Sprintf("; proxy CPU while stalled %.1f%% over %g s", r.ProxyCPU.Median, st.CPUWindowS)
				if io := st.IOInCPUWindow; io != nil {
					s += fmt.Sprintf(" (%d read/write calls, %s)", io.Calls, fmtBytes(float64(io.Bytes)))
				}
			}
			s += fmt.Sprintf("; %d/%d read on correctly (%d/%d of them to %s), %s verified, %d corrupted",
				r.AliveOK, r.AliveChecked, st.DeepOK, st.DeepSessions, fmtBytes(float64(st.DeepBytes)),
				fmtBytes(float64(st.BytesVerified)), st.CorruptedBytes)
		}
	}
	if r.ProxyCPU != nil && r.Mode != "stall" {
		s += fmt.Sprintf(", proxy CPU %s%%", r.ProxyCPU.format(fmtFloat(0)))
	}
	if r.BackendCPU != nil {
		s += fmt.Sprintf(", backend CPU %s%%", r.BackendCPU.format(fmtFloat(0)))
	}
	if r.ClientCPU != nil || r.TargetCPU != nil {
		s += fmt.Sprintf(", client CPU %s%%, target CPU %s%%", r.ClientCPU.format(fmtFloat(0)), r.TargetCPU.format(fmtFloat(0)))
	}
	if r.Pinned {
		s += " (" + r.Affinity + ")"
	}
	if r.OtherCPUPct >= 20 {
		s += fmt.Sprintf(" [other processes used %.0f%% of a core meanwhile]", r.OtherCPUPct)
	}
	if r.StopReason != "" {
		s += "; stopped opening: " + r.StopReason
	}
	if n := r.Errors.total(); n > 0 {
		s += fmt.Sprintf("; %d errors %v", n, r.Errors.Count)
	}
	if r.Error != "" {
		s += "; FAILED: " + r.Error
	}
	return s
}

func windowsOf(s *Spread) int {
	if s == nil {
		return 0
	}
	return len(s.Samples)
}

// plateauText says when a stall run read the proxy's memory.
func plateauText(st *stallInfo) string {
	s := fmt.Sprintf("not flat after %.0f s", st.PlateauSeconds)
	if st.Plateau {
		s = fmt.Sprintf("flat after %.1f s", st.PlateauSeconds)
	}
	switch {
	case st.QuietCalls == 0: // results from before the quiet wait
	case st.Quiet:
		s += fmt.Sprintf(", I/O quiet %.0f s later", st.QuietSeconds)
	default:
		s += fmt.Sprintf(", I/O still moving %.0f s later", st.QuietSeconds)
	}
	if st.ProxyGrewBytes > st.ToleranceBytes {
		s += fmt.Sprintf(", then %s more over the CPU window", fmtBytes(float64(st.ProxyGrewBytes)))
	}
	return s
}
