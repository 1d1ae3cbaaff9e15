package main

import (
	"fmt"
	"slices"
	"strings"
)

// The report's sections on wss beside ws, stalled sessions and round trips
// beside bulk transfers, and their targets.

// The previous build's wss figures (BENCHMARKS.md, "wss sessions": measured
// by hand, ws and wss back to back on the same build), the reference of the
// wss throughput targets.
const (
	wssBaselineDate      = "27 Nov 2026"
	wssBaselineDownMBps  = 401.0
	wssBaselineUpMBps    = 381.0
	wssBaselineDownRatio = 0.51 // wss / ws
	wssBaselineUpRatio   = 0.50
	wssBaselineSessionB  = 70.0 * 1024 // private dirty per held wss session, 2,000 held
	wssBaselineMemRatio  = 23.0
)

// Targets of the session engine.
const (
	targetWSSBytesPerSession   = 24 << 10  // held wss session, private dirty
	targetStallBytesPerSession = 128 << 10 // stalled session, private dirty at the plateau
	targetStallCPUPct          = 2.0       // % of one core ...
	targetStallCPUSessions     = 1000      // ... for this many stalled sessions
	targetEchoBesideRatio      = 1.2       // p50 and p99 beside bulk, over the relay's
)

// wssLabel is the label of our proxy's wss runs.
func wssLabel(ours string) string { return ours + "-wss" }

func wssVerdicts(v verdicts, rs resultSet, ours string) {
	for _, d := range []struct {
		dir         string
		base, ratio float64
	}{{"down", wssBaselineDownMBps, wssBaselineDownRatio}, {"up", wssBaselineUpMBps, wssBaselineUpRatio}} {
		name := fmt.Sprintf("wss throughput %s, one connection, ≥ %.0f MB/s (the previous build, %s)", d.dir, d.base, wssBaselineDate)
		w, ws := rs.findTput(wssLabel(ours), d.dir, 1), rs.findTput(ours, d.dir, 1)
		if mbps(w) == nil {
			v.row(name, "", false, false)
			continue
		}
		value := fmt.Sprintf("%s MB/s; wss / ws %s (%s: %.2f)", fmtMBps(w.MBps.Median), ratio(w.MBps, mbps(ws)), wssBaselineDate, d.ratio)
		from := []*Result{w}
		if ws != nil {
			from = append(from, ws)
		}
		v.row(name, value, w.MBps.Median >= d.base, true, from...)
	}
	h := rs.find("hold", wssLabel(ours), "")
	name := fmt.Sprintf("≤ %.0f KiB proxy memory per held wss session, every session held", float64(targetWSSBytesPerSession)/1024)
	if h == nil || h.PerSession == nil {
		v.row(name, "", false, false)
		return
	}
	all := h.ConnsOpen == h.ConnsWanted && h.AliveOK == h.AliveChecked
	v.row(name, fmt.Sprintf("%s private dirty, %d of %d held (%s: %s)", fmtBytes(heldBytesPerSession(h)), h.ConnsOpen, h.ConnsWanted,
		wssBaselineDate, fmtBytes(wssBaselineSessionB)),
		all && heldBytesPerSession(h) <= targetWSSBytesPerSession, true, h)
}

// stallCPUPer1000 scales a stall run's CPU to 1,000 sessions: up, linearly,
// when it stalled fewer (fixed costs are scaled too, so this errs against
// the proxy), and not down when it stalled more.
func stallCPUPer1000(pct float64, sessions int) float64 {
	if sessions <= 0 {
		return pct
	}
	return pct * max(1, float64(targetStallCPUSessions)/float64(sessions))
}

