package metrics

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gowebsockify/websockify/auth"
	"github.com/gowebsockify/websockify/codec"
	"github.com/gowebsockify/websockify/token"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestParseAddr(t *testing.T) {
	for _, c := range []struct{ in, network, addr string }{
		{"9100", "tcp", "127.0.0.1:9100"},
		{":9100", "tcp", ":9100"},
		{"0.0.0.0:9100", "tcp", "0.0.0.0:9100"},
		{"[::1]:9100", "tcp", "[::1]:9100"},
		{"localhost:9100", "tcp", "localhost:9100"},
		{"/run/ws.sock", "unix", "/run/ws.sock"},
		{"./m.sock", "unix", "./m.sock"},
		{"unix:m.sock", "unix", "m.sock"},
	} {
		n, a, err := ParseAddr(c.in)
		if err != nil || n != c.network || a != c.addr {
			t.Errorf("ParseAddr(%q) = %q %q %v; want %q %q", c.in, n, a, err, c.network, c.addr)
		}
	}
	for _, bad := range []string{"", "x", "0", "65536", "host:", "unix:"} {
		if _, _, err := ParseAddr(bad); err == nil {
			t.Errorf("ParseAddr(%q) accepted", bad)
		}
	}
}

func TestSameTCPAddress(t *testing.T) {
	for _, c := range []struct {
		a, b string
		same bool
	}{
		{"127.0.0.1:80", "127.0.0.1:80", true},
		{"127.0.0.1:80", ":80", true},
		{"0.0.0.0:80", "127.0.0.1:80", true},
		{"[::]:80", "127.0.0.1:80", true},
		{"127.0.0.1:80", "127.0.0.1:81", false},
		{"127.0.0.1:80", "127.0.0.2:80", false},
	} {
		if got := SameTCPAddress(c.a, c.b); got != c.same {
			t.Errorf("SameTCPAddress(%q, %q) = %v", c.a, c.b, got)
		}
	}
}

// peer is a codec.Peer that keeps nothing.
type peer struct{}

func (p *peer) ToTarget([]byte)           {}
func (p *peer) ToClient([]byte)           {}
func (p *peer) ToClientFrame(_, _ []byte) {}
func (p *peer) Log(bool, string)          {}
func (p *peer) ClientCertCN() string      { return "" }
func (p *peer) Scratch(n int) []byte      { return make([]byte, n) }

// values gathers g into name{labels} -> value (histograms by their count).
func values(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	v := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			var labels []string
			for _, l := range m.Label {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := mf.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				v[key] = m.Counter.GetValue()
			case dto.MetricType_GAUGE:
				v[key] = m.Gauge.GetValue()
			case dto.MetricType_HISTOGRAM:
				v[key] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return v
}

func expect(t *testing.T, got map[string]float64, want map[string]float64) {
	t.Helper()
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s = %v (present: %v), want %v", k, g, ok, w)
		}
	}
}

// TestLoopCounts drives real codec sessions through the counters of two
// loops and reads them back summed.
func TestLoopCounts(t *testing.T) {
	p := New("test")
	a, b := p.NewLoop(), p.NewLoop()
	cfg := &codec.SessionConfig{Target: "127.0.0.1:1"}
	out := &peer{}
	upgrade := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

	// Loop a: one session upgrades, relays, and is shut down.
	s := codec.NewSession(cfg, "c1")
	a.Accepted()
	if _, step := s.FromClient([]byte(upgrade), out); step != codec.Dial {
		t.Fatalf("step %v, want dial", step)
	}
	a.Upgraded(&s)
	s.Dialed()
	a.ToTarget(100)
	a.FromTarget(250)
	a.ReadPaused()
	open := values(t, p.Gatherer())
	expect(t, open, map[string]float64{
		"websockify_sessions_open{protocol=hybi,transport=ws}":  1,
		"websockify_sessions_total{protocol=hybi,transport=ws}": 1,
		"websockify_connections_open{}":                         1,
	})
	s.Shutdown(out)
	a.Finished(&s)

	// Loop b: a request that is not an upgrade, and a client that left.
	r := codec.NewSession(cfg, "c2")
	b.Accepted()
	r.FromClient([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), out)
	b.Finished(&r)
	g := codec.NewSession(cfg, "c3")
	b.Accepted()
	g.ClientGone(out)
	b.Finished(&g)
	var nilLoop *Loop // metrics off: every count is a no-op
	nilLoop.Accepted()
	nilLoop.Finished(&g)

	expect(t, values(t, p.Gatherer()), map[string]float64{
		"websockify_connections_total{}":                                              3,
		"websockify_connections_open{}":                                               0,
		"websockify_sessions_open{protocol=hybi,transport=ws}":                        0,
		"websockify_sessions_total{protocol=hybi,transport=ws}":                       1,
		"websockify_sessions_ended_total{end=shutdown,protocol=hybi,transport=ws}":    1,
		"websockify_sessions_ended_total{end=client_gone,protocol=hybi,transport=ws}": 0,
		"websockify_handshake_failures_total{reason=not_upgrade}":                     1,
		"websockify_handshake_failures_total{reason=client_gone}":                     1,
		"websockify_relayed_bytes_total{direction=client_to_target}":                  100,
		"websockify_relayed_bytes_total{direction=target_to_client}":                  250,
		"websockify_read_pauses_total{}":                                              1,
		"websockify_build_info{version=test}":                                         1,
	})
}

