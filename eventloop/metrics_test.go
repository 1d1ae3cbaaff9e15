package eventloop

import (
	"bufio"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gowebsockify/websockify/metrics"
)

// relayAllocs runs a proxy in this process (with m as its metrics, nil for
// none), relays n round trips of a 1000-byte binary frame through it to an
// echo target after a warm-up, and returns the heap allocations the whole
// process made per round trip. during, if set, runs before the session
// ends.
func relayAllocs(t *testing.T, m *metrics.Proxy, n int, during func()) float64 {
	t.Helper()
	roundTrip, done := relayThrough(t, m)
	defer done()
	for range 500 {
		roundTrip()
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		roundTrip()
	}
	runtime.ReadMemStats(&after)
	if during != nil {
		during()
	}
	return float64(after.Mallocs-before.Mallocs) / float64(n)
}

// relayThrough starts a proxy in this process (with m as its metrics, nil
// for none) in front of an echo target, upgrades one client, and returns a
// round trip of a 1000-byte binary frame through it, and what stops it all.
func relayThrough(t testing.TB, m *metrics.Proxy) (roundTrip func(), done func()) {
	t.Helper()
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := target.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		for {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			if _, err := c.Write(buf[:k]); err != nil {
				return
			}
		}
	}()

	probe, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := probe.Addr().String()
	probe.Close()
	ready := make(chan struct{})
	stop := make(chan struct{})
	served := make(chan error, 1)
	go func() {
		served <- Serve(Config{
			ListenAddr: addr, TargetNetwork: "tcp", TargetAddr: target.Addr().String(),
			Log: NewLogger(io.Discard, false), Loops: 1, Metrics: m,
			Ready: func() { close(ready) },
		}, stop)
	}()
	select {
	case <-ready:
	case err := <-served:
		t.Fatalf("Serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy did not start")
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	done = func() {
		c.Close()
		close(stop)
		<-served
		target.Close()
	}
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the 101: %v", err)
		}
		if strings.HasPrefix(line, "HTTP/") && !strings.Contains(line, " 101 ") {
			t.Fatalf("handshake: %q", line)
		}
		if line == "\r\n" {
			break
		}
	}
	const size = 1000
	frame := append([]byte{0x82, 0x80 | 126, size >> 8, size & 0xff, 0, 0, 0, 0}, make([]byte, size)...) // zero mask
	reply := make([]byte, 4+size)
	roundTrip = func() {
		if _, err := c.Write(frame); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(br, reply); err != nil {
			t.Fatal(err)
		}
	}
	return roundTrip, done
}

// TestRelayAllocatesNothingWithMetrics measures the relay through real
// sockets, the whole process's allocations included: counting sessions and
// bytes for --metrics-listen must leave it allocation-free, as it is
// without. (The codec's own part is checked alone in codec/session_test.go.)
func TestRelayAllocatesNothingWithMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a proxy")
	}
	const n = 3000
	off := relayAllocs(t, nil, n, nil)
	on := relayAllocs(t, metrics.New("test"), n, nil)
	t.Logf("allocations per 1000-byte round trip: %.4f without metrics, %.4f with", off, on)
	// A few stray allocations of the runtime's or the test's own may land in
	// the window; one per round trip would be n of them.
	if on > 0.02 || off > 0.02 {
		t.Fatalf("the relay allocates: %.4f per round trip with metrics, %.4f without", on, off)
	}
}

// TestScrapeAsksTheLoops: a scrape gets each loop's lag and the session's
// figures from a running proxy, and gives up on a stopped one in time.
func TestScrapeAsksTheLoops(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a proxy")
	}
	m := metrics.New("test")
	values := func() map[string]float64 {
		mfs, err := m.Gatherer().Gather()
		if err != nil {
			t.Fatal(err)
		}
		v := map[string]float64{}
		for _, mf := range mfs {
			for _, mt := range mf.Metric {
				switch {
				case mt.Gauge != nil:
					v[mf.GetName()] += mt.Gauge.GetValue()
				case mt.Counter != nil:
					v[mf.GetName()] += mt.Counter.GetValue()
				}
			}
		}
		return v
	}
	relayAllocs(t, m, 10, func() {
		v := values()
		if v["websockify_sessions_open"] != 1 || v["websockify_connections_open"] != 1 {
			t.Errorf("sessions open %v, connections open %v; want 1 and 1", v["websockify_sessions_open"], v["websockify_connections_open"])
		}
		if got, want := v["websockify_relayed_bytes_total"], float64(2*510*1000); got != want {
			t.Errorf("bytes relayed %v, want %v", got, want)
		}
		if lag, ok := v["websockify_event_loop_lag_seconds"]; !ok || lag <= 0 || lag > 1 {
			t.Errorf("event loop lag %v (reported: %v)", lag, ok)
		}
	})
	start := time.Now()
	v := values() // the engine has stopped
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("a scrape of a stopped engine took %v", took)
	}
	if v["websockify_connections_open"] != 0 || v["websockify_sessions_total"] != 1 {
		t.Errorf("after the stop: connections open %v, sessions %v; want 0 and 1", v["websockify_connections_open"], v["websockify_sessions_total"])
	}
}

// BenchmarkRelayRoundTrip times a 1000-byte round trip through the proxy,
// without metrics and with them (not scraped): what counting costs the relay.
func BenchmarkRelayRoundTrip(b *testing.B) {
	for _, c := range []struct {
		name string
		m    func() *metrics.Proxy
	}{{"metrics-off", func() *metrics.Proxy { return nil }}, {"metrics-on", func() *metrics.Proxy { return metrics.New("bench") }}} {
		b.Run(c.name, func(b *testing.B) {
			roundTrip, done := relayThrough(b, c.m())
			defer done()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				roundTrip()
			}
		})
	}
}
