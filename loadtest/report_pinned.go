package main

import (
	"fmt"
	"slices"
	"strings"
)

// The pinned rounds: bench/run.sh repeats the main comparison with the
// proxy on one CPU and the client and target on the other (labels
// ours-pinned and relay-pinned), so that a reader can see whether sharing
// the cores moved the ratios the targets judge. The targets stay judged on
// the shared runs; this section only sets the two side by side.

const pinnedSuffix = "-pinned"

// writePinned writes the "Pinned apart" section when pinned rounds exist.
func writePinned(b *strings.Builder, rs resultSet, ours string) {
	pOurs, pRelay := ours+pinnedSuffix, "relay"+pinnedSuffix
	if len(mainRounds(rs, pOurs, mainMeasures[0]))+len(mainRounds(rs, pOurs, mainMeasures[2])) == 0 {
		return
	}
	b.WriteString("### Pinned apart\n\n")
	affinity := "the proxy on one CPU, loadtest (client and target) on the other"
	for _, r := range rs {
		if (r.Label == pOurs || r.Label == pRelay) && r.Affinity != "" {
			affinity = r.Affinity
			break
		}
	}
	fmt.Fprintf(b, "The same interleaved rounds as the targets' (one-connection throughput down and up, set-up), run again with every process pinned (%s): "+
		"ours over the relay round by round, pinned beside the shared-core rounds above. The targets are judged on the shared rounds; "+
		"pinning only shows whether sharing the cores with the client and the target moved the ratio.\n\n", affinity)
	b.WriteString("| measurement | shared cores: ours / relay | pinned: ours / relay | pinned ours | pinned relay | pinned proxy CPU % ours / relay | pinned client / target CPU % ours | pinned client / target CPU % relay | commit |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, m := range mainMeasures {
		shared, _ := mainRatios(rs, ours, m)
		pinned, runs := pairRatios(rs, pOurs, pRelay, m)
		if len(pinned) == 0 {
			continue
		}
		po, pr := pooledRounds(rs, pOurs, m), pooledRounds(rs, pRelay, m)
		unit := fmtFloat(0)
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s / %s | %s | %s | %s |\n", m.what,
			ratioSpreadCell(shared), ratioSpreadCell(pinned),
			m.get(po).format(unit)+" "+m.unit(), m.get(pr).format(unit)+" "+m.unit(),
			po.ProxyCPU.format(fmtFloat(0)), pr.ProxyCPU.format(fmtFloat(0)),
			sideCPUCell(po), sideCPUCell(pr), commitsCell(runs))
	}
	b.WriteString("\n")
}

// unit names what m counts, for the pinned table's cells.
func (m mainMeasure) unit() string {
	if m.mode == "setup" {
		return "sessions/s"
	}
	return "MB/s"
}

// pooledRounds is one result pooling label's rounds of m.
func pooledRounds(rs resultSet, label string, m mainMeasure) *Result {
	byRound := mainRounds(rs, label, m)
	rounds := make([]int, 0, len(byRound))
	for n := range byRound {
		rounds = append(rounds, n)
	}
	slices.Sort(rounds)
	runs := make([]*Result, 0, len(rounds))
	for _, n := range rounds {
		runs = append(runs, byRound[n])
	}
	return poolRuns(runs)
}

// ratioSpreadCell is "median [worst–best] over N rounds", or "-".
func ratioSpreadCell(ratios []float64) string {
	q := newSpread(ratios)
	if q == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f [%.2f–%.2f] over %s", q.Median, q.Min, q.Max, plural(len(ratios), "round"))
}

// commitsCell names the builds runs measured, in backquotes.
func commitsCell(runs []*Result) string {
	cs := distinct(runs, func(r *Result) string { return r.Commit })
	if len(cs) == 0 {
		return "none recorded"
	}
	return "`" + strings.Join(cs, "`, `") + "`"
}
