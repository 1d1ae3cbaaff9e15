package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The CPU of the benchmark's other two parties, read beside the proxy's: on
// a machine of two cores the client and the target compete with the proxy,
// and a ratio between proxies means little without knowing how much of the
// machine they left it. The client is this process (getrusage of itself:
// every goroutine, not its children); the target is its own child process
// tree (this binary re-executed as "target"), read from /proc.

// sideMeter holds the client's and the target's CPU time at the start of a
// window.
type sideMeter struct {
	clientUs  int64
	targetPID int
	target    int64
	t         time.Time
}

// clientCPUus is this process's user and system time so far, in µs.
func clientCPUus() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return ru.Utime.Nano()/1000 + ru.Stime.Nano()/1000
}

func startSide(e *env) sideMeter {
	m := sideMeter{clientUs: clientCPUus(), targetPID: e.targetPID, t: time.Now()}
	if m.targetPID > 0 {
		m.target = treeCPUTicks(m.targetPID)
	}
	return m
}

// record appends the window's client and target CPU, in % of one core, to
// e's figures. Only one goroutine at a time records (the window loop).
func (m sideMeter) record(e *env) {
	el := time.Since(m.t).Seconds()
	if el <= 0 {
		return
	}
	if now := clientCPUus(); now >= 0 && m.clientUs >= 0 {
		e.clientCPU = append(e.clientCPU, 100*float64(now-m.clientUs)/1e6/el)
	}
	if m.targetPID > 0 {
		e.targetCPU = append(e.targetCPU, 100*float64(treeCPUTicks(m.targetPID)-m.target)/clockTicks/el)
	}
}

// cpusAllowed is the CPU list a process may run on (its Cpus_allowed_list
// in /proc/PID/status), "" when unknown.
func cpusAllowed(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// affinityLine says where the proxy, the client and the target were allowed
// to run, as read from the kernel during the run (so a taskset that did not
// take is not reported as pinning).
func affinityLine(e *env) string {
	client := cpusAllowed(os.Getpid())
	target := ""
	if e.targetPID > 0 {
		target = cpusAllowed(e.targetPID)
	}
	proxy := ""
	if e.proxyPID > 0 {
		proxy = cpusAllowed(e.proxyPID)
	}
	return fmt.Sprintf("proxy on CPUs %s, client on %s, target on %s", orDash(proxy), orDash(client), orDash(target))
}

// pinned says whether the proxy and the client were kept apart.
func pinned(e *env) bool {
	p := cpusAllowed(e.proxyPID)
	return e.proxyPID > 0 && p != "" && p != cpusAllowed(os.Getpid())
}

// onlineCPUs counts the machine's online CPUs from
// /sys/devices/system/cpu/online ("0-1", "0,2-5"); runtime.NumCPU when that
// cannot be read.
func onlineCPUs() int {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return runtime.NumCPU()
	}
	n := cpuListLen(strings.TrimSpace(string(b)))
	if n < 1 {
		return runtime.NumCPU()
	}
	return n
}

// cpuListLen is how many CPUs a kernel CPU list ("0-3,6") names; -1 when it
// is not one.
func cpuListLen(list string) int {
	n := 0
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return -1
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return -1
			}
		}
		n += b - a + 1
	}
	return n
}
