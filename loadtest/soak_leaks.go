package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The soak's leak checks: the proxy's session, goroutine and fd counts (from
// its status lines and /proc) before and after, and its memory.

// proxyStatus is what is known about the proxy at one moment.
type proxyStatus struct {
	FDs        int            `json:"fds"`        // /proc/PID/fd entries; -1 unknown
	Goroutines *int           `json:"goroutines"` // from the status line; null when the proxy prints none
	Sessions   *int           `json:"sessions"`
	FDKinds    map[string]int `json:"fd_kinds,omitempty"` // socket, pipe, eventpoll, file, ...
}

func (p *proxyStatus) String() string {
	opt := func(v *int) string {
		if v == nil {
			return "unknown"
		}
		return strconv.Itoa(*v)
	}
	fds := "unknown"
	if p.FDs >= 0 {
		fds = strconv.Itoa(p.FDs)
	}
	kinds := make([]string, 0, len(p.FDKinds))
	for k, n := range p.FDKinds {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
	}
	slices.Sort(kinds)
	if len(kinds) > 0 {
		fds += " (" + strings.Join(kinds, ", ") + ")"
	}
	return fmt.Sprintf("fds %s, goroutines %s, sessions %s", fds, opt(p.Goroutines), opt(p.Sessions))
}

func (r *soakRun) proxyStatus() *proxyStatus { return readProxyStatus(r.env.pid, r.env.logPath) }

// readProxyStatus counts the proxy's descriptors and, when the proxy catches
// SIGUSR1 and we have its log, asks it for its status line.
func readProxyStatus(pid int, logPath string) *proxyStatus {
	st := &proxyStatus{FDs: -1}
	if pid == 0 {
		return st
	}
	// The whole tree: --workers processes, or Python's forked children,
	// hold descriptors of their own.
	for _, p := range processTree(pid) {
		dir := fmt.Sprintf("/proc/%d/fd", p)
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		if st.FDs < 0 {
			st.FDs, st.FDKinds = 0, map[string]int{}
		}
		st.FDs += len(ents)
		// By kind, so a leak report says what leaked.
		for _, e := range ents {
			l, err := os.Readlink(filepath.Join(dir, e.Name()))
			if err != nil {
				continue
			}
			kind := "file"
			if k, rest, ok := strings.Cut(l, ":"); ok && !strings.HasPrefix(l, "/") {
				kind = k
				if k == "anon_inode" {
					kind = strings.Trim(rest, "[]")
				}
			}
			st.FDKinds[kind]++
		}
	}
	// A process that does not catch SIGUSR1 would die of it (Python's
	// websockify does not).
	if logPath == "" || !catchesSignal(pid, syscall.SIGUSR1) {
		return st
	}
	before := len(statusLines(logPath))
	if syscall.Kill(pid, syscall.SIGUSR1) != nil {
		return st
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if len(statusLines(logPath)) > before {
			// With --workers each worker answers on its own; give the
			// others a moment, then sum the latest line of each.
			time.Sleep(300 * time.Millisecond)
			latest := map[int]statusLine{}
			for _, l := range statusLines(logPath)[before:] {
				latest[l.pid] = l
			}
			var sess, gor int
			for _, l := range latest {
				sess += l.sessions
				gor += l.goroutines
			}
			st.Sessions, st.Goroutines = &sess, &gor
			return st
		}
	}
	return st
}

// statusLineRE matches our websockify's answer to SIGUSR1; pid= is absent
// in older builds.
var statusLineRE = regexp.MustCompile(`status: sessions=(\d+) goroutines=(\d+) fds=(\d+)(?: pid=(\d+))?`)

type statusLine struct{ pid, sessions, goroutines int }

// statusLines returns every status line in the proxy's log, in order.
func statusLines(path string) []statusLine {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []statusLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if m := statusLineRE.FindSubmatch(sc.Bytes()); m != nil {
			var l statusLine
			l.sessions, _ = strconv.Atoi(string(m[1]))
			l.goroutines, _ = strconv.Atoi(string(m[2]))
			l.pid, _ = strconv.Atoi(string(m[4]))
			out = append(out, l)
		}
	}
	return out
}

// catchesSignal reads the SigCgt mask of /proc/PID/status.
func catchesSignal(pid int, sig syscall.Signal) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "SigCgt:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && mask&(1<<(uint(sig)-1)) != 0
		}
	}
	return false
}

// quiesced is the reading the goroutine and descriptor checks compare,
// taken the same way for the baseline (after the warm-up) and at the end
// (after the traffic): wait until the proxy counts no session (at most
// cfg.drainLimit), leave it idle for cfg.quiesce, then read it three times
// 500 ms apart and keep the lowest count of each. A baseline read before any
// traffic would miss what the proxy keeps once it has served (pool workers,
// per-loop buffers); one read straight after traffic would count pool
// workers that gnet retires after 10 s idle, which is no leak.
func (r *soakRun) quiesced() *proxyStatus {
	for deadline := time.Now().Add(r.cfg.drainLimit); ; time.Sleep(500 * time.Millisecond) {
		st := r.proxyStatus()
		if st.Sessions == nil || *st.Sessions == 0 || time.Now().After(deadline) {
			break
		}
	}
	time.Sleep(r.cfg.quiesce)
	low := r.proxyStatus()
	for i := 0; i < 2; i++ {
		time.Sleep(500 * time.Millisecond)
		st := r.proxyStatus()
		if st.FDs >= 0 && (low.FDs < 0 || st.FDs < low.FDs) {
			low.FDs, low.FDKinds = st.FDs, st.FDKinds
		}
		if st.Goroutines != nil && (low.Goroutines == nil || *st.Goroutines < *low.Goroutines) {
			low.Goroutines = st.Goroutines
		}
		if st.Sessions != nil && (low.Sessions == nil || *st.Sessions < *low.Sessions) {
			low.Sessions = st.Sessions
		}
	}
	return low
}

// leaks compares after with before; each entry is one failure.
func (r *soakRun) leaks(before, after *proxyStatus) []string {
	var out []string
	if before.FDs >= 0 && after.FDs > before.FDs+r.cfg.fdSlack {
		out = append(out, fmt.Sprintf("descriptor leak: %d before, %d after", before.FDs, after.FDs))
	}
	if before.Goroutines != nil && after.Goroutines != nil && *after.Goroutines > *before.Goroutines+r.cfg.goroutineSlack {
		out = append(out, fmt.Sprintf("goroutine leak: %d before, %d after", *before.Goroutines, *after.Goroutines))
	}
	if after.Sessions != nil && *after.Sessions > 0 {
		out = append(out, fmt.Sprintf("session leak: the proxy still counts %d sessions", *after.Sessions))
	}
	return out
}
