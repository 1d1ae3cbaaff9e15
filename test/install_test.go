package test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gowebsockify/websockify/auth"
	"github.com/gowebsockify/websockify/token"
)

// `make install DESTDIR=... PREFIX=/usr` into a temporary tree, then the
// installed files used as an operator would: the binary wrapping a program
// with the installed rebind.so, serving the installed web pages, the man
// page read by man, the completions run by bash and zsh, and the systemd
// units run by a real systemd (testdata/systemd-boot.sh).
//
// Not parallel: make install runs `make build` in the checkout, which the
// README tests build too.
func TestInstall(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	pkg := t.TempDir()
	cmd := exec.Command("make", "-C", root, "install", "DESTDIR="+pkg, "PREFIX=/usr")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	usr := filepath.Join(pkg, "usr")

	t.Run("Files", func(t *testing.T) { testInstalledFiles(t, usr) })
	t.Run("WrapAndWeb", func(t *testing.T) { testInstalledWrapAndWeb(t, root, usr) })
	t.Run("ManPage", func(t *testing.T) { testInstalledManPage(t, usr) })
	t.Run("BashCompletion", func(t *testing.T) { testInstalledBashCompletion(t, usr) })
	t.Run("ZshCompletion", func(t *testing.T) { testInstalledZshCompletion(t, root, usr) })
	t.Run("Systemd", func(t *testing.T) { testInstalledUnits(t, root, pkg) })
	t.Run("Uninstall", func(t *testing.T) {
		cmd := exec.Command("make", "-C", root, "uninstall", "DESTDIR="+pkg, "PREFIX=/usr")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("make uninstall: %v\n%s", err, out)
		}
		var left []string
		_ = filepath.Walk(pkg, func(path string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() {
				left = append(left, path)
			}
			return nil
		})
		if len(left) > 0 {
			t.Errorf("files left after make uninstall: %v", left)
		}
	})
}

func testInstalledFiles(t *testing.T, usr string) {
	for path, mode := range map[string]os.FileMode{
		"bin/websockify":                               0o755,
		"lib/websockify/rebind.so":                     0o644,
		"share/websockify/www/websock.js":              0o644,
		"share/websockify/www/wstelnet.html":           0o644,
		"share/websockify/www/tests/websock_test.html": 0o644,
		"share/man/man1/websockify.1":                  0o644,
		"share/bash-completion/completions/websockify": 0o644,
		"share/zsh/site-functions/_websockify":         0o644,
		"lib/systemd/system/websockify@.service":       0o644,
		"lib/systemd/system/websockify@.socket":        0o644,
	} {
		st, err := os.Stat(filepath.Join(usr, path))
		if err != nil {
			t.Errorf("not installed: %v", err)
			continue
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", path, st.Mode().Perm(), mode)
		}
	}
	// The unit runs the installed binary.
	unit, _ := os.ReadFile(filepath.Join(usr, "lib/systemd/system/websockify@.service"))
	if !bytes.Contains(unit, []byte("\nExecStart=/usr/bin/websockify ")) {
		t.Errorf("the installed service does not run /usr/bin/websockify:\n%s", unit)
	}
}

