package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// socketDirEnv tells each worker of --workers the directory of the private
// unix sockets its metrics are served on (worker-SLOT.sock); the parent,
// which made it, serves --metrics-listen from them.
const socketDirEnv = "WEBSOCKIFY_METRICS_DIR"

// workerScrapeTimeout bounds how long the parent waits for one worker.
const workerScrapeTimeout = 5 * time.Second

func workerSocket(dir string, slot int) string {
	return filepath.Join(dir, "worker-"+strconv.Itoa(slot)+".sock")
}

// WorkerListen binds this worker's private metrics socket, named by the
// parent through the environment and the worker's slot. ok is false when the
// parent asked for none (this process is not such a worker).
func WorkerListen(slot int) (l net.Listener, ok bool, err error) {
	dir := os.Getenv(socketDirEnv)
	if dir == "" {
		return nil, false, nil
	}
	path := workerSocket(dir, slot)
	_ = os.Remove(path) // left by the worker this one replaces
	l, err = net.Listen("unix", path)
	return l, true, err
}

// Workers is the parent's view of its workers' metrics: a Gatherer that
// asks each worker for its own and labels them with worker="SLOT", beside
// the parent's process and Go metrics (worker="parent") and, per worker,
// websockify_worker_up and websockify_worker_scrape_failures_total. A
// worker that cannot be scraped (being replaced, say) leaves a partial
// result, not a failed scrape.
type Workers struct {
	dir      string
	reg      *prometheus.Registry
	workers  []*workerGatherer
	gatherer prometheus.Gatherers
}

// NewWorkers makes the private socket directory for n workers and tells
// the workers started after this call where it is (the environment).
// errorf is told when a worker stops answering, once per outage.
func NewWorkers(n int, errorf func(format string, args ...any)) (*Workers, error) {
	dir, err := os.MkdirTemp("", "websockify-metrics-")
	if err != nil {
		return nil, err
	}
	if err := os.Setenv(socketDirEnv, dir); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	w := &Workers{dir: dir, reg: prometheus.NewRegistry()}
	parent := prometheus.WrapRegistererWith(prometheus.Labels{"worker": "parent"}, w.reg)
	parent.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	up := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "websockify_worker_up",
		Help: "1 if the worker's metrics were gathered in this scrape, 0 if not (being replaced, not answering).",
	}, []string{"worker"})
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "websockify_worker_scrape_failures_total",
		Help: "Scrapes in which the worker's metrics could not be gathered.",
	}, []string{"worker"})
	w.reg.MustRegister(up, failures)
	for slot := range n {
		label := strconv.Itoa(slot)
		path := workerSocket(dir, slot)
		wg := &workerGatherer{
			label:    label,
			up:       up.WithLabelValues(label),
			failures: failures.WithLabelValues(label),
			errorf:   errorf,
			client: &http.Client{
				Timeout: workerScrapeTimeout,
				Transport: &http.Transport{
					DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
						var d net.Dialer
						return d.DialContext(ctx, "unix", path)
					},
					MaxIdleConns: 1,
				},
			},
		}
		w.workers = append(w.workers, wg)
		w.gatherer = append(w.gatherer, wg)
	}
	w.gatherer = append(w.gatherer, w.reg) // last: worker_up as this scrape found it
	return w, nil
}

// Gatherer is what the parent's listener serves.
func (w *Workers) Gatherer() prometheus.Gatherer { return w.gatherer }

// Close removes the private socket directory.
func (w *Workers) Close() { _ = os.RemoveAll(w.dir) }

// workerGatherer gathers one worker's metrics over its socket.
type workerGatherer struct {
	label    string
	client   *http.Client
	up       prometheus.Gauge
	failures prometheus.Counter
	errorf   func(format string, args ...any)

	mu   sync.Mutex
	down bool // the last scrape failed (logged once)
}

// protobufAccept asks promhttp for its lossless delimited protobuf format.
const protobufAccept = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"

func (g *workerGatherer) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := g.fetch()
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		g.up.Set(0)
		g.failures.Inc()
		if !g.down && g.errorf != nil {
			g.errorf("metrics: worker %s not scraped: %v", g.label, err)
		}
		g.down = true
		return nil, nil // a partial result; worker_up says what is missing
	}
	g.up.Set(1)
	g.down = false
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			m.Label = append(m.Label, &dto.LabelPair{Name: strPtr("worker"), Value: strPtr(g.label)})
			sort.Slice(m.Label, func(i, j int) bool { return m.Label[i].GetName() < m.Label[j].GetName() })
		}
	}
	return mfs, nil
}

func (g *workerGatherer) fetch() ([]*dto.MetricFamily, error) {
	req, err := http.NewRequest(http.MethodGet, "http://worker/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", protobufAccept)
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	var mfs []*dto.MetricFamily
	for {
		mf := &dto.MetricFamily{}
		if err := dec.Decode(mf); err != nil {
			if errors.Is(err, io.EOF) {
				return mfs, nil
			}
			return nil, err
		}
		mfs = append(mfs, mf)
	}
}

func strPtr(s string) *string { return &s }
