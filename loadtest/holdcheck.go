package main

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// Pre-flight checks of a hold: the kernel limits a run of many sessions
// meets, checked before anything starts, so a run either fits or is refused
// with the setting to change, and never stops half-way with a limit's
// error. With -tune-kernel the sysctls among them are raised for the run and
// put back when it ends.

// holdNeeds is what a hold of conns sessions asks of the machine.
type holdNeeds struct {
	conns       int
	perPair     int // proxy-to-target connections sharing one (source, destination) pair
	proxyProcs  int // processes the proxy spreads its sessions over (0: forks one per session)
	perProcFDs  int // descriptors the busiest process needs
	files       int // descriptors machine-wide: client, proxy's two and target's for each session
	conntrack   int // tracked connections: client-to-proxy and proxy-to-target
	tcpMemBytes int64
}

// Allowances the needs are computed with.
const (
	portSpare = 1000 // ephemeral ports left for everyone else on the machine
	fdSlack   = 64   // listeners, epoll, pipes, logs of one process
	// An idle session's sockets hold next to no buffer once its echo has been
	// read (5,000 sessions left sockstat's "mem" at 0 pages); this allowance
	// covers the sessions still echoing during the ramp, and some.
	tcpBytesPerSession = 1 << 10
)

var workersFlag = regexp.MustCompile(`--workers[ =]+([0-9]+)`)

// needsOf derives a hold's needs from its settings.
func needsOf(cfg *settings) holdNeeds {
	ports := max(1, cfg.targetPorts)
	n := holdNeeds{conns: cfg.conns, perPair: (cfg.conns + ports - 1) / ports, proxyProcs: cfg.proxyProcs}
	if n.proxyProcs < 0 {
		n.proxyProcs = 1
		if m := workersFlag.FindStringSubmatch(cfg.proxyCmd); m != nil {
			n.proxyProcs, _ = strconv.Atoi(m[1])
		}
	}
	if n.proxyProcs > 0 {
		per := 2 * cfg.conns / n.proxyProcs
		if n.proxyProcs > 1 {
			per += per / 10 // SO_REUSEPORT spreads by hash: a few % off even at this scale
		}
		n.perProcFDs = per + fdSlack
	}
	// This tool's holders and targets stay under their own per-process caps.
	n.perProcFDs = max(n.perProcFDs, min(cfg.conns, sessionsPerTarget)+fdSlack)
	n.files = 4*cfg.conns + 1000
	n.conntrack = 2*cfg.conns + 1000
	n.tcpMemBytes = int64(cfg.conns) * tcpBytesPerSession
	return n
}

// sysctlChange is one setting raised for the run.
type sysctlChange struct{ path, old, new string }

