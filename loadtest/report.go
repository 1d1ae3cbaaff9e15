package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
)

// Markers around the generated part of BENCHMARKS.md. Everything outside
// them is hand-written and kept as is.
const (
	beginMarker = "<!-- BEGIN GENERATED: bench/run.sh rewrites everything down to the END marker -->"
	endMarker   = "<!-- END GENERATED -->"
)

// Targets the proxy is held to (see BENCHMARKS.md).
const (
	targetThroughputRatio = 0.9
	targetSetupRatio      = 0.9
	targetBytesPerSession = 2048
	targetScaleSessions   = 100000 // held by our proxy with --workers (label ours-workers)
)

type reportFlags struct {
	md, order, ours                                string
	pythonVersion, nodeVersion, goVersion, elapsed string
	logs, plot                                     string
}

// reportMain reads JSON results (one object per line) and rewrites the
// generated section of a Markdown file with tables, ratios to the relay and
// the verdict on each target.
func reportMain(args []string) error {
	var f reportFlags
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.StringVar(&f.md, "md", "BENCHMARKS.md", "Markdown file whose generated section is rewritten")
	fs.StringVar(&f.order, "order", "ours,python,node,relay", "proxy labels in table order")
	fs.StringVar(&f.ours, "ours", "ours", "label of the proxy the targets apply to")
	fs.StringVar(&f.pythonVersion, "python-version", "", "version of Python websockify, for the machine line")
	fs.StringVar(&f.nodeVersion, "node-version", "", "version of the npm websockify (and what it runs on), for the machine line")
	fs.StringVar(&f.goVersion, "go-version", runtime.Version(), "Go version, for the machine line")
	fs.StringVar(&f.elapsed, "elapsed", "", "how long the whole run took, for the machine line")
	fs.StringVar(&f.logs, "logs", "", "directory of proxy logs to quote error lines from")
	fs.StringVar(&f.plot, "plot", "", "PNG of memory against sessions held (loadtest plot) to show, relative to the Markdown file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("no results files given (usage: loadtest report [flags] RESULTS.jsonl ...)")
	}
	var results []*Result
	for _, path := range fs.Args() {
		rs, err := readResults(path)
		if err != nil {
			return err
		}
		results = append(results, rs...)
	}
	var b strings.Builder
	writeReport(&b, results, &f)
	return replaceGenerated(f.md, b.String())
}

func readResults(path string) ([]*Result, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var out []*Result
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var r Result
		if err := json.Unmarshal(line, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, &r)
	}
	return out, sc.Err()
}

// replaceGenerated swaps the text between the markers, or appends the
// section when the file has none yet.
func replaceGenerated(path, body string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	section := beginMarker + "\n\n" + body + "\n" + endMarker + "\n"
	s := string(old)
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	if i >= 0 && j > i {
		s = s[:i] + section + strings.TrimPrefix(s[j+len(endMarker):], "\n")
	} else {
		if s != "" && !strings.HasSuffix(s, "\n\n") {
			s += "\n"
		}
		s += section
	}
	return os.WriteFile(path, []byte(s), 0o644)
}

// table of results: find(mode, label, dir) returns the latest matching run.
// Echo runs beside bulk sessions (-background) and runs in interleaved
// rounds (-round) have their own sections and are left out: see echoBeside
// and writeTokenSetup.
type resultSet []*Result

func (rs resultSet) find(mode, label, dir string) *Result {
	for i := len(rs) - 1; i >= 0; i-- {
		r := rs[i]
		if r.Mode == mode && r.Label == label && r.Dir == dir && r.Background == 0 && !isRoundRun(r) {
			return r
		}
	}
	return nil
}

// echoBeside returns label's echo runs beside bulk sessions that measured
// something, in the order they ran.
func (rs resultSet) echoBeside(label string) []*Result {
	var out []*Result
	for _, r := range rs {
		if r.Mode == "echo" && r.Label == label && r.Background > 0 && r.RTTP50us != nil {
			out = append(out, r)
		}
	}
	return out
}