// testInstalledWrapAndWeb runs the installed binary wrapping socat: the
// rebind.so it preloads is the installed one (none is built: the cache
// directory stays empty), and --web serves the installed pages.
func testInstalledWrapAndWeb(t *testing.T, root, usr string) {
	requireSocat(t)
	cache := t.TempDir()
	port := quietPort(t)
	listen := "127.0.0.1:" + strconv.Itoa(port)
	www := filepath.Join(usr, "share/websockify/www")
	cmd := exec.Command(filepath.Join(usr, "bin/websockify"), "--web", www, listen,
		"--", "socat", "TCP-LISTEN:"+strconv.Itoa(port)+",reuseaddr,fork", "EXEC:cat")
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+cache, "HOME="+cache)
	p := startCommand(t, cmd, listen, port)

	c := dialWS(t, p, modeBinary)
	mustEcho(t, c, []byte("through the installed websockify"))

	// socat, started by websockify, has the installed rebind.so mapped.
	want := filepath.Join(usr, "lib/websockify/rebind.so")
	// Children are listed by the thread that started them.
	var children []string
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", p.pid()))
	for _, task := range tasks {
		b, _ := os.ReadFile(task)
		children = append(children, strings.Fields(string(b))...)
	}
	mapped := false
	for _, child := range children {
		maps, _ := os.ReadFile("/proc/" + child + "/maps")
		if bytes.Contains(maps, []byte(want)) {
			mapped = true
		}
	}
	if !mapped {
		t.Errorf("no child of websockify (%v) has %s mapped", children, want)
	}
	if entries, _ := os.ReadDir(cache); len(entries) > 0 {
		t.Errorf("the cache directory is not empty (rebind.so was built, not found): %v", entries)
	}

	got, err := httpGet("http://" + listen + "/websock.js")
	if err != nil {
		t.Fatalf("GET /websock.js: %v", err)
	}
	src, _ := os.ReadFile(filepath.Join(root, "web/websock.js"))
	if got != string(src) {
		t.Errorf("GET /websock.js: %d bytes, not web/websock.js's %d", len(got), len(src))
	}
}

// quietPort returns a free TCP port on 127.0.0.1 below the kernel's
// ephemeral range, so that no outgoing connection on this busy machine can
// take it in the seconds before systemd (or a wrapped program) binds it,
// as one can with freePort's. It is marked used for freePort too.
func quietPort(t *testing.T) int {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			low, _ = strconv.Atoi(f[0])
		}
	}
	const first = 10000
	if low <= first+100 {
		return freePort(t, "127.0.0.1")
	}
	for range 200 {
		port := first + rand.IntN(low-first)
		portMu.Lock()
		used := usedPorts[port]
		usedPorts[port] = true
		portMu.Unlock()
		if used {
			continue
		}
		if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("quietPort: no free port below the ephemeral range")
	return 0
}

// startCommand starts cmd as the proxy under test and waits until listen
// accepts.
func startCommand(t *testing.T, cmd *exec.Cmd, listen string, port int) *proxy {
	t.Helper()
	p := &proxy{t: t, cmd: cmd, port: port, network: "tcp", addr: listen}
	if err := p.start(nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s: stderr:\n%s", strings.Join(cmd.Args, " "), truncate(p.stderr.String(), 20000))
		}
	})
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-p.done:
			t.Fatalf("exited early (%v): %s", p.state, p.stderr.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", listen, 200*time.Millisecond); err == nil {
			c.Close()
			return p
		}
	}
	t.Fatalf("not accepting on %s after 10s: %s", listen, p.stderr.String())
	return nil
}

// testInstalledManPage: man renders the installed page without a warning.
func testInstalledManPage(t *testing.T, usr string) {
	requireFile(t, "/usr/bin/man", "Debian package man-db")
	requireFile(t, "/usr/bin/groff", "Debian package groff-base")
	page := filepath.Join(usr, "share/man/man1/websockify.1")
	cmd := exec.Command("man", "--warnings=w", "-l", page)
	cmd.Env = append(os.Environ(), "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat", "LANG=C.UTF-8")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("man -l %s: %v\n%s", page, err, stderr.String())
	}
	text := stdout.String()
	for _, want := range []string{"WEBSOCKIFY(1)", "SYNOPSIS", "--token-plugin WORD", "--cert FILE", "--web DIR",
		"UnixDomainSocketDirectory", "ClientCertCNAuth", "SIGUSR1", "websockify@.socket"} {
		if !strings.Contains(text, want) {
			t.Errorf("the rendered man page lacks %q", want)
		}
	}
	if strings.Contains(text, `\f`) || strings.Contains(text, `\-`) {
		t.Errorf("the rendered man page shows roff escapes:\n%s", text)
	}
}

