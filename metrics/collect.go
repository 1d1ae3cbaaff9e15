package metrics

import (
	"context"
	"strconv"

	"github.com/gowebsockify/websockify/codec"
	"github.com/prometheus/client_golang/prometheus"
)

// The metrics summed from the loops' counters and asked of the engine.
var (
	connectionsDesc = prometheus.NewDesc("websockify_connections_total",
		"Client connections accepted: WebSocket sessions, web requests and refused handshakes alike.", nil, nil)
	connectionsOpenDesc = prometheus.NewDesc("websockify_connections_open",
		"Client connections accepted and not yet closed.", nil, nil)
	sessionsDesc = prometheus.NewDesc("websockify_sessions_total",
		"WebSocket sessions upgraded (101 sent), by transport (ws, wss) and protocol (hybi, hixie-76, hixie-75).",
		[]string{"transport", "protocol"}, nil)
	sessionsOpenDesc = prometheus.NewDesc("websockify_sessions_open",
		"WebSocket sessions upgraded and not yet over, by transport and protocol.",
		[]string{"transport", "protocol"}, nil)
	sessionsEndedDesc = prometheus.NewDesc("websockify_sessions_ended_total",
		"WebSocket sessions over, by transport, protocol and what ended them: client_closed (a close frame), "+
			"client_gone (no close frame), target_closed, target_unreachable, protocol_error, shutdown.",
		[]string{"transport", "protocol", "end"}, nil)
	handshakeFailuresDesc = prometheus.NewDesc("websockify_handshake_failures_total",
		"Connections that ended before upgrading, by why: bad_request, not_upgrade, bad_upgrade, not_tls, "+
			"no_tls_cert, tls_failed, first_byte_timeout, request_head_timeout, token_missing, token_not_found, "+
			"lookup_failed, lookup_timeout, auth_refused, client_gone, shutdown. Web requests served are not failures.",
		[]string{"reason"}, nil)
	bytesDesc = prometheus.NewDesc("websockify_relayed_bytes_total",
		"Payload bytes relayed, by direction: client_to_target (unframed, as handed to the target's socket) and "+
			"target_to_client (as the target sent them, before framing).",
		[]string{"direction"}, nil)
	pausesDesc = prometheus.NewDesc("websockify_read_pauses_total",
		"Times a socket was left unread because its peer could not take a whole read (backpressure).", nil, nil)
	pausedDesc = prometheus.NewDesc("websockify_reads_paused",
		"Sockets not read at scrape time because their peer cannot take more (backpressure).", nil, nil)
	lagDesc = prometheus.NewDesc("websockify_event_loop_lag_seconds",
		"How long a no-op queued on the event loop at scrape time waited to run (measured only when scraped; "+
			"a loop is listed once it has had a client).",
		[]string{"loop"}, nil)
	fdInUseDesc = prometheus.NewDesc("websockify_fd_budget_in_use",
		"Descriptors the sessions hold or have reserved (client, target, a dial's or TLS handshake's spares).", nil, nil)
	fdLimitDesc = prometheus.NewDesc("websockify_fd_budget_limit",
		"The most descriptors the sessions may hold: RLIMIT_NOFILE less the process's own.", nil, nil)
	fdRefusalsDesc = prometheus.NewDesc("websockify_fd_budget_refusals_total",
		"Clients refused because the open-file budget was spent.", nil, nil)
)

// The ends a session is expected to have after its upgrade, and the reasons
// a handshake is expected to fail for: these are exported even at zero, so
// that rates work from the first scrape; any other is exported once seen.
var (
	sessionEnds = []codec.End{codec.EndClientClosed, codec.EndClientGone, codec.EndTargetClosed,
		codec.EndTargetUnreachable, codec.EndProtocolError, codec.EndMessageTooBig, codec.EndShutdown}
	handshakeFailures = []codec.End{codec.EndBadRequest, codec.EndNotUpgrade, codec.EndBadUpgrade,
		codec.EndNotTLS, codec.EndNoCert, codec.EndTLSFailed, codec.EndFirstByteTimeout,
		codec.EndRequestHeadTimeout, codec.EndTokenMissing, codec.EndTokenNotFound, codec.EndLookupFailed,
		codec.EndLookupTimeout, codec.EndAuthRefused, codec.EndProxyHeader, codec.EndLimited, codec.EndHeadTooLarge,
		codec.EndClientGone, codec.EndShutdown}
)

