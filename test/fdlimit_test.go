package test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Item o: open-file exhaustion. Under `ulimit -n 256`, 300 clients arrive at
// once (handshake, then an echo): websockify must not exit, must refuse the
// surplus cleanly (closed or reset, never left hanging), keep every session
// it accepted working, and serve a new client once everything is closed.
// The storm is repeated a few times: a race with the limit does not show
// every time.
func TestOpenFileExhaustion(t *testing.T) {
	t.Parallel()
	const (
		limit  = 256
		rounds = 3
	)
	echo := startEcho(t)
	p := launchProxy(t, proxyConfig{Args: []string{echo.addr}, Ulimit: limit})
	if n, err := openFileLimit(p.pid()); err != nil || n != limit {
		t.Fatalf("websockify's open-file limit is %d (%v), want %d", n, err, limit)
	}
	fdStorms(t, p, echo, rounds, limit)
	if !p.running() {
		t.Fatalf("websockify exited (%v)", p.state)
	}
}

// fdStorm runs one storm of 300 clients and checks it; false means stop.
func fdStorm(t *testing.T, p *proxy, echo *target, round, limit int) bool {
	const (
		clients = 300
		// A client that is neither served nor refused within this long is
		// hanging.
		clientDeadline = 30 * time.Second
	)

	type outcome struct {
		c       *wsClient
		refused error // how it was refused; nil when accepted
		hung    error
	}
	outcomes := make([]outcome, clients)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			outcomes[i] = func() outcome {
				conn, err := net.DialTimeout(p.network, p.addr, clientDeadline)
				if err != nil {
					if isTimeout(err) {
						return outcome{hung: fmt.Errorf("connect: %w", err)}
					}
					return outcome{refused: fmt.Errorf("connect: %w", err)}
				}
				_ = conn.SetDeadline(time.Now().Add(clientDeadline))
				req := hybiReq{Protocol: modeBinary}
				c, err := handshakeHyBi(conn, req, nil)
				if err != nil {
					conn.Close()
					if isTimeout(err) {
						return outcome{hung: fmt.Errorf("handshake: %w", err)}
					}
					return outcome{refused: fmt.Errorf("handshake: %w", err)}
				}
				msg := []byte(fmt.Sprintf("client %d, first echo", i))
				if err := c.send(msg); err != nil {
					conn.Close()
					if isTimeout(err) {
						return outcome{hung: fmt.Errorf("send: %w", err)}
					}
					return outcome{refused: fmt.Errorf("send: %w", err)}
				}
				got, err := c.readN(len(msg))
				var ce *closeErr
				switch {
				case isTimeout(err):
					conn.Close()
					return outcome{hung: fmt.Errorf("first echo: %w", err)}
				case errors.As(err, &ce):
					// Upgraded, then closed (say, 1011 when the target
					// could not be dialed for want of a descriptor): a
					// clean refusal.
					conn.Close()
					return outcome{refused: err}
				case err != nil:
					conn.Close()
					return outcome{refused: fmt.Errorf("first echo: %w", err)}
				case string(got) != string(msg):
					conn.Close()
					return outcome{hung: fmt.Errorf("first echo returned %q, want %q", got, msg)}
				}
				_ = conn.SetDeadline(time.Time{})
				return outcome{c: c}
			}()
		}()
	}
	close(start)
	wg.Wait()
	var accepted []*wsClient
	defer func() {
		for _, c := range accepted {
			c.conn.Close()
		}
	}()
	refusals := map[string]int{}
	for i, o := range outcomes {
		switch {
		case o.hung != nil:
			t.Errorf("client %d hung or got wrong data: %v", i, o.hung)
		case o.refused != nil:
			refusals[classify(o.refused)]++
		default:
			accepted = append(accepted, o.c)
		}
	}
	t.Logf("round %d: %d clients accepted, %d refused: %v", round, len(accepted), clients-len(accepted), refusals)

	if !p.running() {
		t.Errorf("round %d: websockify exited under open-file exhaustion (%v)", round, p.state)
		return false
	}
	if len(accepted) == 0 {
		t.Errorf("round %d: no client was served at all", round)
		return false
	}
	if len(accepted) == clients {
		t.Errorf("round %d: all %d clients were served under ulimit -n %d: the test did not exhaust anything", round, clients, limit)
		return false
	}

	// Every accepted session still works.
	var ewg sync.WaitGroup
	for i, c := range accepted {
		ewg.Add(1)
		go func() {
			defer ewg.Done()
			_ = c.conn.SetDeadline(time.Now().Add(clientDeadline))
			msg := []byte(fmt.Sprintf("accepted session %d, second echo", i))
			if err := c.echo(msg); err != nil {
				t.Errorf("round %d: accepted session %d after the storm: %v", round, i, err)
			}
		}()
	}
	ewg.Wait()
	if t.Failed() {
		if _, exited := p.waitExit(2 * time.Second); exited {
			t.Errorf("round %d: websockify exited (%v)", round, p.state)
		}
		return false
	}
	if !p.running() {
		t.Errorf("round %d: websockify exited (%v)", round, p.state)
		return false
	}

	// Close everything; websockify closes every target connection.
	for _, c := range accepted {
		c.conn.Close()
	}
	accepted = nil
	if !echo.waitActive(0, 15*time.Second) {
		t.Errorf("round %d: %d target connections still open 15s after all clients closed", round, echo.active.Load())
		return false
	}
	return !t.Failed()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// classify names a refusal for the log.
