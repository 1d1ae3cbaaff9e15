// Package metrics owns websockify's Prometheus metrics (--metrics-listen):
// their names and help, the registry, the counters the event loops keep,
// and the HTTP listener that serves them, apart from the public port.
//
// Counting must cost the relay nothing it would notice. Each event loop
// gets its own Loop of atomic counters, written only by that loop's
// goroutine (uncontended, no locks, no allocation, no label lookups), and
// the Proxy's collector sums them when Prometheus scrapes. Label values are
// array indexes fixed at compile time. What can only be seen on a loop (its
// lag, its paused reads) is asked of each loop at scrape time, so a proxy
// nobody scrapes is never woken by its metrics. Without --metrics-listen
// there is no Proxy and every count is one nil check.
//
// With --workers, each worker serves its own registry on a private unix
// socket, and the parent serves them all from --metrics-listen with a
// worker label added (workers.go).
package metrics

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gowebsockify/websockify/codec"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Engine is what the event engine shows of itself at scrape time
// (eventloop implements it).
type Engine interface {
	// ProbeLoops runs a no-op on every event loop and reports what each
	// saw, giving up on a loop once ctx is done.
	ProbeLoops(ctx context.Context) []LoopProbe
	// FDBudget reports the open-file budget (fdbudget.go in eventloop).
	FDBudget() FDBudget
}

// LoopProbe is what one event loop reported to a scrape.
type LoopProbe struct {
	Loop     int           // the loop's number, from 0
	Lag      time.Duration // how long the no-op waited to run (or was waited for, unanswered)
	Paused   int           // sockets not read now because their peer cannot take more
	Answered bool          // the loop ran the no-op before the scrape gave up
}

// FDBudget is the open-file budget: descriptors the sessions hold or have
// reserved, the most they may, and the clients refused for want of one.
type FDBudget struct {
	InUse, Limit int64
	Refusals     uint64
}

// Proxy is the metrics of one proxy process.
type Proxy struct {
	reg *prometheus.Registry

	loopsMu sync.Mutex
	loops   []*Loop

	engine atomic.Pointer[Engine]

	tokenLookups  *prometheus.HistogramVec
	authChecks    *prometheus.HistogramVec
	limitRefusals *prometheus.CounterVec
}

// probeTimeout bounds how long a scrape waits for the event loops; a loop
// that does not answer in time is reported with this lag.
const probeTimeout = 2 * time.Second

// latencyBuckets spans a file lookup (microseconds) to a lookup that times
// out (5s).
var latencyBuckets = []float64{.00001, .00005, .0001, .0005, .001, .005, .01, .05, .1, .5, 1, 2.5, 5, 10}

// New makes the metrics of a proxy, with the Go runtime's and the process's
// own; version labels websockify_build_info.
func New(version string) *Proxy {
	p := &Proxy{reg: prometheus.NewRegistry()}
	p.tokenLookups = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "websockify_token_lookup_seconds",
		Help:    "Token lookups (--token-plugin) by plugin and outcome (found, not_found, timeout, error), and how long they took; _count counts them.",
		Buckets: latencyBuckets,
	}, []string{"plugin", "outcome"})
	p.authChecks = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "websockify_auth_check_seconds",
		Help:    "Auth plugin checks (--auth-plugin) by plugin and outcome (allowed, refused), and how long they took; _count counts them.",
		Buckets: latencyBuckets,
	}, []string{"plugin", "outcome"})
	p.limitRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "websockify_limit_refusals_total",
		Help: "Clients refused because a configured limit was reached, by limit.",
	}, []string{"limit"})
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "websockify_build_info",
		Help:        "Always 1; the version label is websockify's version.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	buildInfo.Set(1)
	p.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		proxyCollector{p},
		p.tokenLookups, p.authChecks, p.limitRefusals, buildInfo,
	)
	return p
}

// Gatherer is what the listener serves.
func (p *Proxy) Gatherer() prometheus.Gatherer { return p.reg }

// SetEngine tells the scrapes where to ask for the loops' lag and the
// open-file budget.
func (p *Proxy) SetEngine(e Engine) {
	if p != nil {
		p.engine.Store(&e)
	}
}

// NewLoop gives an event loop its counters; nil when p is nil (metrics
// off), which every Loop method accepts.
func (p *Proxy) NewLoop() *Loop {
	if p == nil {
		return nil
	}
	l := &Loop{}
	p.loopsMu.Lock()
	p.loops = append(p.loops, l)
	p.loopsMu.Unlock()
	return l
}

// LimitRefusal is the counter of clients refused by the named limit (for
// instance "sessions"). Resolve it once, at start, and Inc it per refusal.
// With metrics off (p nil) it is a counter nobody reads.
func (p *Proxy) LimitRefusal(limit string) prometheus.Counter {
	if p == nil {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "websockify_limit_refusals_total"})
	}
	return p.limitRefusals.WithLabelValues(limit)
}

// ---- one event loop's counters ----

// Loop is one event loop's counters. Only its loop writes them (atomically,
// so that scrapes can read them); every method accepts a nil Loop and then
// does nothing, which is how metrics cost nothing when off.
type Loop struct {
	accepted, finished atomic.Uint64
	upgraded           [numTransports]atomic.Uint64
	ended              [numTransports][codec.NumEnds]atomic.Uint64
	failed             [codec.NumEnds]atomic.Uint64 // sessions that ended before upgrading, by why
	toTarget, toClient atomic.Uint64
	pauses             atomic.Uint64
	_                  [64]byte // keeps the next loop's counters off this one's cache lines
}

// A session's transport, as an index: its protocol version times two, plus
// one over TLS.
const numTransports = 3 * 2

func transportOf(m *codec.Session) int {
	t := int(m.Version()) * 2
	if m.TLS() {
		t++
	}
	return min(t, numTransports-1)
}

// transportLabels are the transport and protocol labels of each index.
var transportLabels = [numTransports][2]string{
	{"ws", "hybi"}, {"wss", "hybi"},
	{"ws", "hixie-76"}, {"wss", "hixie-76"},
	{"ws", "hixie-75"}, {"wss", "hixie-75"},
}

// Accepted counts a client connection the loop took on.
func (l *Loop) Accepted() {
	if l != nil {
		l.accepted.Add(1)
	}
}

// Upgraded counts a session whose 101 went out.
func (l *Loop) Upgraded(m *codec.Session) {
	if l != nil {
		l.upgraded[transportOf(m)].Add(1)
	}
}

// Finished counts a connection that is over, and how it ended: after
// Upgraded, the session's end; before, its handshake's failure, if any.
func (l *Loop) Finished(m *codec.Session) {
	if l == nil {
		return
	}
	e := min(m.End(), codec.NumEnds-1)
	if m.Upgraded() {
		l.ended[transportOf(m)][e].Add(1)
	} else if e != codec.EndNone {
		l.failed[e].Add(1)
	}
	l.finished.Add(1)
}

// ToTarget counts payload bytes handed to a target's socket.
func (l *Loop) ToTarget(n int) {
	if l != nil {
		l.toTarget.Add(uint64(n))
	}
}

// FromTarget counts payload bytes a target sent, framed for its client.
func (l *Loop) FromTarget(n int) {
	if l != nil {
		l.toClient.Add(uint64(n))
	}
}

// ReadPaused counts a socket left unread because its peer cannot take a
// whole read (backpressure).
func (l *Loop) ReadPaused() {
	if l != nil {
		l.pauses.Add(1)
	}
}