// findTput returns the latest throughput run of label in dir over conns
// connections at once.
func (rs resultSet) findTput(label, dir string, conns int) *Result {
	for i := len(rs) - 1; i >= 0; i-- {
		r := rs[i]
		if r.Mode == "throughput" && r.Label == label && r.Dir == dir && tputConns(r) == conns && !isRoundRun(r) {
			return r
		}
	}
	return nil
}

// tputConns is how many connections a throughput run used; results from
// before -conns existed say nothing and used one.
func tputConns(r *Result) int {
	return max(r.ConnsWanted, 1)
}

func writeReport(b *strings.Builder, all []*Result, f *reportFlags) {
	order := strings.Split(f.order, ",")
	rs := withPooledRounds(all, order)
	// labelsFor is -order, then the labels it does not name that ran mode
	// (such as our proxy with --workers, which only runs hold).
	// wss runs (label ours-wss) and runs in rounds (the token plugins) have
	// their own sections.
	labelsFor := func(mode string) []string {
		labels := slices.Clone(order)
		for _, r := range all {
			if r.Mode == mode && !r.TLS && r.Background == 0 && !isRoundRun(r) && !slices.Contains(labels, r.Label) {
				labels = append(labels, r.Label)
			}
		}
		return labels
	}
	writeMachineLine(b, all)
	fmt.Fprintf(b, " Go: %s. Peers: Python websockify %s (Debian package); Node websockify %s.",
		f.goVersion, orDash(f.pythonVersion), orDash(f.nodeVersion))
	if len(all) > 0 {
		first, last := all[0].Time, all[0].Time
		for _, r := range all {
			first, last = min(first, r.Time), max(last, r.Time)
		}
		fmt.Fprintf(b, " Runs from %s to %s", first, last)
		if f.elapsed != "" {
			fmt.Fprintf(b, "; the last `make bench` took %s", f.elapsed)
		}
		b.WriteString(".")
	}
	b.WriteString("\n\nFigures are the median of the repeats with [min–max] of the repeats beside it (the \"runs\" or \"windows\" the table names); a figure without brackets comes from one run. " +
		"\"vs relay\" is the median over the relay's median. MB/s is 10^6 bytes per second. " +
		"Proxy CPU is the proxy's whole process tree, in % of one core, during the measurement; client CPU is loadtest's own process (the client, every goroutine) " +
		"and target CPU its target child process (echo server, byte source or sink), read over the same windows, so that a ratio can be read against what the other two took from the machine's cores. " +
		"Ours and the relay run the one-connection throughput and set-up in interleaved rounds, the order turning each round: their figures pool every run of every round, " +
		"and their \"vs relay\" is each round's ratio, median [worst–best] over the rounds; the Targets table judges each of those targets on its worst round.\n\n")

	writeMachineNoise(b, all)
	writeCommits(b, all)
	writeVerdicts(b, rs, f.ours)
	for _, n := range tputConnCounts(all) {
		writeThroughput(b, rs, labelsFor("throughput"), n)
	}
	writeWSS(b, rs, f.ours)
	writeEcho(b, rs, labelsFor("echo"))
	writeEchoBeside(b, rs, f.ours)
	writeOpenLoop(b, rs, f.ours)
	writeSetup(b, rs, labelsFor("setup"))
	writePinned(b, rs, f.ours)
	writeTokenSetup(b, rs, f.ours)
	writeMetricsCost(b, rs, f.ours)
	writeHold(b, rs, labelsFor("hold"))
	writeStall(b, rs, labelsFor("stall"))
	if f.plot != "" {
		b.WriteString("### Memory against sessions held\n\n")
		b.WriteString("The proxy's memory (private dirty, whole process tree) above its idle memory (the intercept of the line fitted to the readings), " +
			"read every twentieth of the way (and every 2 s) while each hold run opened its sessions; both axes logarithmic. " +
			"Drawn by `loadtest plot` from the same results.\n\n")
		fmt.Fprintf(b, "![proxy memory against sessions held](%s)\n\n", f.plot)
	}
	writeNotes(b, all)
	if f.logs != "" {
		writeLogExcerpts(b, f.logs)
	}
}

// missing is what a table cell says for a proxy with no result.
func missing(r *Result) (string, bool) {
	if r == nil {
		return "not measured yet", true
	}
	if r.Error != "" && r.MBps == nil && r.RTTP50us == nil && r.SessionsPerSec == nil && r.PerSession == nil {
		return "failed: " + oneLine(r.Error), true
	}
	return "", false
}