// bashComplete runs the installed completion function in bash for the words
// (the last is the word being completed) in dir, and returns COMPREPLY.
func bashComplete(t *testing.T, usr, dir string, words ...string) []string {
	t.Helper()
	script := fmt.Sprintf(`source %q || exit 1
COMP_WORDS=(%s)
COMP_CWORD=%d
COMP_LINE="${COMP_WORDS[*]}"
COMP_POINT=${#COMP_LINE}
_websockify
printf '%%s\n' "${COMPREPLY[@]}"
`, filepath.Join(usr, "share/bash-completion/completions/websockify"), shellWords(words), len(words)-1)
	cmd := exec.Command("bash", "--norc", "--noprofile", "-c", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash completion of %q: %v\n%s", words, err, out)
	}
	return strings.Fields(string(out))
}

func shellWords(words []string) string {
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(quoted, " ")
}

func testInstalledBashCompletion(t *testing.T, usr string) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "webroot"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "web.pem"), "x")
	tests := []struct {
		words []string
		want  []string
	}{
		{[]string{"websockify", "--tok"}, []string{"--token-plugin", "--token-source"}},
		{[]string{"websockify", "--token-plugin", ""}, token.Names},
		{[]string{"websockify", "--token-plugin", "Token"}, []string{"TokenFile", "TokenFileName", "TokenRedis"}},
		// "--token-plugin=Tok": bash splits the word at "=".
		{[]string{"websockify", "--token-plugin", "=", "Tok"}, []string{"TokenFile", "TokenFileName", "TokenRedis"}},
		{[]string{"websockify", "--auth-plugin", ""}, auth.Names},
		{[]string{"websockify", "-v", "--wrap-mode", ""}, []string{"exit", "ignore", "respawn"}},
		{[]string{"websockify", "--web", "we"}, []string{"webroot"}},
		{[]string{"websockify", "--cert", "we"}, []string{"web.pem", "webroot"}},
		{[]string{"websockify", "--timeout", ""}, nil},
		{[]string{"websockify", "-"}, nil}, // checked below: every flag
		{[]string{"websockify", "6080", "--", "soca"}, []string{"socat"}},
	}
	for _, tt := range tests {
		got := bashComplete(t, usr, dir, tt.words...)
		slices.Sort(got)
		got = slices.Compact(got) // compgen -c names a command once per directory of $PATH
		if tt.words[len(tt.words)-1] == "-" {
			for _, flag := range []string{"-v", "--verbose", "--web", "--wrap-mode", "-D", "--inetd"} {
				if !slices.Contains(got, flag) {
					t.Errorf("websockify -<TAB> does not offer %s: %v", flag, got)
				}
			}
			continue
		}
		want := slices.Clone(tt.want)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("bash completion of %q = %v, want %v", tt.words, got, want)
		}
	}

	// bash-completion finds it where make install put it (its loader looks
	// in XDG_DATA_DIRS/bash-completion/completions).
	requireFile(t, "/usr/share/bash-completion/bash_completion", "Debian package bash-completion")
	script := `source /usr/share/bash-completion/bash_completion && _completion_loader websockify; complete -p websockify`
	cmd := exec.Command("bash", "--norc", "--noprofile", "-c", script)
	cmd.Env = append(os.Environ(), "XDG_DATA_DIRS="+filepath.Join(usr, "share"), "BASH_COMPLETION_USER_DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "-F _websockify websockify") {
		t.Errorf("bash-completion's loader did not load the installed completion: %v\n%s", err, out)
	}
}

