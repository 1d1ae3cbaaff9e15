package main

import (
	"fmt"
	"strings"
)

// writeHoldLimits says which kernel limits the biggest hold met, which of
// them had to move, and how `loadtest hold` checks them before it starts.
func writeHoldLimits(b *strings.Builder, rs resultSet, labels []string) {
	var big *Result
	for _, l := range labels {
		if r := rs.find("hold", l, ""); r != nil && len(r.Preflight) > 0 && (big == nil || r.ConnsWanted > big.ConnsWanted) {
			big = r
		}
	}
	if big == nil {
		return
	}
	fmt.Fprintf(b, "#### Kernel limits for %d sessions (%s)\n\n", big.ConnsWanted, big.Label)
	b.WriteString("Before it starts anything, `loadtest hold` checks the limits a run of this size meets and refuses one that cannot fit, " +
		"naming the setting to change, so a run never stops half-way: the ephemeral port range against the connections from the proxy " +
		"to one target port (they all share the source address 127.0.0.1, so only the source port tells them apart, about 64,000 at most; " +
		"`-target-ports` spreads them over several ports behind a TokenFile), `nf_conntrack_max` when the conntrack module is loaded " +
		"(two tracked connections per session), `tcp_mem` against the socket memory in use plus an allowance per session, `fs.file-max` " +
		"(four descriptors per session on this machine), `fs.nr_open` and the hard `RLIMIT_NOFILE` against the busiest process " +
		"(the proxy's sessions over its `--workers`, 10% over an even share). With `-tune-kernel` (root) it raises the sysctls among them " +
		"for the run and restores them afterwards; the descriptor limit per process is not a sysctl, and is met with more `--workers`.\n\n")
	var moved []string
	for _, l := range big.Preflight {
		fmt.Fprintf(b, "- %s\n", l)
		if strings.HasPrefix(l, "raised for the run") || strings.HasPrefix(l, "too low") {
			moved = append(moved, l)
		}
	}
	b.WriteString("\n")
	if len(moved) == 0 {
		b.WriteString("No sysctl had to move on this machine for this run: the target ports keep each (source, destination) pair inside the default port range.\n\n")
	} else {
		fmt.Fprintf(b, "%d of the limits had to move for this run (listed above as raised).\n\n", len(moved))
	}
}