func ratio(a, b *Spread) string {
	if a == nil || b == nil || b.Median == 0 {
		return "-"
	}
	q := a.Median / b.Median
	if q < 0.1 {
		return fmt.Sprintf("%.3f", q)
	}
	return fmt.Sprintf("%.2f", q)
}

// noisyOtherCPU is the share of a core other processes may take during a run
// before the report calls that run noisy.
const noisyOtherCPU = 25

// writeMachineNoise says how busy the rest of the machine was: on a shared
// machine other jobs take CPU from the client, the target and the proxy.
func writeMachineNoise(b *strings.Builder, all []*Result) {
	var pcts []float64
	var noisy []string
	for _, r := range all {
		if r.OtherCPUPct < 0 {
			continue
		}
		pcts = append(pcts, r.OtherCPUPct)
		if r.OtherCPUPct > noisyOtherCPU {
			what := r.Label + " " + runName(r)
			noisy = append(noisy, fmt.Sprintf("%s (%.0f%%)", what, r.OtherCPUPct))
		}
	}
	sp := newSpread(pcts)
	if sp == nil {
		return
	}
	fmt.Fprintf(b, "Processes outside the benchmark used %s%% of one core during the runs (median [min–max] over runs).", sp.format(fmtFloat(0)))
	if len(noisy) > 1 && len(noisy) == len(pcts) {
		// Listing every run says less than this.
		fmt.Fprintf(b, " **Every run was noisy** (over %d%%: the machine was shared with other work, rerun for firm figures).", noisyOtherCPU)
	} else if len(noisy) > 0 {
		fmt.Fprintf(b, " **Noisy runs** (over %d%%: the machine was shared with other work, rerun for firm figures): %s.", noisyOtherCPU, strings.Join(noisy, ", "))
	}
	b.WriteString("\n\n")
}

// tputConnCounts lists the connection counts throughput was measured with:
// 1 first (the table the targets refer to), then the others ascending.
func tputConnCounts(all []*Result) []int {
	ns := []int{1}
	for _, r := range all {
		if r.Mode == "throughput" && !r.TLS && !slices.Contains(ns, tputConns(r)) {
			ns = append(ns, tputConns(r))
		}
	}
	slices.Sort(ns)
	return ns
}

