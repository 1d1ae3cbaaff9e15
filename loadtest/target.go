package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Target kinds. A target is what sits behind the proxy, where a VNC server
// would be.
const (
	targetEcho   = "echo"   // writes back whatever it reads
	targetSource = "source" // after one "go" byte, writes N bytes and half-closes
	targetSink   = "sink"   // reads and counts; after N bytes writes one ack byte
	targetStream = "stream" // the soak target, from a small send buffer (stall mode)
)

// targetMain is the hidden "target" subcommand: it listens, prints
// "LISTEN host:port" on stdout so the parent learns the port, and serves until
// killed or until its parent dies.
func targetMain(args []string) error {
	fs := flag.NewFlagSet("target", flag.ContinueOnError)
	kind := fs.String("kind", targetEcho, "echo, source or sink")
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	nbytes := fs.Int64("bytes", 0, "bytes to send (source) or to count before acking (sink)")
	reusePort := fs.Bool("reuseport", false, "listen with SO_REUSEPORT, so that several targets share the port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := checkLoopback(*listen); err != nil {
		return err
	}
	var lc net.ListenConfig
	if *reusePort {
		lc.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}); err != nil {
				return err
			}
			return serr
		}
	}
	ln, err := lc.Listen(background, "tcp", *listen)
	if err != nil {
		return err
	}
	// The line the parent waits for; stdout is a pipe, so flush is implicit.
	fmt.Printf("LISTEN %s\n", ln.Addr())
	var serve func(net.Conn)
	switch *kind {
	case targetEcho:
		serve = serveEcho
	case targetSource:
		serve = func(c net.Conn) { serveSource(c, *nbytes) }
	case targetSink:
		serve = func(c net.Conn) { serveSink(c, *nbytes) }
	case targetSoak:
		serve = serveSoak
	case targetStream:
		serve = serveStream
	default:
		return fmt.Errorf("unknown target kind %q", *kind)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			if isTemporary(err) {
				// Out of descriptors: the run is past what this process can
				// hold. Back off instead of spinning; the client will see
				// time-outs and report how far it got.
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		go serve(c)
	}
}

// serveEcho copies input back with a small buffer and plain Read/Write. Not
// io.Copy: on a TCPConn that becomes splice(2), which holds a pipe (two more
// descriptors) per idle connection and would cap a 9,900-session hold run.
func serveEcho(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// serveSource waits for one byte, so the client can start its clock before
// the first byte leaves, then writes n bytes as fast as the socket takes them.
func serveSource(c net.Conn, n int64) {
	defer c.Close()
	var gobyte [1]byte
	if _, err := io.ReadFull(c, gobyte[:]); err != nil {
		return
	}
	buf := make([]byte, 256<<10)
	for n > 0 {
		chunk := buf
		if int64(len(chunk)) > n {
			chunk = chunk[:n]
		}
		w, err := c.Write(chunk)
		n -= int64(w)
		if err != nil {
			return
		}
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	// Wait for the client to go away so the last bytes are not cut by a reset.
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, _ = io.Copy(io.Discard, c)
}

// streamSndBuf is the stream target's SO_SNDBUF (the kernel doubles it).
const streamSndBuf = 64 << 10

// serveStream is the stall mode's target: the soak target's protocol (a
// stall session asks for an endless 'D' download), from a socket whose send
// buffer is fixed small so that 1,000 stalled sessions park their backlog in
// the proxy, not here, and cannot fill the machine's TCP memory.
func serveStream(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(streamSndBuf)
	}
	serveSoak(c)
}

// serveSink counts incoming bytes and answers one ack byte once n have
// arrived, which is when the client stops its clock.
func serveSink(c net.Conn, n int64) {
	defer c.Close()
	buf := make([]byte, 256<<10)
	var got int64
	acked := false
	for {
		r, err := c.Read(buf)
		got += int64(r)
		if !acked && got >= n {
			acked = true
			if _, werr := c.Write([]byte{'!'}); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// targetProc is a running target child.
type targetProc struct {
	cmd  *exec.Cmd
	addr string
}

// sessionsPerTarget is what one target child serves at most: each session
// is one socket there, under the 20,000-descriptor limit.
const sessionsPerTarget = 16000

// startTargets starts enough target children for sessions, all on one port
// (SO_REUSEPORT), and returns the first; the others stop with it at cleanup.
func startTargets(kind, listen string, nbytes int64, sessions int) (*targetProc, error) {
	n := (sessions + sessionsPerTarget - 1) / sessionsPerTarget
	if n <= 1 {
		return startTarget(kind, listen, nbytes, false)
	}
	first, err := startTarget(kind, listen, nbytes, true)
	if err != nil {
		return nil, err
	}
	for range n - 1 {
		if _, err := startTarget(kind, first.addr, nbytes, true); err != nil {
			return nil, err
		}
	}
	return first, nil
}

// startTarget re-executes this binary as a target child and waits for its
// listening address.
func startTarget(kind, listen string, nbytes int64, reusePort bool) (*targetProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "target", "-kind", kind, "-listen", listen, "-bytes", fmt.Sprint(nbytes), fmt.Sprintf("-reuseport=%v", reusePort))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	t := &targetProc{cmd: cmd}
	atCleanup(t.stop)
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		lines <- line
		// Keep draining so a stray print never blocks the child.
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case line := <-lines:
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), "LISTEN ")
		if !ok {
			t.stop()
			return nil, fmt.Errorf("target child said %q", line)
		}
		t.addr = addr
		return t, nil
	case <-time.After(10 * time.Second):
		t.stop()
		return nil, errors.New("target child did not start listening within 10s")
	}
}

func (t *targetProc) stop() {
	if t.cmd.Process != nil && t.cmd.ProcessState == nil {
		_ = t.cmd.Process.Kill()
		_ = t.cmd.Wait()
	}
}

func isTemporary(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// checkLoopback refuses any address outside 127.0.0.0/8 and ::1: this tool
// generates load and must never point it at another machine.
func checkLoopback(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s: only loopback addresses (127.0.0.0/8, ::1) are allowed", hostport)
	}
	return nil
}
