package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// memSnapshot is the memory of a proxy's whole process tree (one process for
// Go; a parent plus one forked child per connection for Python's websockify),
// summed over the tree, in bytes.
type memSnapshot struct {
	Procs        int   `json:"procs"`
	RSS          int64 `json:"rss"`           // VmRSS: counts shared pages once per process
	PSS          int64 `json:"pss"`           // shared pages split between sharers: sums honestly
	PrivateDirty int64 `json:"private_dirty"` // pages written by this process alone
	Anonymous    int64 `json:"anonymous"`     // heap, stacks and other non-file pages
}

// sockSnapshot is system-wide socket state from /proc/net/sockstat.
type sockSnapshot struct {
	TCPInUse   int   `json:"tcp_inuse"`
	TCPMemByte int64 `json:"tcp_mem_bytes"` // "mem" is in pages
}

// processTree returns root and all its descendants, found by scanning
// /proc/*/stat for parent PIDs.
func processTree(root int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil {
			continue
		}
		children[st.ppid] = append(children[st.ppid], pid)
	}
	tree := []int{root}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i]]...)
	}
	return tree
}

type procStat struct {
	ppid                         int
	utime, stime, cutime, cstime int64 // clock ticks
}

// readStat parses /proc/PID/stat. The command name may contain spaces and
// parentheses, so fields are counted from the last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, os.ErrInvalid
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); ppid is field 4, utime 14 .. cstime 17.
	if len(f) < 15 {
		return procStat{}, os.ErrInvalid
	}
	num := func(k int) int64 { n, _ := strconv.ParseInt(f[k-3], 10, 64); return n }
	return procStat{
		ppid:   int(num(4)),
		utime:  num(14),
		stime:  num(15),
		cutime: num(16),
		cstime: num(17),
	}, nil
}

// treeMemory sums smaps_rollup over root's process tree.
func treeMemory(root int) memSnapshot {
	var m memSnapshot
	for _, pid := range processTree(root) {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "smaps_rollup"))
		if err != nil {
			continue // exited meanwhile
		}
		m.Procs++
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			key, val, ok := parseKB(sc.Text())
			if !ok {
				continue
			}
			switch key {
			case "Rss":
				m.RSS += val
			case "Pss":
				m.PSS += val
			case "Private_Dirty":
				m.PrivateDirty += val
			case "Anonymous":
				m.Anonymous += val
			}
		}
	}
	return m
}

// treeCPUTicks is the CPU time, in clock ticks, used so far by root's tree:
// live processes' own time plus what their exited and reaped children left
// in their cutime and cstime (a forking proxy's finished sessions).
func treeCPUTicks(root int) int64 {
	var total int64
	for _, pid := range processTree(root) {
		st, err := readStat(pid)
		if err != nil {
			continue
		}
		total += st.utime + st.stime + st.cutime + st.cstime
	}
	return total
}

// machineBusyTicks is the CPU time all processors spent running processes,
// from the first line of /proc/stat: user, nice, system, and steal (time
// the hypervisor gave to someone else). Interrupt and softirq time is left
// out: loopback traffic is processed there, much of it ours, and charged to
// no process.
func machineBusyTicks() int64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return -1
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 8} {
		n, _ := strconv.ParseInt(f[i], 10, 64)
		busy += n
	}
	return busy
}

// otherCPU measures what the rest of the machine did during a run: busy
// time minus this tool's own process tree (client, target and a proxy it
// started) and minus kernel threads (ksoftirqd and kworkers do part of the
// loopback work this run causes). Other jobs on a shared machine make every
// figure noisy, and this says how much.
type otherCPU struct {
	busy, ours int64
	t          time.Time
	extra      []int // processes outside this tool's tree that count as the benchmark's own (-backend-pid)
}

// kthreaddPID is the parent of every kernel thread.
const kthreaddPID = 2

func ourTicks(extra []int) int64 {
	n := treeCPUTicks(os.Getpid()) + treeCPUTicks(kthreaddPID)
	for _, pid := range extra {
		n += treeCPUTicks(pid)
	}
	return n
}

// startOtherCPU starts measuring the CPU used outside this tool's process
// tree and the trees of extra.
func startOtherCPU(extra ...int) otherCPU {
	return otherCPU{busy: machineBusyTicks(), ours: ourTicks(extra), t: time.Now(), extra: extra}
}

// percent of one core used by processes outside this tool's tree.
func (o otherCPU) percent() float64 {
	busy := machineBusyTicks()
	if o.busy < 0 || busy < 0 {
		return -1
	}
	el := time.Since(o.t).Seconds()
	if el <= 0 {
		return -1
	}
	other := float64((busy-o.busy)-(ourTicks(o.extra)-o.ours)) / clockTicks
	return max(0, 100*other/el)
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// parseKB splits "Key:   123 kB" into key and bytes.
func parseKB(line string) (string, int64, bool) {
	key, rest, ok := strings.Cut(line, ":")
	if !ok {
		return "", 0, false
	}
	f := strings.Fields(rest)
	if len(f) != 2 || f[1] != "kB" {
		return "", 0, false
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return key, n * 1024, true
}

// readSockstat reads the TCP line of /proc/net/sockstat.
func readSockstat() sockSnapshot {
	var s sockSnapshot
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return s
	}
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "TCP: ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		for i := 0; i+1 < len(f); i += 2 {
			n, _ := strconv.ParseInt(f[i+1], 10, 64)
			switch f[i] {
			case "inuse":
				s.TCPInUse = int(n)
			case "mem":
				s.TCPMemByte = n * int64(os.Getpagesize())
			}
		}
	}
	return s
}

// memAvailable is MemAvailable from /proc/meminfo in bytes, -1 if unknown.
func memAvailable() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if key, val, ok := parseKB(line); ok && key == "MemAvailable" {
			return val
		}
	}
	return -1
}

// loadAverage is the one-minute load average, -1 if unknown.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// ioCounts is what a process tree passed through read(2) and write(2) and
// their kin, from /proc/PID/io: bytes (rchar + wchar; socket reads and
// writes included, splice(2) not) and calls (syscr + syscw).
type ioCounts struct {
	Bytes int64 `json:"bytes"`
	Calls int64 `json:"calls"`
}

// treeIO sums /proc/PID/io over root's tree; processes whose counters
// cannot be read are left out.
func treeIO(root int) ioCounts {
	var c ioCounts
	for _, pid := range processTree(root) {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "io"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			key, val, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
			if err != nil {
				continue
			}
			switch key {
			case "rchar", "wchar":
				c.Bytes += n
			case "syscr", "syscw":
				c.Calls += n
			}
		}
	}
	return c
}

func (c ioCounts) minus(o ioCounts) ioCounts { return ioCounts{c.Bytes - o.Bytes, c.Calls - o.Calls} }