func writeThroughput(b *strings.Builder, rs resultSet, labels []string, conns int) {
	if conns == 1 {
		b.WriteString("### Throughput, one connection\n\n")
		b.WriteString("down: the target sends, the client reads. up: the client sends 64 KiB frames, the target counts and acks the last byte.\n\n")
	} else {
		fmt.Fprintf(b, "### Throughput, %d connections at once\n\n", conns)
		fmt.Fprintf(b, "As above, on %d connections opened before the clock starts, each moving 1/%d of the bytes at the same time; "+
			"MB/s is their sum, from the first go byte or frame until the last connection's last byte or ack.\n\n", conns, conns)
	}
	b.WriteString("| proxy | down MB/s | vs relay | up MB/s | vs relay | bytes per run | runs down / up | proxy CPU % down / up | client / target CPU % down | client / target CPU % up |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	relayDown, relayUp := rs.findTput("relay", "down", conns), rs.findTput("relay", "up", conns)
	for _, l := range labels {
		down, up := rs.findTput(l, "down", conns), rs.findTput(l, "up", conns)
		if down == nil && up == nil {
			fmt.Fprintf(b, "| %s | not measured yet | | | | | | | | |\n", l)
			continue
		}
		cell := func(r *Result) string {
			if s, ok := missing(r); ok {
				return s
			}
			s := r.MBps.format(fmtMBps)
			if r.Error != "" {
				// Some runs finished before one failed: say so beside them.
				s += " (then failed, see below)"
			}
			return s
		}
		sizes := []string{}
		for _, r := range []*Result{down, up} {
			if r != nil && !slices.Contains(sizes, fmtBytes(float64(r.Bytes))) {
				sizes = append(sizes, fmtBytes(float64(r.Bytes)))
			}
		}
		downVs, upVs := ratio(mbps(down), mbps(relayDown)), ratio(mbps(up), mbps(relayUp))
		if conns == 1 {
			downVs = vsRelayCell(rs, l, mainMeasures[0], mbps(down), mbps(relayDown))
			upVs = vsRelayCell(rs, l, mainMeasures[1], mbps(up), mbps(relayUp))
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s | %s |\n", l,
			cell(down), downVs, cell(up), upVs,
			strings.Join(sizes, ", "), runsCell(down), runsCell(up), cpuCell(down), cpuCell(up), sideCPUCell(down), sideCPUCell(up))
	}
	b.WriteString("\n")
}

// fmtMBps keeps two significant digits for slow proxies, whose rates over
// many connections can fall below 10 MB/s.
func fmtMBps(v float64) string {
	switch {
	case v < 1:
		return fmt.Sprintf("%.2f", v)
	case v < 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// runsCell is how many runs a throughput figure is the median of.
func runsCell(r *Result) string {
	if r == nil || r.MBps == nil {
		return "0"
	}
	return fmt.Sprint(len(r.MBps.Samples))
}

func mbps(r *Result) *Spread {
	if r == nil {
		return nil
	}
	return r.MBps
}

func cpuCell(r *Result) string {
	if r == nil {
		return "-"
	}
	return r.ProxyCPU.format(fmtFloat(0))
}

func writeEcho(b *strings.Builder, rs resultSet, labels []string) {
	var any *Result
	for _, l := range labels {
		if r := rs.find("echo", l, ""); r != nil {
			any = r
			break
		}
	}
	b.WriteString("### Round trips under many connections\n\n")
	if any != nil {
		fmt.Fprintf(b, "%d connections wanted, each sending %d bytes and waiting for the echo, then pausing %.0f ms on average; %s of %g s on the same connections.\n\n",
			any.ConnsWanted, any.MsgBytes, any.ThinkMs, plural(windowsOf(any.RTPerSec), "window"), any.WindowSeconds)
	}
	b.WriteString("| proxy | connections open | round trips/s | p50 | p99 | max | proxy CPU % | client / target CPU % | errors |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, l := range labels {
		r := rs.find("echo", l, "")
		if s, ok := missing(r); ok {
			fmt.Fprintf(b, "| %s | %s | | | | | | | |\n", l, s)
			continue
		}
		fmt.Fprintf(b, "| %s | %d of %d | %s | %s | %s | %s | %s | %s | %s |\n", l,
			r.ConnsOpen, r.ConnsWanted, r.RTPerSec.format(fmtFloat(0)),
			r.RTTP50us.format(fmtDurUs), r.RTTP99us.format(fmtDurUs), fmtDurUs(r.RTTMaxUs),
			r.ProxyCPU.format(fmtFloat(0)), sideCPUCell(r), errorsCell(r))
	}
	b.WriteString("\n")
}

func writeSetup(b *strings.Builder, rs resultSet, labels []string) {
	b.WriteString("### Session set-up rate\n\n")
	if r := firstOf(rs, "setup", labels); r != nil {
		fmt.Fprintf(b, "%d clients at once, each looping over: connect, handshake, one byte echoed, close. Windows of %g s", r.Concurrency, r.WindowSeconds)
		for _, l := range labels {
			if p := rs.find("setup", l, ""); p != nil {
				fmt.Fprintf(b, "; %s: %s", l, plural(windowsOf(p.SessionsPerSec), "window"))
				if p.RoundsPooled > 0 {
					fmt.Fprintf(b, " over %s", plural(p.RoundsPooled, "round"))
				}
			}
		}
		b.WriteString(".\n\n")
	}
	b.WriteString("CPU per set-up is a process's CPU time in a window divided by the sessions set up in it (median [min–max] over the windows): " +
		"on a machine whose cores the three processes fill, the rate is about the cores over the three together.\n\n")
	b.WriteString("| proxy | sessions/s | vs relay | p50 | p99 | proxy CPU % | client / target CPU % | CPU µs per set-up: proxy / client / target / all three | errors |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	relay := rs.find("setup", "relay", "")
	for _, l := range labels {
		r := rs.find("setup", l, "")
		if s, ok := missing(r); ok {
			fmt.Fprintf(b, "| %s | %s | | | | | | | |\n", l, s)
			continue
		}
		var rel *Spread
		if relay != nil {
			rel = relay.SessionsPerSec
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", l,
			r.SessionsPerSec.format(fmtFloat(0)), vsRelayCell(rs, l, mainMeasures[2], r.SessionsPerSec, rel),
			r.SetupP50us.format(fmtDurUs), r.SetupP99us.format(fmtDurUs),
			r.ProxyCPU.format(fmtFloat(0)), sideCPUCell(r), cpuPerSetupCell(r), errorsCell(r))
	}
	b.WriteString("\n")
}

func writeHold(b *strings.Builder, rs resultSet, labels []string) {
	b.WriteString("### Idle sessions: proxy memory\n\n")
	b.WriteString("Each session did its handshake and one echo round trip, then stays idle. Memory is the proxy's whole process tree " +
		"(`/proc/PID/smaps_rollup`, summed over the parent and forked children), read every twentieth of the way while the sessions open " +
		"and once more after they settled. Private dirty per session is the slope of a least-squares line through those readings " +
		"(R² says how straight the curve is); the intercept is the proxy's own memory. The \"two readings\" column is the older figure, " +
		"(after − before) / sessions, which a heap shrinking after the warm-up can make too small or even negative. " +
		"Kernel memory is the growth of `/proc/slabinfo` per session: TCP sockets, files (socket inodes, `filp`, dentries) and epoll items, " +
		"for all four sockets of a session on this machine (client, the proxy's two, target), not the proxy's alone.\n\n")
	b.WriteString("| proxy | sessions held | private dirty / session | fit | two readings | PSS / session | processes | kernel slab / session (TCP + files + epoll) | still echoing | opening stopped because |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, l := range labels {
		r := rs.find("hold", l, "")
		if s, ok := missing(r); ok {
			fmt.Fprintf(b, "| %s | %s | | | | | | | | |\n", l, s)
			continue
		}
		p := r.PerSession
		procs := "-"
		if r.MemAfter != nil {
			procs = fmt.Sprint(r.MemAfter.Procs)
		}
		fit := "-"
		if f := r.MemFit; f != nil && f.Points >= minFitPoints {
			fit = fmt.Sprintf("R² %.4f over %d readings, intercept %s", f.R2, f.Points, fmtBytes(f.InterceptBytes))
		}
		fmt.Fprintf(b, "| %s | %d of %d | %s | %s | %s | %s | %s | %s | %d of %d | %s |\n", l,
			r.ConnsOpen, r.ConnsWanted, fmtBytes(heldBytesPerSession(r)), fit, fmtBytes(p.PrivateDirty), fmtBytes(p.PSS), procs,
			slabCell(r.Slab), r.AliveOK, r.AliveChecked, orDash(oneLine(r.StopReason)))
	}
	b.WriteString("\n")
	writeHoldLimits(b, rs, labels)
}

// slabCell is a hold's kernel memory per session, or "-" when the run could
// not read /proc/slabinfo.
func slabCell(u *slabUse) string {
	if u == nil {
		return "-"
	}
	return fmt.Sprintf("%s (%s + %s + %s)", fmtBytes(u.Total), fmtBytes(u.TCP), fmtBytes(u.Files), fmtBytes(u.Epoll))
}

// verdicts collects the rows of the Targets table.
type verdicts struct{ b *strings.Builder }

// row writes one target: its value, whether it was met (when measured) and
// the commits of the results the verdict comes from.
func (v verdicts) row(name, value string, ok, measured bool, from ...*Result) {
	verdict := "not measured yet"
	if measured {
		verdict = "**missed**"
		if ok {
			verdict = "met"
		}
	}
	fmt.Fprintf(v.b, "| %s | %s | %s | %s |\n", name, orDash(value), verdict, commitsOf(from...))
}

// writeVerdicts checks our proxy against the targets.
func writeVerdicts(b *strings.Builder, rs resultSet, ours string) {
	b.WriteString("### Targets\n\n")
	fmt.Fprintf(b, "| target | %s | verdict | measured on commit |\n|---|---|---|---|\n", ours)
	v := verdicts{b}
	for _, m := range mainMeasures {
		mainVerdict(v, rs, ours, m)
	}
	h := rs.find("hold", ours, "")
	name := fmt.Sprintf("≤ %.0f KiB proxy memory per idle session, every session held", float64(targetBytesPerSession)/1024)
	if h == nil || h.PerSession == nil {
		v.row(name, "", false, false)
	} else {
		all := h.ConnsOpen == h.ConnsWanted && h.AliveOK == h.AliveChecked
		v.row(name, fmt.Sprintf("%s private dirty, %d of %d held", fmtBytes(heldBytesPerSession(h)), h.ConnsOpen, h.ConnsWanted),
			all && heldBytesPerSession(h) <= targetBytesPerSession, true, h)
	}
	w := rs.find("hold", ours+"-workers", "")
	name = fmt.Sprintf("≥ %d sessions held with --workers, ≤ %.0f KiB each", targetScaleSessions, float64(targetBytesPerSession)/1024)
	if w == nil || w.PerSession == nil {
		v.row(name, "", false, false)
	} else {
		all := w.ConnsOpen >= targetScaleSessions && w.AliveOK == w.AliveChecked
		v.row(name, fmt.Sprintf("%d held, %s private dirty each", w.ConnsOpen, fmtBytes(heldBytesPerSession(w))),
			all && heldBytesPerSession(w) <= targetBytesPerSession, true, w)
	}
	wssVerdicts(v, rs, ours)
	stallVerdicts(v, rs, ours)
	echoBesideVerdict(v, rs, ours)
	tokenVerdicts(v, rs, ours)
	metricsVerdicts(v, rs, ours)
	b.WriteString("\n")
}

// commitsOf is the distinct commits results were measured on.
func commitsOf(rs ...*Result) string {
	var cs []string
	for _, r := range rs {
		c := "none recorded"
		if r.Commit != "" {
			c = "`" + r.Commit + "`"
		}
		if !slices.Contains(cs, c) {
			cs = append(cs, c)
		}
	}
	return orDash(strings.Join(cs, ", "))
}

// writeCommits says which build the rows measured: git describe of the tree
// the proxy (and this tool, and so the relay) was built from, as run.sh
// passes it with -commit. Rows from different builds are listed by build.
func writeCommits(b *strings.Builder, all []*Result) {
	if len(all) == 0 {
		return
	}
	var commits []string
	runs := map[string][]string{} // commit -> "label (modes)"
	modes := map[[2]string][]string{}
	var labels [][2]string
	for _, r := range all {
		key := [2]string{r.Commit, r.Label}
		if _, ok := modes[key]; !ok {
			labels = append(labels, key)
		}
		if m := runName(r); !slices.Contains(modes[key], m) {
			modes[key] = append(modes[key], m)
		}
		if !slices.Contains(commits, r.Commit) {
			commits = append(commits, r.Commit)
		}
	}
	switch {
	case len(commits) == 1 && commits[0] != "":
		fmt.Fprintf(b, "Every row measured the build of commit `%s` (`git describe --always --dirty` of the tree `bin/websockify` and `bin/loadtest` were built from).\n\n", commits[0])
		return
	case len(commits) == 1:
		b.WriteString("No row records the commit it measured (results from before the tool recorded it).\n\n")
		return
	}
	for _, k := range labels {
		runs[k[0]] = append(runs[k[0]], fmt.Sprintf("%s (%s)", k[1], strings.Join(modes[k], ", ")))
	}
	slices.SortStableFunc(commits, func(a, b string) int { // "none recorded" last
		return boolCmp(a == "", b == "")
	})
	b.WriteString("**The rows come from different builds** (`git describe --always --dirty` of the tree the proxy was built from); rerun `make bench` for one build:\n\n")
	for _, c := range commits {
		name := "`" + c + "`"
		if c == "" {
			name = "no commit recorded (results from before the tool recorded it)"
		}
		fmt.Fprintf(b, "- %s: %s\n", name, strings.Join(runs[c], "; "))
	}
	b.WriteString("\n")
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// runName is a run's mode with what tells it apart from the label's other
// runs of the mode.
func runName(r *Result) string { return describeRun(r, " ×%d") }

// describeRun names a run: its mode, direction, connections (with
// connsFormat, when more than one) and whether bulk sessions ran beside it.
func describeRun(r *Result, connsFormat string) string {
	what := r.Mode
	if r.Dir != "" {
		what += " " + r.Dir
	}
	if r.Mode == "throughput" && tputConns(r) > 1 {
		what += fmt.Sprintf(connsFormat, tputConns(r))
	}
	if r.Background > 0 {
		what += " beside bulk"
	}
	return what
}

func writeNotes(b *strings.Builder, all []*Result) {
	var lines []string
	for _, r := range all {
		what := describeRun(r, ", %d connections")
		for _, n := range r.Notes {
			lines = append(lines, fmt.Sprintf("- %s, %s: %s", r.Label, what, oneLine(n)))
		}
		if r.Error != "" {
			lines = append(lines, fmt.Sprintf("- %s, %s failed: %s", r.Label, what, oneLine(r.Error)))
		}
	}
	if len(lines) == 0 {
		return
	}
	b.WriteString("### What the runs reported\n\n")
	b.WriteString(strings.Join(lines, "\n"))
	b.WriteString("\n\n")
}

// digits matches the run-specific parts of log lines (times, ports, PIDs) so
// repeated messages fold into one.
var digits = regexp.MustCompile(`[0-9]+`)

var logProblem = regexp.MustCompile(`(?i)exception|error|too many open files|refused|reset|killed|panic`)

// logNoise is what Python prints around every traceback and at the SIGTERM
// that ends each run: matching, but saying nothing about the proxy.
var logNoise = regexp.MustCompile(`^(Traceback|During handling of the above exception)|Terminate|^File "`)

// writeLogExcerpts quotes the most frequent problem lines of each proxy log.
func writeLogExcerpts(b *strings.Builder, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	sort.Strings(files)
	var out []string
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		counts := map[string]int{}
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if !logProblem.MatchString(line) || logNoise.MatchString(line) {
				continue
			}
			key := digits.ReplaceAllString(line, "N")
			if len(key) > 160 {
				key = key[:160] + "…"
			}
			counts[key]++
		}
		keys := make([]string, 0, len(counts))
		for k := range counts {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			if counts[keys[i]] != counts[keys[j]] {
				return counts[keys[i]] > counts[keys[j]]
			}
			return keys[i] < keys[j]
		})
		if len(keys) > 3 {
			keys = keys[:3]
		}
		for _, k := range keys {
			out = append(out, fmt.Sprintf("- `%s`: %d× `%s`", filepath.Base(path), counts[k], strings.ReplaceAll(k, "`", "'")))
		}
	}
	if len(out) == 0 {
		return
	}
	b.WriteString("### Proxy log lines (most frequent problems, digits folded to N)\n\n")
	b.WriteString(strings.Join(out, "\n"))
	b.WriteString("\n\n")
}

func firstOf(rs resultSet, mode string, labels []string) *Result {
	for _, l := range labels {
		if r := rs.find(mode, l, ""); r != nil {
			return r
		}
	}
	return nil
}

func errorsCell(r *Result) string {
	n := r.Errors.total()
	if n == 0 {
		return "0"
	}
	keys := make([]string, 0, len(r.Errors.Count))
	for k := range r.Errors.Count {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %s", r.Errors.Count[k], k)
	}
	return strings.Join(parts, ", ")
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "|", "\\|")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// cpuModel is the first CPU's model name; family and model numbers are
// added because a VM's model name can be as bare as "AMD EPYC".
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == "" {
			break // the first CPU's block ends here
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	name := fields["model name"]
	if name == "" {
		return "unknown CPU"
	}
	var extra []string
	if f, m := fields["cpu family"], fields["model"]; f != "" && m != "" {
		extra = append(extra, "family "+f+" model "+m)
	}
	if slices.Contains(strings.Fields(fields["flags"]), "hypervisor") {
		extra = append(extra, "virtual machine")
	}
	if len(extra) > 0 {
		name += " (" + strings.Join(extra, ", ") + ")"
	}
	return name
}

func kernelRelease() string {
	data, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(data))
}
