package test

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// target is an in-process server standing in for a VNC server.
type target struct {
	ln      net.Listener
	addr    string         // what to give websockify as target
	conns   chan *tconn    // every accepted connection (dropped when full)
	active  atomic.Int64   // connections whose handler has not returned
	total   atomic.Int64   // connections accepted so far
	wg      sync.WaitGroup // handlers
	mu      sync.Mutex
	all     []net.Conn
	handler func(*tconn)
}

// tconn is one accepted target connection; done is closed when its handler
// has returned (for the echo handler: when websockify closed it).
type tconn struct {
	net.Conn
	done chan struct{}
}

// startTarget listens on network/addr ("tcp", "127.0.0.1:0" usually) and
// runs handler for every connection, closing it when handler returns.
func startTarget(t testing.TB, network, addr string, handler func(*tconn)) *target {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatalf("target listen %s %s: %v", network, addr, err)
	}
	tg := &target{ln: ln, addr: ln.Addr().String(), conns: make(chan *tconn, 4096), handler: handler}
	go tg.serve()
	t.Cleanup(tg.close)
	return tg
}

func (tg *target) serve() {
	for {
		c, err := tg.ln.Accept()
		if err != nil {
			return
		}
		tc := &tconn{Conn: c, done: make(chan struct{})}
		tg.mu.Lock()
		tg.all = append(tg.all, c)
		tg.mu.Unlock()
		tg.total.Add(1)
		tg.active.Add(1)
		tg.wg.Add(1)
		select {
		case tg.conns <- tc:
		default:
		}
		go func() {
			defer tg.wg.Done()
			defer tg.active.Add(-1)
			defer close(tc.done)
			defer c.Close()
			tg.handler(tc)
		}()
	}
}

func (tg *target) close() {
	tg.ln.Close()
	tg.mu.Lock()
	for _, c := range tg.all {
		c.Close()
	}
	tg.mu.Unlock()
	tg.wg.Wait()
}

// next returns the next accepted connection, waiting up to d.
func (tg *target) next(t testing.TB, d time.Duration) *tconn {
	t.Helper()
	select {
	case c := <-tg.conns:
		return c
	case <-time.After(d):
		t.Fatalf("no connection reached the target within %v", d)
		return nil
	}
}

// waitActive waits up to d until exactly n handlers are running.
func (tg *target) waitActive(n int64, d time.Duration) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if tg.active.Load() == n {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return tg.active.Load() == n
}

// echoHandler sends back everything until websockify closes the connection.
func echoHandler(c *tconn) { _, _ = io.Copy(c, c) }

// startEcho starts an echo target on 127.0.0.1.
func startEcho(t testing.TB) *target { return startTarget(t, "tcp", "127.0.0.1:0", echoHandler) }