// stallComplete says whether a stall run stalled every session it wanted
// (or as many as the kernel's TCP memory allowed: see tcpMemCheck), read
// memory on a plateau that held through the CPU window, and got every
// session to read on correctly.
func stallComplete(r *Result) bool {
	return r.Stall != nil && r.Stall.Plateau && r.Stall.ProxyGrewBytes <= r.Stall.ToleranceBytes &&
		(r.ConnsOpen == r.ConnsWanted || r.Stall.GuardStopped) &&
		r.AliveOK == r.AliveChecked && r.Stall.DeepOK == r.Stall.DeepSessions && r.Stall.CorruptedBytes == 0
}

func stallVerdicts(v verdicts, rs resultSet, ours string) {
	r := rs.find("stall", ours, "")
	memName := fmt.Sprintf("≤ %.0f KiB proxy memory per stalled session (memory flat, every session stalled, then read on correctly)",
		float64(targetStallBytesPerSession)/1024)
	cpuName := fmt.Sprintf("%s stalled sessions cost ≤ %g%% of one core", fmtCount(targetStallCPUSessions), targetStallCPUPct)
	if r == nil || r.PerSession == nil || r.Stall == nil {
		v.row(memName, "", false, false)
		v.row(cpuName, "", false, false)
		return
	}
	st := r.Stall
	guard := ""
	if st.GuardStopped {
		guard = " (the kernel TCP memory guard stopped opening)"
	}
	v.row(memName, fmt.Sprintf("%s private dirty, %d of %d stalled%s, %s, %d of %d read on correctly",
		fmtBytes(r.PerSession.PrivateDirty), r.ConnsOpen, r.ConnsWanted, guard, plateauText(st), r.AliveOK, r.AliveChecked),
		stallComplete(r) && r.PerSession.PrivateDirty <= targetStallBytesPerSession, true, r)
	if r.ProxyCPU == nil {
		v.row(cpuName, "", false, false)
		return
	}
	pct := r.ProxyCPU.Median
	value := fmt.Sprintf("%.1f%% with %d stalled", pct, r.ConnsOpen)
	if r.ConnsOpen < targetStallCPUSessions {
		value += fmt.Sprintf(" (%.1f%% scaled to %s)", stallCPUPer1000(pct, r.ConnsOpen), fmtCount(targetStallCPUSessions))
	}
	v.row(cpuName, value, st.Plateau && stallCPUPer1000(pct, r.ConnsOpen) <= targetStallCPUPct, true, r)
}

// besideSummary is a label's echo runs beside bulk sessions, pooled: the
// medians are over every window of every run.
type besideSummary struct {
	runs                   []*Result
	p50, p99, rate, bulk   *Spread
	cpu                    *Spread
	maxUs                  float64
	connsOpen, connsWant   int
	background, windows    int
	windowSeconds, thinkMs float64
	msgBytes               int
}

func summarizeBeside(runs []*Result) *besideSummary {
	if len(runs) == 0 {
		return nil
	}
	s := &besideSummary{runs: runs, connsOpen: runs[0].ConnsOpen, connsWant: runs[0].ConnsWanted,
		background: runs[0].Background, windowSeconds: runs[0].WindowSeconds, thinkMs: runs[0].ThinkMs, msgBytes: runs[0].MsgBytes}
	var p50, p99, rate, bulk, cpu []float64
	for _, r := range runs {
		p50 = append(p50, samplesOf(r.RTTP50us)...)
		p99 = append(p99, samplesOf(r.RTTP99us)...)
		rate = append(rate, samplesOf(r.RTPerSec)...)
		bulk = append(bulk, samplesOf(r.BackgroundMBps)...)
		cpu = append(cpu, samplesOf(r.ProxyCPU)...)
		s.maxUs = max(s.maxUs, r.RTTMaxUs)
		s.connsOpen = min(s.connsOpen, r.ConnsOpen)
		s.windows += len(samplesOf(r.RTTP50us))
	}
	s.p50, s.p99, s.rate, s.bulk, s.cpu = newSpread(p50), newSpread(p99), newSpread(rate), newSpread(bulk), newSpread(cpu)
	return s
}

