package service

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestNotify(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{filepath.Join(dir, "notify"), "@websockify-test-" + strconv.Itoa(os.Getpid())} {
		addr := name
		if strings.HasPrefix(addr, "@") {
			addr = "\x00" + addr[1:]
		}
		conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv("NOTIFY_SOCKET", name)
		if err := Notify("READY=1"); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		n, _, err := conn.ReadFromUnix(buf)
		conn.Close()
		if err != nil || string(buf[:n]) != "READY=1" {
			t.Errorf("%s: got %q, %v", name, buf[:n], err)
		}
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Notify("READY=1"); err != nil {
		t.Errorf("without NOTIFY_SOCKET: %v", err)
	}
}

func TestPidFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ws.pid")
	if err := WritePidFile(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("pid file holds %q", b)
	}
	// A file naming another process is left alone.
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	RemovePidFile(path)
	if _, err := os.Stat(path); err != nil {
		t.Errorf("another process's pid file was removed")
	}
	if err := WritePidFile(path); err != nil {
		t.Fatal(err)
	}
	RemovePidFile(path)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("own pid file not removed: %v", err)
	}
}

func TestTakeDaemonReadyOutsideDaemon(t *testing.T) {
	t.Setenv(daemonEnv, "")
	ready, dir, isDaemon := TakeDaemonReady()
	if isDaemon || dir != "" {
		t.Fatalf("not a daemon, yet isDaemon=%v dir=%q", isDaemon, dir)
	}
	ready(nil) // does nothing
}

func TestListenFDsOtherProcess(t *testing.T) {
	// Sockets passed to another process (LISTEN_PID) are not this one's.
	t.Setenv("LISTEN_PID", "1")
	t.Setenv("LISTEN_FDS", "1")
	if files := ListenFDs(); files != nil {
		t.Fatalf("took %d sockets meant for pid 1", len(files))
	}
	if os.Getenv("LISTEN_FDS") != "" || os.Getenv("LISTEN_PID") != "" {
		t.Errorf("the variables were not cleared")
	}
}
