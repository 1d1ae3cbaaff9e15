package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Logging options through the real binary: --log-file (appended to,
// reopened on SIGHUP), and --syslog to a real rsyslogd over UDP and a unix
// datagram socket, in RFC 5424 and with --legacy-syslog in the old form.

// waitFileContains waits until path holds s.
func waitFileContains(t *testing.T, path, s string, d time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), s) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLogFile(t *testing.T) {
	echo := startEcho(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "websockify.log")
	writeFile(t, logPath, "an earlier line\n") // appended to, not truncated
	p := startProxy(t, echo.addr, "--log-file", logPath)
	c := dialWS(t, p, modeBinary)
	mustEcho(t, c, []byte("logged"))
	if !waitFileContains(t, logPath, "Plain non-SSL (ws://) WebSocket connection", 5*time.Second) {
		t.Fatalf("the session is not in the log file")
	}
	b, _ := os.ReadFile(logPath)
	for _, want := range []string{"an earlier line\n", "WebSocket server settings:", "  - proxying from ", `"GET / HTTP/1.1" 101 -`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("log file lacks %q:\n%s", want, b)
		}
	}
	// Every line of the file is also on stderr, as in Python.
	if !waitLog(p, "Plain non-SSL (ws://) WebSocket connection", 2*time.Second) {
		t.Errorf("stderr lacks the session")
	}

	// logrotate: move the file away, SIGHUP, and later lines go to a new
	// file at the path.
	rotated := logPath + ".1"
	if err := os.Rename(logPath, rotated); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(logPath); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP did not reopen %s", logPath)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.conn.Close()
	if !waitFileContains(t, logPath, "Client disconnected", 5*time.Second) {
		t.Errorf("the new log file lacks the later line")
	}
	if old, _ := os.ReadFile(rotated); strings.Contains(string(old), "Client disconnected") {
		t.Errorf("the rotated file got a line after SIGHUP")
	}
	if !p.running() {
		t.Errorf("SIGHUP stopped the proxy")
	}
}

// TestLogFileWorkers: worker processes share one log file; every line is
// whole and each worker's sessions are in it.
func TestLogFileWorkers(t *testing.T) {
	echo := startEcho(t)
	logPath := filepath.Join(t.TempDir(), "websockify.log")
	p := launchProxy(t, proxyConfig{Args: []string{"--workers", "2", "--log-file", logPath, echo.addr}})
	const n = 40
	for i := 0; i < n; i++ {
		c := dialWS(t, p, modeBinary)
		mustEcho(t, c, []byte("w"))
		c.conn.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	line := regexp.MustCompile(`^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4} \d\d:\d\d:\d\d\] `)
	for {
		b, _ := os.ReadFile(logPath)
		count := strings.Count(string(b), "Plain non-SSL (ws://) WebSocket connection")
		if count >= n {
			for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
				if strings.HasPrefix(l, "127.") && !line.MatchString(l) {
					t.Errorf("a torn line: %q", l)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d sessions in the shared log file", count, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rsyslog is a real rsyslogd listening on UDP and a unix datagram socket,
// writing what it parsed (facility, severity, app name, pid, message) to a
// file.
type rsyslog struct {
	udp, sock, out string
}

func startRsyslog(t *testing.T) *rsyslog {
	t.Helper()
	requireFile(t, "/usr/sbin/rsyslogd", "Debian package rsyslog")
	dir := shortTempDir(t)
	r := &rsyslog{
		udp:  "127.0.0.1:" + strconv.Itoa(freeUDPPort(t)),
		sock: filepath.Join(dir, "log.sock"),
		out:  filepath.Join(dir, "out.log"),
	}
	_, port, _ := strings.Cut(r.udp, ":")
	conf := `global(workDirectory="` + dir + `")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="` + port + `")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="` + r.sock + `" UseSpecialParser="off" ParseHostname="on")
template(name="parsed" type="string" string="%syslogfacility%.%syslogseverity% app=%app-name% pid=%procid% msg=%msg%\n")
*.* action(type="omfile" file="` + r.out + `" template="parsed")
`
	confPath := filepath.Join(dir, "rsyslog.conf")
	writeFile(t, confPath, conf)
	cmd := exec.Command("/usr/sbin/rsyslogd", "-n", "-f", confPath, "-i", filepath.Join(dir, "rsyslog.pid"))
	if out, err := exec.Command("/usr/sbin/rsyslogd", "-N1", "-f", confPath).CombinedOutput(); err != nil {
		t.Fatalf("rsyslog config: %v\n%s", err, out)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(r.sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslogd made no socket at %s", r.sock)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // the UDP input starts beside the socket
	return r
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}

func TestSyslog(t *testing.T) {
	echo := startEcho(t)
	r := startRsyslog(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"udp", []string{"--syslog", r.udp}},
		{"unix", []string{"--syslog", r.sock}},
		{"udp legacy", []string{"--syslog", r.udp, "--legacy-syslog"}},
		{"unix legacy", []string{"--syslog", r.sock, "--legacy-syslog"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, echo.addr, append([]string{"-v"}, tc.args...)...)
			path := "/" + strings.ReplaceAll(tc.name, " ", "-")
			r2, err := upgradeTo(p, nil, path)
			if err != nil || r2.status != 101 {
				t.Fatalf("upgrade: %v %d", err, r2.status)
			}
			mustEcho(t, r2.c, []byte("syslog"))
			r2.c.conn.Close()
			pid := strconv.Itoa(p.pid())
			// user.info (facility 1, severity 6), parsed by rsyslog.
			want := "1.6 app=websockify pid=" + pid + " msg="
			if !waitFileContains(t, r.out, want, 5*time.Second) ||
				!waitFileContains(t, r.out, "Path: '"+path+"'", 5*time.Second) {
				b, _ := os.ReadFile(r.out)
				t.Fatalf("rsyslog did not get %q with the session's path:\n%s", want, truncate(string(b), 4000))
			}
			// -v lines arrive as debug (severity 7).
			if !waitFileContains(t, r.out, "1.7 app=websockify pid="+pid, 5*time.Second) {
				t.Errorf("no debug-severity line from -v")
			}
			// Still on stderr too.
			if !waitLog(p, "Path: '"+path+"'", 2*time.Second) {
				t.Errorf("stderr lacks the session")
			}
		})
	}
}

func TestLoggingUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--legacy-syslog", "127.0.0.1:1"}, "--syslog"},
		{[]string{"--syslog", "127.0.0.1:notaport", "127.0.0.1:1"}, "syslog port"},
		{[]string{"--log-file", "/nonexistent-dir/x.log", "127.0.0.1:1"}, "log file"},
	} {
		r := runCLI(t, 10*time.Second, append([]string{"127.0.0.1:" + strconv.Itoa(freePort(t, "127.0.0.1"))}, tc.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 naming %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}
