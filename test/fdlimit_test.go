package test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// Item o: open-file exhaustion. Under `ulimit -n 256`, 300 clients arrive at
// once (handshake, then an echo): websockify must not exit, must refuse the
// surplus cleanly (closed or reset, never left hanging), keep every session
// it accepted working, and serve a new client once everything is closed.
func TestOpenFileExhaustion(t *testing.T) {
	t.Parallel()
	const (
		limit   = 256
		clients = 300
		// A client that is neither served nor refused within this long is
		// hanging.
		clientDeadline = 30 * time.Second
	)
	echo := startEcho(t)
	p := launchProxy(t, proxyConfig{Args: []string{echo.addr}, Ulimit: limit})
	if n, err := openFileLimit(p.pid()); err != nil || n != limit {
		t.Fatalf("websockify's open-file limit is %d (%v), want %d", n, err, limit)
	}

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
	t.Logf("%d clients accepted, %d refused: %v", len(accepted), clients-len(accepted), refusals)

	if !p.running() {
		t.Fatalf("websockify exited under open-file exhaustion (%v)", p.state)
	}
	if len(accepted) == 0 {
		t.Fatalf("no client was served at all")
	}
	if len(accepted) == clients {
		t.Fatalf("all %d clients were served under ulimit -n %d: the test did not exhaust anything", clients, limit)
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
				t.Errorf("accepted session %d after the storm: %v", i, err)
			}
		}()
	}
	ewg.Wait()
	if !p.running() {
		t.Fatalf("websockify exited (%v)", p.state)
	}

	// Close everything; once websockify has closed every target connection,
	// a new client is served.
	for _, c := range accepted {
		c.conn.Close()
	}
	accepted = nil
	if !echo.waitActive(0, 15*time.Second) {
		t.Fatalf("%d target connections still open 15s after all clients closed", echo.active.Load())
	}
	c, err := dialWSE(p, modeBinary, nil)
	if err != nil {
		t.Fatalf("new client after the storm: %v", err)
	}
	defer c.conn.Close()
	if err := c.echo([]byte("after the storm")); err != nil {
		t.Fatalf("new client after the storm: %v", err)
	}
	if !p.running() {
		t.Fatalf("websockify exited (%v)", p.state)
	}
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
