// Package service is what websockify needs to run as a system service:
// systemd's protocols (the sockets it passes, NOTIFY_SOCKET), daemon mode
// (-D) by re-executing itself detached, and the pid file. It only finds
// the listeners systemd passes; serving them is eventloop's.
package service

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Notify sends state (such as "READY=1" or "STOPPING=1") to systemd when it
// asked for notifications (NOTIFY_SOCKET); without it, it does nothing.
func Notify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if strings.HasPrefix(path, "@") { // an abstract socket
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("NOTIFY_SOCKET: %w", err)
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}

// ListenFDs returns the listening sockets systemd passed with socket
// activation (LISTEN_PID, LISTEN_FDS: descriptors 3 and up), and clears
// those variables so that children do not take them too. None without
// activation.
func ListenFDs() []*os.File {
	defer os.Unsetenv("LISTEN_PID")
	defer os.Unsetenv("LISTEN_FDS")
	defer os.Unsetenv("LISTEN_FDNAMES")
	var pid, n int
	if _, err := fmt.Sscan(os.Getenv("LISTEN_PID"), &pid); err != nil || pid != os.Getpid() {
		return nil
	}
	if _, err := fmt.Sscan(os.Getenv("LISTEN_FDS"), &n); err != nil || n < 1 {
		return nil
	}
	files := make([]*os.File, 0, n)
	for fd := 3; fd < 3+n; fd++ {
		syscall.CloseOnExec(fd) // not for a wrapped program
		files = append(files, os.NewFile(uintptr(fd), fmt.Sprintf("LISTEN_FD_%d", fd)))
	}
	return files
}

// daemonEnv marks the detached copy of the process (-D), and carries the
// descriptor on which it reports that it is serving.
const daemonEnv = "WEBSOCKIFY_DAEMON"

// daemonDirEnv is the directory the daemon moves to once it has read its
// arguments.
const daemonDirEnv = "WEBSOCKIFY_DAEMON_DIR"

// Daemonize starts this program again detached from the terminal (a new
// session, stdin, stdout and stderr on /dev/null) and waits until the copy
// says it is serving (TakeDaemonReady) or exits. The copy starts in the
// current directory, so that it resolves relative paths in its arguments as
// this process did, and moves to dir once it has (TakeDaemonReady's dir).
// A Go process cannot fork safely, so the copy is a new process given the
// same arguments. The caller exits with status 0 once this returns nil; the
// error says why the daemon did not start.
func Daemonize(dir string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		return err
	}
	defer rd.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		wr.Close()
		return err
	}
	defer null.Close()
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), daemonEnv+"=3", daemonDirEnv+"="+dir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, null
	cmd.ExtraFiles = []*os.File{wr} // descriptor 3: readiness
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	wr.Close()
	if err != nil {
		return err
	}
	// The daemon writes "ok" once serving, or why it failed; EOF without
	// either means it died.
	msg := make([]byte, 4096)
	n, _ := rd.Read(msg)
	switch reply := string(msg[:n]); {
	case reply == "ok":
		_ = cmd.Process.Release()
		return nil
	case reply != "":
		return errors.New(strings.TrimSpace(reply))
	}
	state, _ := cmd.Process.Wait()
	return fmt.Errorf("the daemon exited before it was serving (%v)", state)
}

// TakeDaemonReady, in the daemon, returns the function that tells the
// waiting parent it serves (nil) or why it cannot; only its first call
// counts. Call it first thing: it clears the mark, so that processes the
// daemon starts (workers, a wrapped program) are not daemons themselves.
// Outside a daemon the function does nothing.
func TakeDaemonReady() (ready func(error), dir string, isDaemon bool) {
	fd, err := strconv.Atoi(os.Getenv(daemonEnv))
	dir = os.Getenv(daemonDirEnv)
	os.Unsetenv(daemonEnv)
	os.Unsetenv(daemonDirEnv)
	if err != nil || fd < 3 {
		return func(error) {}, "", false
	}
	f := os.NewFile(uintptr(fd), "daemon-ready")
	syscall.CloseOnExec(fd)
	var once sync.Once
	return func(err error) {
		once.Do(func() {
			if err == nil {
				_, _ = f.WriteString("ok")
			} else {
				_, _ = f.WriteString(err.Error())
			}
			_ = f.Close()
		})
	}, dir, true
}

// WritePidFile writes this process's pid to path (atomically: a reader
// never sees a partial file).
func WritePidFile(path string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// RemovePidFile removes path if it still names this process.
func RemovePidFile(path string) {
	b, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		_ = os.Remove(path)
	}
}
