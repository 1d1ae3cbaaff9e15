package test

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// Item n: backpressure. The figures: 1 GiB pushed as fast as
// possible against a reader taking about 10 MB/s; every byte arrives in
// order and websockify's RSS stays under 64 MiB throughout. Each direction
// takes about 107 s; they run concurrently with each other and with the
// rest of the suite.
const (
	bpTotal     = 1 << 30
	bpRate      = 10e6     // bytes per second, the slow reader
	bpRSSLimit  = 64 << 20 // bytes
	bpFrameSize = 64 << 10 // client frames in the upload direction
	bpRSSPeriod = 100 * time.Millisecond
)

// rssMonitor polls a process's VmRSS until stopped and keeps the maximum.
type rssMonitor struct {
	max     atomic.Int64
	samples atomic.Int64
	errs    atomic.Int64
	once    sync.Once
	stop    chan struct{}
	done    chan struct{}
}

func watchRSS(pid int) *rssMonitor {
	m := &rssMonitor{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		tick := time.NewTicker(bpRSSPeriod)
		defer tick.Stop()
		for {
			if rss, err := vmRSS(pid); err == nil {
				m.samples.Add(1)
				if rss > m.max.Load() {
					m.max.Store(rss)
				}
			} else {
				m.errs.Add(1)
			}
			select {
			case <-m.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

// finish stops the polling; it may be called more than once.
func (m *rssMonitor) finish() { m.once.Do(func() { close(m.stop) }); <-m.done }

// check fails t when the RSS went over the limit or was never read.
func (m *rssMonitor) check(t testing.TB, p *proxy) {
	t.Helper()
	if !p.running() {
		t.Errorf("websockify exited during the transfer (%v)", p.state)
	}
	if m.samples.Load() == 0 {
		t.Fatalf("could not read VmRSS of pid %d", p.pid())
	}
	t.Logf("websockify VmRSS: max %.1f MiB over %d samples", float64(m.max.Load())/(1<<20), m.samples.Load())
	if max := m.max.Load(); max >= bpRSSLimit {
		t.Errorf("websockify VmRSS reached %.1f MiB, want < %d MiB", float64(max)/(1<<20), bpRSSLimit>>20)
	}
}

func TestBackpressure(t *testing.T) {
	t.Parallel()

	// Target to client: the target writes 1 GiB as fast as it can, the
	// client reads at 10 MB/s.
	t.Run("target-to-client", func(t *testing.T) {
		t.Parallel()
		var wrote atomic.Int64
		src := startTarget(t, "tcp", "127.0.0.1:0", func(c *tconn) {
			buf := make([]byte, 256<<10)
			for off := int64(0); off < bpTotal; {
				n := min(int64(len(buf)), bpTotal-off)
				fillPattern(buf[:n], off)
				_ = c.SetWriteDeadline(time.Now().Add(60 * time.Second))
				if _, err := c.Write(buf[:n]); err != nil {
					return
				}
				off += n
				wrote.Store(off)
			}
		})
		p := startProxy(t, src.addr)
		mon := watchRSS(p.pid())
		defer mon.finish()

		c := dialWS(t, p, modeBinary)
		c.throttle(bpRate)
		var got int64
		start := time.Now()
		for got < bpTotal {
			f, err := c.nextFrame()
			if err != nil {
				t.Fatalf("after %d bytes (target wrote %d): %v", got, wrote.Load(), err)
			}
			switch f.op {
			case ws.OpBinary:
			case ws.OpClose:
				code, reason := f.closeCode()
				t.Fatalf("close %d %q after %d of %d bytes", code, reason, got, bpTotal)
			default:
				t.Fatalf("unexpected frame op %v", f.op)
			}
			if !f.fin {
				t.Fatalf("a fragmented frame (spec: target data is never fragmented)")
			}
			if err := checkPattern(f.payload, got); err != nil {
				t.Fatal(err)
			}
			got += int64(len(f.payload))
		}
		elapsed := time.Since(start)
		code, reason, extra, err := c.expectClose()
		if err != nil || len(extra) != 0 || code != 1000 || reason != "Target closed" {
			t.Errorf("after all data: close %d %q, %d extra bytes, %v; want 1000 \"Target closed\"", code, reason, len(extra), err)
		}
		mon.finish()
		t.Logf("%d bytes in %v (%.1f MB/s)", got, elapsed.Round(time.Second), float64(got)/elapsed.Seconds()/1e6)
		mon.check(t, p)
	})

	// Client to target: the client sends 1 GiB in 64 KiB frames as fast as
	// it can, the target reads at 10 MB/s.
	t.Run("client-to-target", func(t *testing.T) {
		t.Parallel()
		type result struct {
			n   int64
			err error
		}
		res := make(chan result, 1)
		sink := startTarget(t, "tcp", "127.0.0.1:0", func(c *tconn) {
			r := &throttledReader{r: c, rate: bpRate}
			buf := make([]byte, 64<<10)
			var n int64
			for {
				_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
				k, err := r.Read(buf)
				if k > 0 {
					if perr := checkPattern(buf[:k], n); perr != nil {
						res <- result{n, perr}
						return
					}
					n += int64(k)
				}
				if errors.Is(err, io.EOF) {
					res <- result{n, nil}
					return
				}
				if err != nil {
					res <- result{n, err}
					return
				}
			}
		})
		p := startProxy(t, sink.addr)
		mon := watchRSS(p.pid())
		c := dialWS(t, p, modeBinary)

		var sendErr error
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := make([]byte, bpFrameSize)
			for off := int64(0); off < bpTotal; off += bpFrameSize {
				fillPattern(payload, off)
				_ = c.conn.SetWriteDeadline(time.Now().Add(60 * time.Second))
				if _, err := c.conn.Write(masked(ws.OpBinary, payload)); err != nil {
					sendErr = fmt.Errorf("write at %d: %w", off, err)
					return
				}
			}
			_ = c.conn.SetWriteDeadline(time.Now().Add(60 * time.Second))
			if _, err := c.conn.Write(masked(ws.OpClose, closePayload(1000, "done"))); err != nil {
				sendErr = fmt.Errorf("write close: %w", err)
			}
		}()

		var r result
		select {
		case r = <-res:
		case <-time.After(5 * time.Minute):
			t.Fatalf("the target did not finish within 5 minutes")
		}
		wg.Wait()
		mon.finish()
		if sendErr != nil {
			t.Errorf("client: %v", sendErr)
		}
		if r.err != nil {
			t.Errorf("target after %d bytes: %v", r.n, r.err)
		} else if r.n != bpTotal {
			t.Errorf("target got %d bytes, want %d", r.n, bpTotal)
		}
		if code, _, _, err := c.expectClose(); err != nil || code != 1000 {
			t.Errorf("close reply %d, %v; want 1000", code, err)
		}
		mon.check(t, p)
	})
}