// testInstalledZshCompletion completes in a real interactive zsh (compinit
// with the installed site-functions directory first in $fpath).
func testInstalledZshCompletion(t *testing.T, root, usr string) {
	requireFile(t, "/usr/bin/zsh", "Debian package zsh")
	fn := filepath.Join(usr, "share/zsh/site-functions/_websockify")
	if out, err := exec.Command("zsh", "-n", fn).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n %s: %v\n%s", fn, err, out)
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "webroot"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "web.pem"), "x")
	tests := []struct {
		line string
		want []string
	}{
		{"websockify --tok", []string{"--token-plugin", "--token-source"}},
		{"websockify --token-plugin ", token.Names},
		{"websockify --auth-plugin=", auth.Names},
		{"websockify --wrap-mode ", []string{"exit", "ignore", "respawn"}},
		{"websockify --ssl-version ", []string{"default", "tlsv1_1", "tlsv1_2", "tlsv1_3"}},
		{"websockify --web we", []string{"webroot"}},
		{"websockify 6080 -- soca", []string{"socat"}},
	}
	args := []string{"-f", filepath.Join(root, "test/testdata/zsh-complete.zsh"), filepath.Dir(fn)}
	for _, tt := range tests {
		args = append(args, tt.line)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "zsh", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("zsh completion: %v\n%s", err, out)
	}
	// The matches offered for each line, in the order of the lines.
	offered := make([][]string, len(tests))
	line, in := -1, false
	for _, l := range strings.Split(strings.ReplaceAll(string(out), "\r", ""), "\n") {
		l = strings.TrimSpace(l)
		var n int
		switch _, err := fmt.Sscanf(l, "<line %d>", &n); {
		case err == nil && n >= 1 && n <= len(tests):
			line, in = n-1, false
		case l == "<hits>":
			in = true
		case l == "</hits>":
			in = false
		case in && line >= 0 && !slices.Contains(offered[line], l):
			offered[line] = append(offered[line], l)
		}
	}
	for i, tt := range tests {
		got := offered[i]
		slices.Sort(got)
		want := slices.Clone(tt.want)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("zsh completion of %q = %v, want %v", tt.line, got, want)
		}
	}
	if t.Failed() {
		t.Logf("zsh's output:\n%s", out)
	}
}

// ---- the systemd units under a real systemd ----

// bootedSystemd is a systemd running as PID 1 of its own PID, mount and
// cgroup namespaces (testdata/systemd-boot.sh), sharing the network.
type bootedSystemd struct {
	t      *testing.T
	cmd    *exec.Cmd     // unshare
	pid    int           // systemd, as this machine numbers it
	cgroup string        // the cgroup it manages, under the machine's cgroup2 hierarchy
	out    *lockedBuffer // systemd's console
}

// bootSystemd starts systemd over the installed tree pkg, with etc laid
// over /etc, and waits until it runs. It is killed at the end of the test.
func bootSystemd(t *testing.T, root, pkg, etc string) *bootedSystemd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("booting systemd in namespaces needs root")
	}
	requireFile(t, "/lib/systemd/systemd", "Debian package systemd")
	requireFile(t, "/usr/bin/unshare", "Debian package util-linux")
	// A cgroup of its own, made the root of its cgroup namespace, so that
	// what it creates stays in one subtree that is removed afterwards.
	hierarchy := cgroup2Mount(t)
	cg := filepath.Join(hierarchy, fmt.Sprintf("websockify-test-%d-%d", os.Getpid(), time.Now().UnixNano()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatalf("creating a cgroup for systemd: %v", err)
	}
	s := &bootedSystemd{t: t, cgroup: cg, out: &lockedBuffer{}}
	t.Cleanup(s.shutdown)
	s.cmd = exec.Command("sh", "-c", `echo $$ >"$1/cgroup.procs" && exec unshare --fork --pid --mount --mount-proc --cgroup --kill-child bash "$2" "$3" "$4"`,
		"sh", cg, filepath.Join(root, "test/testdata/systemd-boot.sh"), pkg, etc)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// systemd is unshare's child.
	for deadline := time.Now().Add(60 * time.Second); s.pid == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no systemd under unshare after 60s:\n%s", s.out.String())
		}
		children, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", s.cmd.Process.Pid, s.cmd.Process.Pid))
		if f := strings.Fields(string(children)); len(f) > 0 {
			if comm, _ := os.ReadFile("/proc/" + f[0] + "/comm"); strings.TrimSpace(string(comm)) == "systemd" {
				s.pid, _ = strconv.Atoi(f[0])
			}
		}
	}
	var state string
	for deadline := time.Now().Add(120 * time.Second); state != "running"; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("systemd is %q after 120s:\n%s", state, s.out.String())
		}
		state, _ = s.run("systemctl", "is-system-running")
	}
	return s
}

