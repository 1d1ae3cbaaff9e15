package test

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The README's examples of wrapped programs and service modes, run exactly
// as written (from the repository root, after `make build`, which the
// README's `make demo` and `make test` do), each checked from outside.

// readmeCommands returns the command lines of the sh blocks in the README
// section headed title, comments left out.
func readmeCommands(t *testing.T, root, title string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	inSection, inBlock := false, false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			inSection = line == "## "+title
		case inSection && line == "```sh":
			inBlock = true
		case inSection && inBlock && line == "```":
			inBlock = false
		case inSection && inBlock && line != "" && !strings.HasPrefix(line, "#"):
			cmds = append(cmds, line)
		}
	}
	if len(cmds) == 0 {
		t.Fatalf("README.md has no commands under %q", title)
	}
	return cmds
}

// repoRoot builds the binaries the README uses (bin/websockify, rebind.so).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("make", "-C", root, "build").CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	return root
}

// runReadme starts one README line with bash in root; it is killed (its
// process group) when the test ends.
func runReadme(t *testing.T, root, line string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	cmd := exec.Command("bash", "-c", "exec "+line)
	cmd.Dir = root
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		if t.Failed() {
			t.Logf("%s:\n%s", line, truncate(out.String(), 4000))
		}
	})
	return cmd, out
}

// upgradeAt waits until addr completes a WebSocket upgrade and returns the
// client.
func upgradeAt(t *testing.T, addr string, d time.Duration) *wsClient {
	t.Helper()
	p := &proxy{t: t, network: "tcp", addr: addr}
	deadline := time.Now().Add(d)
	for {
		c, err := dialWSE(p, modeBinary, nil)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("no WebSocket upgrade at %s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func requirePortFree(t *testing.T, addr string) {
	t.Helper()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s is taken; the README's example needs it", addr)
	}
}

func TestReadmeWrapExamples(t *testing.T) {
	requireSocat(t)
	requireFile(t, telnetdPath, "Debian package inetutils-telnetd")
	requireFile(t, xvncPath, "Debian package tigervnc-standalone-server")
	root := repoRoot(t)
	cmds := readmeCommands(t, root, "Wrapping a program")
	if len(cmds) != 2 {
		t.Fatalf("want the telnet and the Xvnc examples, got %q", cmds)
	}
	t.Run("telnet", func(t *testing.T) {
		requirePortFree(t, "127.0.0.1:2023")
		runReadme(t, root, cmds[0])
		c := upgradeAt(t, "127.0.0.1:2023", 20*time.Second)
		defer c.conn.Close()
		_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		msg, err := c.readMessage()
		if err != nil || len(msg) == 0 || msg[0] != 0xff {
			t.Fatalf("telnetd's negotiation through port 2023: %q, %v", msg, err)
		}
	})
	t.Run("xvnc", func(t *testing.T) {
		requirePortFree(t, "127.0.0.1:5901")
		if _, err := os.Stat("/tmp/.X11-unix/X1"); err == nil {
			t.Fatalf("display :1 is taken; the README's example needs it")
		}
		runReadme(t, root, cmds[1])
		c := upgradeAt(t, "127.0.0.1:5901", 30*time.Second)
		got, err := c.readN(12)
		c.conn.Close()
		if err != nil || !bytes.HasPrefix(got, []byte("RFB 003.")) {
			t.Fatalf("RFB banner through 5901: %q, %v", got, err)
		}
		resp, err := httpGet("http://127.0.0.1:5901/vnc_lite.html?path=websockify")
		if err != nil || !strings.Contains(resp, "noVNC") {
			t.Fatalf("vnc_lite.html from the same port: %v", err)
		}
	})
}

func httpGet(url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "curl", "-sf", url).Output()
	if err != nil {
		// curl may be missing; fall back to a plain request.
		return rawGet(url)
	}
	return string(out), nil
}

func rawGet(url string) (string, error) {
	rest := strings.TrimPrefix(url, "http://")
	host, path, _ := strings.Cut(rest, "/")
	c, err := net.DialTimeout("tcp", host, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("GET /" + path + " HTTP/1.0\r\nHost: " + host + "\r\n\r\n")); err != nil {
		return "", err
	}
	var b bytes.Buffer
	_, err = b.ReadFrom(c)
	return b.String(), err
}

func TestReadmeServiceExamples(t *testing.T) {
	requireFile(t, "/usr/bin/systemd-socket-activate", "Debian package systemd")
	root := repoRoot(t)
	cmds := readmeCommands(t, root, "Running as a service")
	if len(cmds) != 3 {
		t.Fatalf("want the daemon, kill and socket activation examples, got %q", cmds)
	}
	requirePortFree(t, "127.0.0.1:6080")
	t.Run("daemon", func(t *testing.T) {
		cmd := exec.Command("bash", "-c", cmds[0])
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", cmds[0], err, out)
		}
		pid := readPid(t, "/tmp/websockify.pid")
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
		c := upgradeAt(t, "127.0.0.1:6080", 10*time.Second)
		c.conn.Close()
		kill := exec.Command("bash", "-c", cmds[1])
		kill.Dir = root
		if out, err := kill.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", cmds[1], err, out)
		}
		if !waitGone(pid, 10*time.Second) {
			t.Fatalf("the daemon did not stop")
		}
		if _, err := os.Stat("/tmp/websockify.pid"); !os.IsNotExist(err) {
			t.Errorf("the pid file is still there")
		}
		if b, _ := os.ReadFile("/tmp/websockify.log"); !bytes.Contains(b, []byte("WebSocket connection")) {
			t.Errorf("/tmp/websockify.log lacks the session")
		}
	})
	t.Run("socket activation", func(t *testing.T) {
		runReadme(t, root, cmds[2])
		c := upgradeAt(t, "127.0.0.1:6080", 20*time.Second)
		c.conn.Close()
	})
}