func classify(err error) string {
	var ce *closeErr
	switch {
	case errors.As(err, &ce):
		return fmt.Sprintf("close-%d", ce.code)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	}
	s := err.Error()
	for _, k := range []string{"connection reset", "EOF", "broken pipe", "connection refused", "status"} {
		if strings.Contains(s, k) {
			return k
		}
	}
	return s
}

// openFileLimit reads the soft "Max open files" limit of pid.
func openFileLimit(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, err
	}
	var n int
	for _, line := range strings.Split(string(b), "\n") {
		if len(line) > 14 && line[:14] == "Max open files" {
			_, err := fmt.Sscanf(line[14:], "%d", &n)
			return n, err
		}
	}
	return 0, errors.New("no Max open files line")
}

// TestOpenFileExhaustionInetd: the same storms against an inherited
// listener (--inetd), whose clients are accepted by a goroutine of ours
// rather than by gnet: the surplus is refused, the accepted keep working.
func TestOpenFileExhaustionInetd(t *testing.T) {
	t.Parallel()
	const limit = 256
	echo := startEcho(t)
	f, addr := listenerFile(t)
	cmd := exec.Command("bash", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, limit), binPath, "--inetd", echo.addr)
	cmd.Stdin = f
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	p := &proxy{t: t, cmd: cmd, network: "tcp", addr: addr, port: port}
	if err := p.start(nil); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("websockify --inetd stderr:\n%s", truncate(p.stderr.String(), 8000))
		}
	})
	if !waitLog(p, "proxying from inetd", 5*time.Second) {
		t.Fatalf("websockify --inetd did not start: %s", p.stderr.String())
	}
	fdStorms(t, p, echo, 3, limit)
}

// fdStorms runs rounds of fdStorm, then checks that a new client is served
// once everything is closed.
func fdStorms(t *testing.T, p *proxy, echo *target, rounds, limit int) {
	t.Helper()
	for round := 1; round <= rounds; round++ {
		if !fdStorm(t, p, echo, round, limit) {
			return
		}
	}
	c, err := dialWSE(p, modeBinary, nil)
	if err != nil {
		t.Fatalf("new client after the storms: %v", err)
	}
	defer c.conn.Close()
	if err := c.echo([]byte("after the storm")); err != nil {
		t.Fatalf("new client after the storms: %v", err)
	}
}
