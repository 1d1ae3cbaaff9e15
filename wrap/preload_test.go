package wrap

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// goListener is a Go program that listens on the port in its argument.
const goListener = `package main

import (
	"net"
	"os"
)

func main() {
	l, err := net.Listen("tcp", ":"+os.Args[1])
	if err != nil {
		panic(err)
	}
	for {
		c, err := l.Accept()
		if err == nil {
			c.Close()
		}
	}
}
`

// goListeners holds goListener built once per cgo setting, since a build
// takes seconds; in a directory TestMain removes.
var goListeners struct {
	sync.Mutex
	built map[string]string
	err   map[string]string
}

// buildGoListener returns goListener built with cgo on ("1") or off ("0").
func buildGoListener(t *testing.T, cgo string) string {
	t.Helper()
	goListeners.Lock()
	defer goListeners.Unlock()
	if goListeners.built == nil {
		goListeners.built, goListeners.err = map[string]string{}, map[string]string{}
	}
	if exe, ok := goListeners.built[cgo]; ok {
		return exe
	}
	if msg, ok := goListeners.err[cgo]; ok {
		t.Skip(msg)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	dir := filepath.Join(testScratch, "cgo"+cgo)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(goListener), 0o644); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "listener")
	build := exec.Command(goTool, "build", "-o", exe, "main.go")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED="+cgo, "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		goListeners.err[cgo] = "cannot build a Go program with CGO_ENABLED=" + cgo + ": " + err.Error() + "\n" + string(out)
		t.Skip(goListeners.err[cgo])
	}
	goListeners.built[cgo] = exe
	return exe
}

func TestStaticProgramIsRefused(t *testing.T) {
	t.Parallel()
	exe := buildGoListener(t, "0")
	port := freePort(t)
	_, err := Start(Config{Argv: []string{exe, "1"}, ListenPort: port, Rebind: rebindPath})
	if err == nil || !strings.Contains(err.Error(), "is statically linked: LD_PRELOAD cannot move its bind") {
		t.Fatalf("Start of a static program: %v", err)
	}
	t.Log(err)
}

func TestGoProgramIsRefused(t *testing.T) {
	t.Parallel()
	exe := buildGoListener(t, "1")
	port := freePort(t)
	_, err := Start(Config{Argv: []string{exe, "1"}, ListenPort: port, Rebind: rebindPath})
	if err == nil || !strings.Contains(err.Error(), "is a Go program") {
		t.Fatalf("Start of a dynamically linked Go program: %v", err)
	}
	t.Log(err)
}

// copyExecutable copies the executable at src into dir, with mode.
func copyExecutable(t *testing.T, src, dir string, mode os.FileMode) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, mode); err != nil { // past the umask, with the set-id bits
		t.Fatal(err)
	}
	return dst
}

func TestSetIDProgramIsRefused(t *testing.T) {
	t.Parallel()
	if os.Getuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
	socat, err := exec.LookPath("socat")
	if err != nil {
		t.Skip("socat not installed")
	}
	const nobody = 65534
	for _, tc := range []struct {
		name     string
		mode     os.FileMode
		uid, gid int
		want     string
	}{
		{"setuid", 0o755 | os.ModeSetuid, nobody, 0, "is setuid (to user 65534): the dynamic loader ignores LD_PRELOAD"},
		{"setgid", 0o755 | os.ModeSetgid, 0, nobody, "is setgid (to group 65534): the dynamic loader ignores LD_PRELOAD"},
	} {
		exe := copyExecutable(t, socat, t.TempDir(), 0o755)
		if err := os.Chown(exe, tc.uid, tc.gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(exe, tc.mode); err != nil { // chown clears the set-id bits
			t.Fatal(err)
		}
		_, err := Start(Config{Argv: []string{exe, "TCP-LISTEN:1", "EXEC:cat"}, ListenPort: freePort(t), Rebind: rebindPath})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Start: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestSetuidToOurselvesIsMoved(t *testing.T) {
	t.Parallel()
	socat, err := exec.LookPath("socat")
	if err != nil {
		t.Skip("socat not installed")
	}
	// Set-user-ID to the user running it changes no ID, so the loader
	// honours LD_PRELOAD.
	exe := copyExecutable(t, socat, t.TempDir(), 0o755|os.ModeSetuid)
	listenPort := freePort(t)
	p, log := startWrapped(t, Exit, listenPort, exe, "TCP-LISTEN:"+itoa(listenPort)+",reuseaddr,fork", "EXEC:cat")
	checkMoved(t, p, log, listenPort, "127.0.0.1")
}

func TestScriptIsJudgedByItsInterpreter(t *testing.T) {
	t.Parallel()
	static := buildGoListener(t, "0")
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte("#!"+static+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkPreloadable(script, 5900); err == nil || !strings.Contains(err.Error(), "statically linked") {
		t.Errorf("a script run by a static interpreter: %v", err)
	}
	if err := os.WriteFile(script, []byte("#!/usr/bin/env sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkPreloadable(script, 5900); err != nil {
		t.Errorf("a sh script: %v", err)
	}
}