// proxyCollector reads the loops' counters and the engine at scrape time.
type proxyCollector struct{ p *Proxy }

func (c proxyCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{connectionsDesc, connectionsOpenDesc, sessionsDesc, sessionsOpenDesc,
		sessionsEndedDesc, handshakeFailuresDesc, bytesDesc, pausesDesc, pausedDesc, lagDesc,
		fdInUseDesc, fdLimitDesc, fdRefusalsDesc} {
		ch <- d
	}
}

// totals is every loop's counters summed.
type totals struct {
	accepted, finished uint64
	upgraded           [numTransports]uint64
	endedAll           [numTransports]uint64
	ended              [numTransports][codec.NumEnds]uint64
	failed             [codec.NumEnds]uint64
	toTarget, toClient uint64
	pauses             uint64
}

// sum reads the loops' counters. What ended is read before what started,
// so that a session finishing meanwhile can never make a gauge negative.
func (p *Proxy) sum() totals {
	var t totals
	p.loopsMu.Lock()
	loops := p.loops
	p.loopsMu.Unlock()
	for _, l := range loops {
		t.finished += l.finished.Load()
		for tr := range numTransports {
			for e := range codec.NumEnds {
				n := l.ended[tr][e].Load()
				t.ended[tr][e] += n
				t.endedAll[tr] += n
			}
		}
		for e := range codec.NumEnds {
			t.failed[e] += l.failed[e].Load()
		}
		t.toTarget += l.toTarget.Load()
		t.toClient += l.toClient.Load()
		t.pauses += l.pauses.Load()
	}
	for _, l := range loops {
		t.accepted += l.accepted.Load()
		for tr := range numTransports {
			t.upgraded[tr] += l.upgraded[tr].Load()
		}
	}
	return t
}

func (c proxyCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.p.sum()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(connectionsDesc, t.accepted)
	gauge(connectionsOpenDesc, float64(t.accepted-t.finished))
	for tr, lv := range transportLabels {
		counter(sessionsDesc, t.upgraded[tr], lv[0], lv[1])
		gauge(sessionsOpenDesc, float64(t.upgraded[tr]-t.endedAll[tr]), lv[0], lv[1])
		for e := range codec.NumEnds {
			if n := t.ended[tr][e]; n > 0 || expected(sessionEnds, e) {
				counter(sessionsEndedDesc, n, lv[0], lv[1], endLabel(e))
			}
		}
	}
	for e := range codec.NumEnds {
		if n := t.failed[e]; n > 0 || expected(handshakeFailures, e) {
			counter(handshakeFailuresDesc, n, e.String())
		}
	}
	counter(bytesDesc, t.toTarget, "client_to_target")
	counter(bytesDesc, t.toClient, "target_to_client")
	counter(pausesDesc, t.pauses)

	ep := c.p.engine.Load()
	if ep == nil {
		return
	}
	eng := *ep
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	paused := 0
	for _, pr := range eng.ProbeLoops(ctx) {
		gauge(lagDesc, pr.Lag.Seconds(), strconv.Itoa(pr.Loop))
		paused += pr.Paused
	}
	gauge(pausedDesc, float64(paused))
	fb := eng.FDBudget()
	gauge(fdInUseDesc, float64(fb.InUse))
	gauge(fdLimitDesc, float64(fb.Limit))
	counter(fdRefusalsDesc, fb.Refusals)
}

func expected(set []codec.End, e codec.End) bool {
	for _, x := range set {
		if x == e {
			return true
		}
	}
	return false
}

// endLabel names how an upgraded session ended; one that recorded no
// reason (it should not happen) is "other".
func endLabel(e codec.End) string {
	if e == codec.EndNone {
		return "other"
	}
	return e.String()
}