// TestPluginCounts wraps real plugins and counts their outcomes.
func TestPluginCounts(t *testing.T) {
	p := New("test")
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte("a: 127.0.0.1:5900\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tp, err := token.New("TokenFile", file, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	counted := p.CountLookups(tp)
	if counted.Name() != "TokenFile" {
		t.Errorf("the wrapper's name %q", counted.Name())
	}
	if _, err := counted.Lookup(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := counted.Lookup(context.Background(), "b"); err == nil {
		t.Fatal("token b found")
	}
	ap, err := auth.New("ExpectOrigin", "http://good.example")
	if err != nil {
		t.Fatal(err)
	}
	ca := p.CountAuth(ap)
	req, _, err := codec.ParseRequest([]byte("GET / HTTP/1.1\r\nOrigin: http://evil.example\r\n\r\n"), 4096)
	if err != nil {
		t.Fatal(err)
	}
	if refusal, _ := ca.Authenticate(req, ""); refusal == nil {
		t.Fatal("a bad origin let through")
	}
	expect(t, values(t, p.Gatherer()), map[string]float64{
		"websockify_token_lookup_seconds{outcome=found,plugin=TokenFile}":     1,
		"websockify_token_lookup_seconds{outcome=not_found,plugin=TokenFile}": 1,
		"websockify_token_lookup_seconds{outcome=timeout,plugin=TokenFile}":   0,
		"websockify_auth_check_seconds{outcome=refused,plugin=ExpectOrigin}":  1,
		"websockify_auth_check_seconds{outcome=allowed,plugin=ExpectOrigin}":  0,
	})
	var off *Proxy
	if off.CountLookups(tp) != tp || off.CountAuth(ap) != ap {
		t.Error("with metrics off the plugins are wrapped")
	}
	off.LimitRefusal("sessions").Inc() // a counter nobody reads, not a panic
	p.LimitRefusal("sessions").Inc()
	expect(t, values(t, p.Gatherer()), map[string]float64{"websockify_limit_refusals_total{limit=sessions}": 1})
}

// TestWorkersGather serves one worker's metrics on its private socket and
// leaves the other absent: the parent's scrape has the first's, labelled,
// and says the second is down.
func TestWorkersGather(t *testing.T) {
	t.Setenv(socketDirEnv, "")
	var logged []string
	ws, err := NewWorkers(2, func(format string, args ...any) { logged = append(logged, format) })
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	w0 := New("test")
	w0.NewLoop().Accepted()
	l, ok, err := WorkerListen(0)
	if !ok || err != nil {
		t.Fatalf("WorkerListen: %v %v", ok, err)
	}
	srv := Serve(l, w0.Gatherer(), t.Logf)
	defer srv.Close()

	for range 2 {
		v := values(t, ws.Gatherer())
		expect(t, v, map[string]float64{
			"websockify_connections_total{worker=0}":                        1,
			"websockify_worker_up{worker=0}":                                1,
			"websockify_worker_up{worker=1}":                                0,
			"websockify_sessions_open{protocol=hybi,transport=ws,worker=0}": 0,
		})
		if _, ok := v["process_open_fds{worker=parent}"]; !ok {
			t.Error("no process metrics of the parent")
		}
	}
	expect(t, values(t, ws.Gatherer()), map[string]float64{"websockify_worker_scrape_failures_total{worker=1}": 3})
	if len(logged) != 1 {
		t.Errorf("logged %d times for one worker's outage, want once", len(logged))
	}
	if _, err := net.Dial("unix", workerSocket(ws.dir, 0)); err != nil {
		t.Errorf("worker socket: %v", err)
	}
}