func samplesOf(s *Spread) []float64 {
	if s == nil {
		return nil
	}
	return s.Samples
}

func echoBesideVerdict(v verdicts, rs resultSet, ours string) {
	o, r := summarizeBeside(rs.echoBeside(ours)), summarizeBeside(rs.echoBeside("relay"))
	name := fmt.Sprintf("round trips beside bulk sessions: p50 and p99 ≤ %.1f × relay", targetEchoBesideRatio)
	if o == nil || r == nil || o.p50 == nil || r.p50 == nil || o.p99 == nil || r.p99 == nil {
		v.row(name, "", false, false)
		return
	}
	q50, q99 := o.p50.Median/r.p50.Median, o.p99.Median/r.p99.Median
	value := fmt.Sprintf("p50 %.2f ×, p99 %.2f × relay (%s / %s against %s / %s)", q50, q99,
		fmtDurUs(o.p50.Median), fmtDurUs(o.p99.Median), fmtDurUs(r.p50.Median), fmtDurUs(r.p99.Median))
	v.row(name, value, q50 <= targetEchoBesideRatio && q99 <= targetEchoBesideRatio, true, append(slices.Clone(o.runs), r.runs...)...)
}

// writeWSS puts our proxy's wss runs beside its ws runs and the previous
// build's wss figures.
func writeWSS(b *strings.Builder, rs resultSet, ours string) {
	wl := wssLabel(ours)
	down, up, hold := rs.findTput(wl, "down", 1), rs.findTput(wl, "up", 1), rs.find("hold", wl, "")
	b.WriteString("### wss beside ws\n\n")
	fmt.Fprintf(b, "Our proxy with `--cert` (a self-signed ECDSA P-256 certificate; TLS 1.3) and the client speaking wss:// (label %s), "+
		"beside the same proxy's plain ws rows above, with the same bytes and runs. The client decrypts and encrypts on the same two cores, so wss / ws is what the "+
		"three processes reach together. The previous build's wss figures, measured by hand on %s (\"wss sessions\" above), "+
		"are the reference of the targets.\n\n", wl, wssBaselineDate)
	b.WriteString("| measurement | ws | wss | wss / ws | previous build's wss (" + wssBaselineDate + ") | its wss / ws | proxy CPU % ws / wss | commit |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, d := range []struct {
		dir         string
		w           *Result
		base, ratio float64
	}{{"down", down, wssBaselineDownMBps, wssBaselineDownRatio}, {"up", up, wssBaselineUpMBps, wssBaselineUpRatio}} {
		ws := rs.findTput(ours, d.dir, 1)
		cell := func(r *Result) string {
			if s, ok := missing(r); ok {
				return s
			}
			return r.MBps.format(fmtMBps) + " MB/s"
		}
		fmt.Fprintf(b, "| throughput %s, one connection | %s | %s | %s | %.0f MB/s | %.2f | %s / %s | %s |\n",
			d.dir, cell(ws), cell(d.w), ratio(mbps(d.w), mbps(ws)), d.base, d.ratio,
			cpuCell(ws), cpuCell(d.w), commitsOfSome(ws, d.w))
	}
	ws := rs.find("hold", ours, "")
	memCell := func(r *Result) string {
		if s, ok := missing(r); ok {
			return s
		}
		return fmt.Sprintf("%s (%d held, %d of %d echoing)", fmtBytes(heldBytesPerSession(r)), r.ConnsOpen, r.AliveOK, r.AliveChecked)
	}
	q := "-"
	if ws != nil && hold != nil && ws.PerSession != nil && hold.PerSession != nil && heldBytesPerSession(ws) > 0 {
		q = fmt.Sprintf("%.1f", heldBytesPerSession(hold)/heldBytesPerSession(ws))
	}
	fmt.Fprintf(b, "| proxy memory per held session, private dirty | %s | %s | %s | %s (2000 held) | %.0f | - | %s |\n\n",
		memCell(ws), memCell(hold), q, fmtBytes(wssBaselineSessionB), wssBaselineMemRatio, commitsOfSome(ws, hold))
}