// cgroup2Mount is where the machine mounts the unified cgroup hierarchy.
func cgroup2Mount(t *testing.T) string {
	t.Helper()
	mounts, _ := os.ReadFile("/proc/self/mounts")
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "cgroup2" {
			return f[1]
		}
	}
	t.Fatalf("no cgroup2 hierarchy mounted:\n%s", mounts)
	return ""
}

// run runs a command inside systemd's namespaces and returns its output,
// trimmed.
func (s *bootedSystemd) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(s.pid), "-m", "-p", "--"}, args...)...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// must is run for the test goroutine.
func (s *bootedSystemd) must(args ...string) string {
	s.t.Helper()
	out, err := s.run(args...)
	if err != nil {
		s.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// property is one property of a unit (systemctl show).
func (s *bootedSystemd) property(unit, name string) string {
	s.t.Helper()
	return s.must("systemctl", "show", "--value", "-p", name, unit)
}

// waitProperty waits up to d for a unit's property to have the value want.
func (s *bootedSystemd) waitProperty(unit, name, want string, d time.Duration) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(50 * time.Millisecond) {
		if s.property(unit, name) == want {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// shutdown kills systemd (and so everything in its PID namespace) and
// removes its cgroup subtree.
func (s *bootedSystemd) shutdown() {
	if s.t.Failed() {
		s.t.Logf("systemd's console:\n%s", truncate(s.out.String(), 20000))
		if s.pid != 0 {
			journal, _ := s.run("journalctl", "--no-pager", "-n", "200")
			s.t.Logf("journal:\n%s", journal)
		}
	}
	if s.pid != 0 {
		_ = syscall.Kill(s.pid, syscall.SIGKILL)
	}
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
	// Empty cgroups can be removed once the kernel has reaped their
	// processes; the deepest first.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var dirs []string
		_ = filepath.Walk(s.cgroup, func(path string, info os.FileInfo, err error) error {
			if err == nil && info.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = os.Remove(dirs[i])
		}
		if _, err := os.Stat(s.cgroup); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Errorf("cannot remove the cgroup %s", s.cgroup)
			return
		}
	}
}

// unitFileLimit is the open-file limit the service gets from its
// LimitNOFILE=524288: without CAP_SYS_RESOURCE (which some sandboxes, such
// as this test machine's, withhold), systemd cannot raise a limit above
// its own hard limit, and uses that.
func unitFileLimit() int {
	const unit = 524288
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Max >= unit {
		return unit
	}
	status, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(status), "\n") {
		if hex, ok := strings.CutPrefix(line, "CapEff:\t"); ok {
			if caps, err := strconv.ParseUint(hex, 16, 64); err == nil && caps&(1<<24) != 0 { // CAP_SYS_RESOURCE
				return unit
			}
		}
	}
	return int(rl.Max)
}

// testInstalledUnits runs the installed units, with every hardening option
// they set, under systemd: the socket unit listens, the first client
// starts the service through socket activation, Type=notify readiness
// makes it active, a session echoes through a real target, reload and a
// status signal reach the process, stop closes the session with 1001, and
// the socket starts it again for the next client.
func testInstalledUnits(t *testing.T, root, pkg string) {
	target := startEcho(t)
	port := quietPort(t)
	instance := "127.0.0.1:" + strconv.Itoa(port)
	etc := t.TempDir()
	if err := os.Mkdir(filepath.Join(etc, "websockify"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(etc, "websockify", instance+".conf"),
		"# the test's instance\nOPTIONS=--web /usr/share/websockify/www --heartbeat 30\nTARGET="+target.addr+"\n")

	// A second instance serves TLS with a key readable by root and group
	// ssl-cert only (Debian's convention for /etc/ssl/private), which the
	// dynamic user is given by a drop-in, as the unit's comment says.
	sslCert, err := user.LookupGroup("ssl-cert")
	if err != nil {
		t.Fatalf("group ssl-cert: %v: `make test` installs it (Debian package ssl-cert, via scripts/install-test-deps.sh)", err)
	}
	gid, _ := strconv.Atoi(sslCert.Gid)
	pki := newPKI(t)
	tlsPort := quietPort(t)
	tlsInstance := "127.0.0.1:" + strconv.Itoa(tlsPort)
	bundle, _ := os.ReadFile(pki.bundleFile)
	private := filepath.Join(etc, "ssl", "private")
	if err := os.MkdirAll(private, 0o710); err != nil {
		t.Fatal(err)
	}
	key := writePEM(t, private, "websockify-test.pem", bundle)
	// What is laid over /etc keeps its modes: the top (t.TempDir's 0700)
	// and ssl/ as the machine has them, private/ and the key Debian's way.
	for _, dir := range []string{etc, filepath.Join(etc, "ssl")} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for path, mode := range map[string]os.FileMode{private: 0o710, key: 0o640} {
		if err := os.Chown(path, 0, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(etc, "websockify", tlsInstance+".conf"),
		"OPTIONS=--cert /etc/ssl/private/websockify-test.pem --ssl-only\nTARGET="+target.addr+"\n")
	dropIn := filepath.Join(etc, "systemd", "system", "websockify@"+tlsInstance+".service.d")
	if err := os.MkdirAll(dropIn, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dropIn, "tls.conf"), "[Service]\nSupplementaryGroups=ssl-cert\n")

	sd := bootSystemd(t, root, pkg, etc)
	socket, service := "websockify@"+instance+".socket", "websockify@"+instance+".service"
	sd.must("systemctl", "start", "systemd-journald.socket")
	sd.must("systemd-analyze", "set-log-target", "journal") // systemd's own messages too
	if out, err := sd.run("systemctl", "start", socket); err != nil {
		status, _ := sd.run("systemctl", "status", "--no-pager", "-l", socket)
		t.Fatalf("systemctl start %s: %v\n%s\n%s", socket, err, out, status)
	}
	if got := sd.property(socket, "ActiveState"); got != "active" {
		t.Fatalf("%s is %s", socket, got)
	}
	if got := sd.property(service, "ActiveState"); got != "inactive" {
		t.Fatalf("%s is %s before any client", service, got)
	}

	// The first client starts the service; it is active (READY=1 came:
	// Type=notify) with the sockets systemd passed.
	p := &proxy{t: t, network: "tcp", addr: instance, port: port}
	c := dialWS(t, p, modeBinary)
	mustEcho(t, c, []byte("through systemd's socket"))
	if !sd.waitProperty(service, "ActiveState", "active", 60*time.Second) {
		t.Fatalf("%s is %s, not active", service, sd.property(service, "ActiveState"))
	}
	if got := sd.property(service, "Type"); got != "notify" {
		t.Errorf("%s has Type=%s", service, got)
	}
	mainPID := sd.property(service, "MainPID")
	journal := sd.must("journalctl", "--no-pager", "-u", service)
	if !strings.Contains(journal, "Listen on 1 socket(s) from systemd") {
		t.Errorf("the journal does not show the inherited socket served:\n%s", journal)
	}

	// The sandbox is in force on the running process: an unprivileged
	// dynamic user, no capabilities, no new privileges, a seccomp filter,
	// the open-file limit raised.
	status := sd.must("cat", "/proc/"+mainPID+"/status")
	for _, want := range []string{"NoNewPrivs:\t1", "Seccomp:\t2", "CapBnd:\t0000000000000000", "CapEff:\t0000000000000000"} {
		if !strings.Contains(status, want) {
			t.Errorf("the service's /proc/PID/status lacks %q:\n%s", want, status)
		}
	}
	if strings.Contains(status, "\nUid:\t0\t") {
		t.Errorf("the service runs as root:\n%s", status)
	}
	wantFiles := strconv.Itoa(unitFileLimit())
	if limits := sd.must("cat", "/proc/"+mainPID+"/limits"); !regexp.MustCompile(`Max open files +` + wantFiles + ` +` + wantFiles + ` `).MatchString(limits) {
		t.Errorf("LimitNOFILE not applied (want %s):\n%s", wantFiles, limits)
	}
	if out, err := sd.run("systemd-analyze", "security", "--threshold=20", "--no-pager", service); err != nil {
		t.Errorf("systemd-analyze security rates %s above 2.0: %v\n%s", service, err, out)
	}

	// The installed web pages, under ProtectSystem=strict.
	if got, err := httpGet("http://" + instance + "/websock.js"); err != nil || !strings.Contains(got, "websock.js") {
		t.Errorf("GET /websock.js through the service: %v %.200q", err, got)
	}

	// Reload sends SIGHUP: same process, the session goes on.
	sd.must("systemctl", "reload", service)
	if got := sd.property(service, "MainPID"); got != mainPID {
		t.Errorf("MainPID %s after reload, was %s", got, mainPID)
	}
	mustEcho(t, c, []byte("after reload"))
	// SIGUSR1 logs a status line to the journal.
	sd.must("systemctl", "kill", "--kill-whom=main", "--signal=SIGUSR1", service)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(journal, "status: sessions=1") {
		if time.Now().After(deadline) {
			t.Fatalf("no status line in the journal after SIGUSR1:\n%s", journal)
		}
		time.Sleep(100 * time.Millisecond)
		journal = sd.must("journalctl", "--no-pager", "-u", service)
	}

	// Stop: the session is closed with 1001, the process exits cleanly.
	sd.must("systemctl", "stop", service)
	_ = c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if code, _, _, err := c.expectClose(); err != nil || code != 1001 {
		t.Errorf("on stop the session got close code %d (%v), want 1001", code, err)
	}
	if got := sd.property(service, "Result"); got != "success" {
		t.Errorf("%s stopped with result %s", service, got)
	}
	journal = sd.must("journalctl", "--no-pager", "-u", service)
	if !strings.Contains(journal, "shutting down") {
		t.Errorf("the journal does not show the graceful shutdown:\n%s", journal)
	}

	// The socket kept the port: the next client starts it again.
	c2 := dialWS(t, p, modeBinary)
	mustEcho(t, c2, []byte("started again"))
	if !sd.waitProperty(service, "ActiveState", "active", 60*time.Second) {
		t.Fatalf("%s is %s after the second client", service, sd.property(service, "ActiveState"))
	}
	if got := sd.property(service, "MainPID"); got == mainPID || got == "0" {
		t.Errorf("MainPID %s after the restart, was %s", got, mainPID)
	}

	// The TLS instance: wss through the credential.
	sd.must("systemctl", "start", "websockify@"+tlsInstance+".socket")
	tp := &proxy{t: t, network: "tcp", addr: tlsInstance, port: tlsPort}
	wc, err := dialWSS(tp, pki.clientTLS(nil), modeBinary)
	if err != nil {
		journal, _ := sd.run("journalctl", "--no-pager", "-u", "websockify@"+tlsInstance+".service")
		t.Fatalf("wss to the TLS instance: %v\n%s", err, journal)
	}
	defer wc.conn.Close()
	mustEcho(t, wc, []byte("over TLS, the key read through group ssl-cert"))
}
