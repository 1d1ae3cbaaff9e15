package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
// live processes' own time plus what reaped children left in root's cutime.
func treeCPUTicks(root int) int64 {
	var total int64
	for _, pid := range processTree(root) {
		st, err := readStat(pid)
		if err != nil {
			continue
		}
		total += st.utime + st.stime
		if pid == root {
			total += st.cutime + st.cstime
		}
	}
	return total
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