// commitsOfSome is commitsOf for the results that exist.
func commitsOfSome(rs ...*Result) string {
	var have []*Result
	for _, r := range rs {
		if r != nil {
			have = append(have, r)
		}
	}
	return commitsOf(have...)
}

// writeEchoBeside compares round trips beside bulk sessions, ours against
// the relay (the runs alternate between them).
func writeEchoBeside(b *strings.Builder, rs resultSet, ours string) {
	labels := []string{ours, "relay"}
	sums := map[string]*besideSummary{}
	var any *besideSummary
	for _, l := range labels {
		if s := summarizeBeside(rs.echoBeside(l)); s != nil {
			sums[l] = s
			if any == nil {
				any = s
			}
		}
	}
	b.WriteString("### Round trips beside bulk transfers\n\n")
	if any != nil {
		fmt.Fprintf(b, "%d connections doing round trips as above (%d bytes, %.0f ms pauses on average) while %d more sessions each keep sending 64 KiB frames "+
			"to the echo target and reading its echo back, as fast as they go. Ours and the relay take turns, one run each at a time, so both see the machine "+
			"in the same state; p50 and p99 are the median [min–max] over every %g s window of every run.\n\n",
			any.connsWant, any.msgBytes, any.thinkMs, any.background, any.windowSeconds)
	}
	b.WriteString("| proxy | runs × windows | connections open | p50 | p99 | max | round trips/s | bulk echoed, MB/s | proxy CPU % | p50 / p99 vs relay | commit |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	relay := sums["relay"]
	for _, l := range labels {
		s := sums[l]
		if s == nil {
			fmt.Fprintf(b, "| %s | not measured yet | | | | | | | | | |\n", l)
			continue
		}
		vs := "-"
		if relay != nil {
			vs = ratio(s.p50, relay.p50) + " / " + ratio(s.p99, relay.p99)
		}
		fmt.Fprintf(b, "| %s | %d × %d | %d of %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", l,
			len(s.runs), s.windows/len(s.runs), s.connsOpen, s.connsWant, s.p50.format(fmtDurUs), s.p99.format(fmtDurUs), fmtDurUs(s.maxUs),
			s.rate.format(fmtFloat(0)), s.bulk.format(fmtFloat(0)), s.cpu.format(fmtFloat(0)), vs, commitsOf(s.runs...))
	}
	b.WriteString("\n")
}

// writeStall is the stalled sessions' table.
func writeStall(b *strings.Builder, rs resultSet, labels []string) {
	var ran []*Result
	for _, l := range labels {
		if r := rs.find("stall", l, ""); r != nil {
			ran = append(ran, r)
		}
	}
	b.WriteString("### Stalled sessions: proxy memory and CPU\n\n")
	if len(ran) == 0 {
		b.WriteString("Not measured yet.\n\n")
		return
	}
	var st *stallInfo
	for _, r := range ran {
		if r.Stall != nil {
			st = r.Stall
			break
		}
	}
	if st != nil {
		fmt.Fprintf(b, "Each session asks the target for an endless seeded byte stream, reads and checks the first %s, then stops reading while the target "+
			"keeps writing as fast as it can (the client's receive buffer is %s, the target's send buffer %s, both as asked of the kernel). "+
			"Memory is the proxy's process tree, private dirty, above its reading before the sessions, divided by the sessions stalled, "+
			"read once it is flat: sampled every few hundred ms, flat when every reading of the last %g s lies within 2%% of what the sessions added "+
			"(or 1 KiB per session, if more) of every other, waiting at most %g s. The kernel goes on growing the busy sockets' buffers for a while after that, "+
			"and the proxy moves what fits: the run then waits, at most %s, for the proxy's read and write calls to go quiet "+
			"(at most %d in a second, from `/proc/PID/io`). Proxy CPU is then read over %g s "+
			"(`/proc/PID/stat` utime + stime), while nothing can move, with the read and write calls the proxy made meanwhile and the bytes they moved "+
			"(`/proc/PID/io`; the relay's `splice(2)` is not counted there). Last, every session reads on %s and %d of them on to %s "+
			"(more than every buffer on the path holds, so the proxy must have resumed reading from the target), each byte checked against the stream. "+
			"Kernel TCP memory is the machine's `/proc/net/sockstat` change, all legs (the proxy's two sockets' buffers are the proxy's to size)%s.\n\n",
			fmtBytes(float64(st.ProveBytes)), rcvBufText(st.RcvBufBytes), fmtBytes(float64(streamSndBuf)),
			st.PlateauWindowS, st.PlateauTimeoutS, quietTimeoutText(st), st.QuietCalls, st.CPUWindowS, fmtBytes(float64(st.ResumeBytes)), st.DeepSessions, fmtBytes(float64(st.DeepBytes)),
			guardText(st))
	}
	b.WriteString("| proxy | sessions stalled | private dirty / session | RSS / session | kernel TCP mem / session | memory read | proxy CPU % while stalled, and its I/O meanwhile | read on correctly | bytes checked (corrupted) | opening stopped because | commit |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range ran {
		if s, ok := missing(r); ok || r.Stall == nil {
			if s == "" {
				s = "no stall figures"
			}
			fmt.Fprintf(b, "| %s | %s | | | | | | | | | %s |\n", r.Label, s, commitsOf(r))
			continue
		}
		p, st := r.PerSession, r.Stall
		cpu := "-"
		if r.ProxyCPU != nil {
			cpu = fmt.Sprintf("%.1f over %g s", r.ProxyCPU.Median, st.CPUWindowS)
			if io := st.IOInCPUWindow; io != nil {
				cpu += fmt.Sprintf("; %s read/write calls, %s", fmtCount(int(io.Calls)), fmtBytes(float64(io.Bytes)))
			}
		}
		fmt.Fprintf(b, "| %s | %d of %d | %s | %s | %s | %s | %s | %d of %d (%d of %d to %s) | %s (%d) | %s | %s |\n", r.Label,
			r.ConnsOpen, r.ConnsWanted, fmtBytes(p.PrivateDirty), fmtBytes(p.RSS), fmtBytes(p.TCPMemBytes), plateauText(st), cpu,
			r.AliveOK, r.AliveChecked, st.DeepOK, st.DeepSessions, fmtBytes(float64(st.DeepBytes)),
			fmtBytes(float64(st.BytesVerified)), st.CorruptedBytes, orDash(oneLine(r.StopReason)), commitsOf(r))
	}
	b.WriteString("\n")
}

// guardText says when a stall run stopped opening sessions to spare the
// machine's TCP memory.
func guardText(st *stallInfo) string {
	if st.TCPGuard <= 0 || st.TCPPressure <= 0 {
		return ""
	}
	return fmt.Sprintf("; the tool stops opening sessions when it reaches %.0f%% of the kernel's pressure threshold (`tcp_mem`, %s here), past which the kernel shrinks every socket's buffers, other programs' too",
		100*st.TCPGuard, fmtBytes(float64(st.TCPPressure)))
}

func rcvBufText(n int) string {
	if n <= 0 {
		return "autotuned"
	}
	return fmtBytes(float64(n))
}

// fmtCount writes 1000 as 1,000.
func fmtCount(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// quietTimeoutText is how long a stall run waited at most for the proxy's
// I/O to go quiet, as the results say.
func quietTimeoutText(st *stallInfo) string {
	if st.QuietCalls == 0 {
		return "no time (results from before this wait)"
	}
	return fmt.Sprintf("%g s", st.QuietTimeoutS)
}
