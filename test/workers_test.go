package test

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// --workers N: N processes share the port with SO_REUSEPORT. Together they
// hold more sessions than one process's open-file limit allows, a second
// proxy on the port is refused, a worker that dies is replaced without
// touching the others' sessions, and SIGTERM stops them all.
func TestWorkers(t *testing.T) {
	t.Parallel()
	const (
		workers = 3
		limit   = 256 // open files per process: one alone admits about 74 sessions
		clients = 150
	)
	echo := startEcho(t)
	p := launchProxy(t, proxyConfig{Args: []string{"--workers", strconv.Itoa(workers), echo.addr}, Ulimit: limit})
	if !waitLog(p, "workers listening", 5*time.Second) {
		t.Fatalf("no 'workers listening' line")
	}
	pids := childPIDs(t, p.pid())
	if len(pids) != workers {
		t.Fatalf("%d worker processes, want %d", len(pids), workers)
	}

	// More sessions than one process under this limit can hold.
	var conns []*wsClient
	defer func() {
		for _, c := range conns {
			c.conn.Close()
		}
	}()
	for i := range clients {
		c, err := dialWSE(p, modeBinary, nil)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		conns = append(conns, c)
		if err := c.echo([]byte("hello " + strconv.Itoa(i))); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	perWorker := statusSessions(t, p, workers)
	total, busy := 0, 0
	for _, n := range perWorker {
		total += n
		if n > 0 {
			busy++
		}
	}
	if total != clients || busy < 2 {
		t.Fatalf("sessions per worker %v: want %d in all, spread over at least 2 workers", perWorker, clients)
	}

	// A second proxy on the same port, with or without workers, is refused.
	for _, args := range [][]string{{"127.0.0.1:" + strconv.Itoa(p.port), echo.addr}, {"--workers", "2", "127.0.0.1:" + strconv.Itoa(p.port), echo.addr}} {
		r := runCLI(t, 15*time.Second, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "address already in use") {
			t.Fatalf("websockify %v on a port our workers hold: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}

	// Kill one worker: its sessions go, everyone else's stay, and a new
	// worker takes its place.
	victim := pids[0]
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !waitLog(p, "in its place", 5*time.Second) {
		t.Fatalf("the killed worker was not replaced")
	}
	alive := 0
	for _, c := range conns {
		_ = c.conn.SetDeadline(time.Now().Add(2 * time.Second))
		if c.echo([]byte("still there")) == nil {
			alive++
		}
	}
	if want := clients - perWorker[victim]; alive != want {
		t.Fatalf("%d sessions alive after killing worker %d, want %d (sessions per worker %v)", alive, victim, want, perWorker)
	}
	if n := len(childPIDs(t, p.pid())); n != workers {
		t.Fatalf("%d workers after the replacement, want %d", n, workers)
	}
	for i := range 20 {
		c, err := dialWSE(p, modeBinary, nil)
		if err != nil {
			t.Fatalf("new client %d after the replacement: %v", i, err)
		}
		conns = append(conns, c)
		if err := c.echo([]byte("new")); err != nil {
			t.Fatalf("new client %d after the replacement: %v", i, err)
		}
	}

	// SIGTERM stops the parent and every worker.
	all := childPIDs(t, p.pid())
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, exited := p.waitExit(10 * time.Second)
	if !exited || code != 0 {
		t.Fatalf("after SIGTERM: exited %v, code %d", exited, code)
	}
	for _, pid := range all {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			if st, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); !strings.Contains(string(st), ") Z") {
				t.Errorf("worker %d still runs after the parent exited", pid)
			}
		}
	}
}

func TestWorkersUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--workers", "0", "6080", "127.0.0.1:5900"},
		{"--workers", "2", "--run-once", "6080", "127.0.0.1:5900"},
		{"--workers", "2", "--idle-timeout", "5", "6080", "127.0.0.1:5900"},
		{"--workers", "2", "--unix-listen", "/tmp/x.sock", "6080", "127.0.0.1:5900"},
	} {
		r := runCLI(t, 5*time.Second, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "--workers") {
			t.Errorf("websockify %v: exit %d, stderr %q; want exit 2 naming --workers", args, r.code, r.stderr)
		}
	}
}

// childPIDs lists the running processes whose parent is pid.
func childPIDs(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) > 1 && f[0] != "Z" && f[1] == strconv.Itoa(pid) {
			pids = append(pids, child)
		}
	}
	return pids
}

var statusLine = regexp.MustCompile(`status: sessions=(\d+) goroutines=\d+ fds=\d+ pid=(\d+)`)

// statusSessions asks the workers for their status (SIGUSR1 to the parent)
// and returns the open sessions of each worker by PID.
func statusSessions(t *testing.T, p *proxy, workers int) map[int]int {
	t.Helper()
	before := len(statusLine.FindAllString(p.stderr.String(), -1))
	if err := p.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines := statusLine.FindAllStringSubmatch(p.stderr.String(), -1)
		if len(lines) >= before+workers {
			got := map[int]int{}
			for _, m := range lines[before:] {
				n, _ := strconv.Atoi(m[1])
				pid, _ := strconv.Atoi(m[2])
				got[pid] = n
			}
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d status lines after SIGUSR1, want %d", len(lines)-before, workers)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