// preflight checks the machine for cfg's hold. It returns what it checked,
// one line each, and an error naming every limit that is too low. With tune
// it raises the sysctls that are (restoring them at cleanup) and reports
// only what a sysctl cannot fix.
func preflight(cfg *settings, tune bool) ([]string, error) {
	n := needsOf(cfg)
	var lines, refusals []string
	var changes []sysctlChange
	check := func(ok bool, line string, fix *sysctlChange, refusal string) {
		switch {
		case ok:
			lines = append(lines, "ok: "+line)
		case tune && fix != nil:
			changes = append(changes, *fix)
			lines = append(lines, fmt.Sprintf("raised for the run: %s: %s was \"%s\", now \"%s\"", line, sysctlName(fix.path), fix.old, fix.new))
		default:
			lines = append(lines, "too low: "+line)
			refusals = append(refusals, refusal)
		}
	}

	// Every proxy-to-target connection to one target port shares the
	// source and destination address: only the source port tells them apart.
	if lo, hi, ok := readPair("/proc/sys/net/ipv4/ip_local_port_range"); ok {
		avail := hi - lo + 1
		line := fmt.Sprintf("net.ipv4.ip_local_port_range %d-%d has %d ports for %d connections per target port (+%d spare)", lo, hi, avail, n.perPair, portSpare)
		fits := n.perPair+portSpare <= avail
		var fix *sysctlChange
		if n.perPair+portSpare <= 65535-1024+1 {
			fix = &sysctlChange{"/proc/sys/net/ipv4/ip_local_port_range", fmt.Sprintf("%d %d", lo, hi), "1024 65535"}
		}
		spread := (n.conns + avail - portSpare - 1) / max(1, avail-portSpare)
		refusal := fmt.Sprintf("sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\" (%d connections per target port need %d ports), or spread them with -target-ports %d", n.perPair, n.perPair+portSpare, spread)
		if fix == nil {
			refusal = fmt.Sprintf("%d connections to one target port exceed any port range: spread them with -target-ports %d (or %d with the range widened)", n.perPair, spread, (n.conns+64511-portSpare)/(64512-portSpare))
		}
		check(fits, line, fix, refusal)
	}
	// Loopback connections are tracked when the conntrack module is loaded
	// and hooked; a full table drops new connections silently.
	if limit, ok := readInt("/proc/sys/net/netfilter/nf_conntrack_max"); ok {
		count, _ := readInt("/proc/sys/net/netfilter/nf_conntrack_count")
		need := count + int64(n.conntrack)
		check(need <= limit, fmt.Sprintf("net.netfilter.nf_conntrack_max %d for %d tracked now + %d", limit, count, n.conntrack),
			&sysctlChange{"/proc/sys/net/netfilter/nf_conntrack_max", strconv.FormatInt(limit, 10), strconv.FormatInt(need, 10)},
			fmt.Sprintf("sysctl -w net.netfilter.nf_conntrack_max=%d", need))
	}
	// Past tcp_mem's pressure threshold the kernel shrinks every socket's
	// buffers, other jobs' too.
	if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_mem"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 3 {
			page := int64(os.Getpagesize())
			pressure, _ := strconv.ParseInt(f[1], 10, 64)
			used := readSockstat().TCPMemByte
			needPages := (used + n.tcpMemBytes + page - 1) / page
			newMem := fmt.Sprintf("%d %d %d", max(needPages, mustInt(f[0])), 2*needPages, 3*needPages)
			check(used+n.tcpMemBytes <= pressure*page,
				fmt.Sprintf("net.ipv4.tcp_mem pressure %s for %s in use + %s", fmtBytes(float64(pressure*page)), fmtBytes(float64(used)), fmtBytes(float64(n.tcpMemBytes))),
				&sysctlChange{"/proc/sys/net/ipv4/tcp_mem", strings.Join(f, " "), newMem},
				fmt.Sprintf("sysctl -w net.ipv4.tcp_mem=\"%s\"", newMem))
		}
	}
	if limit, ok := readInt("/proc/sys/fs/file-max"); ok {
		alloc, _, _ := readPair("/proc/sys/fs/file-nr")
		need := int64(alloc) + int64(n.files)
		check(need <= limit, fmt.Sprintf("fs.file-max %d for %d open now + %d", limit, alloc, n.files),
			&sysctlChange{"/proc/sys/fs/file-max", strconv.FormatInt(limit, 10), strconv.FormatInt(need, 10)},
			fmt.Sprintf("sysctl -w fs.file-max=%d", need))
	}
	if nrOpen, ok := readInt("/proc/sys/fs/nr_open"); ok {
		need := int64(n.perProcFDs)
		check(need <= nrOpen, fmt.Sprintf("fs.nr_open %d for %d descriptors in the busiest process", nrOpen, need),
			&sysctlChange{"/proc/sys/fs/nr_open", strconv.FormatInt(nrOpen, 10), strconv.FormatInt(need, 10)},
			fmt.Sprintf("sysctl -w fs.nr_open=%d", need))
	}
	// The proxy inherits this tool's limit; Go programs (ours) raise their
	// soft limit to the hard one, so the hard one is what counts. No sysctl
	// moves it: more --workers, or a higher hard limit (ulimit -Hn) for the
	// shell that starts the run.
	var rl syscall.Rlimit
	if n.proxyProcs > 0 && syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
		line := fmt.Sprintf("RLIMIT_NOFILE hard %d for %d descriptors per proxy process (%d sessions over %d)", rl.Max, n.perProcFDs, n.conns, n.proxyProcs)
		procs := (2*n.conns*11/10)/max(1, int(rl.Max)-fdSlack) + 1
		check(uint64(n.perProcFDs) <= rl.Max, line, nil,
			fmt.Sprintf("the proxy needs %d descriptors per process under a hard limit of %d: run it with --workers %d or more, or raise ulimit -Hn", n.perProcFDs, rl.Max, procs))
	}

	if len(refusals) > 0 {
		return lines, errors.New("the machine's limits cannot take this hold (-tune-kernel raises the sysctls for the run and restores them): " + strings.Join(refusals, "; "))
	}
	for _, c := range changes {
		if err := os.WriteFile(c.path, []byte(c.new), 0o644); err != nil {
			restoreSysctls(changes)
			return lines, fmt.Errorf("-tune-kernel: %s: %w", sysctlName(c.path), err)
		}
	}
	if len(changes) > 0 {
		atCleanup(func() { restoreSysctls(changes) })
	}
	return lines, nil
}

// restoreSysctls puts back what preflight raised, saying so on stderr.
func restoreSysctls(changes []sysctlChange) {
	for _, c := range changes {
		if err := os.WriteFile(c.path, []byte(c.old), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "hold: could not restore %s to \"%s\": %v\n", sysctlName(c.path), c.old, err)
			continue
		}
		fmt.Fprintf(os.Stderr, "hold: %s restored to \"%s\"\n", sysctlName(c.path), c.old)
	}
}

// sysctlName turns /proc/sys/net/ipv4/x into net.ipv4.x.
func sysctlName(path string) string {
	return strings.ReplaceAll(strings.TrimPrefix(path, "/proc/sys/"), "/", ".")
}

func readInt(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}

// readPair reads the first two numbers of a file such as ip_local_port_range.
func readPair(path string) (int, int, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, 0, false
	}
	a, err1 := strconv.Atoi(f[0])
	c, err2 := strconv.Atoi(f[1])
	return a, c, err1 == nil && err2 == nil
}

func mustInt(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }
