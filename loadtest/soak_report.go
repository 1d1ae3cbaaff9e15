package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gowebsockify/websockify/wsclient"
)

// The soak's tallies and what it reports: the counters the workers add to,
// the progress line and the JSON result with its table.

// soakStats are the counters every worker adds to.
type soakStats struct {
	sent, verified, corrupted atomic.Int64
	opened, open, churned     atomic.Int64
	roundTrips, bulkDone      atomic.Int64
	slowDone, fragmented      atomic.Int64
	affected                  atomic.Int64
	mu                        sync.Mutex
	faults                    map[string]int64
	errs                      errorTally
	firstCorruption           string
	drops                     map[string]*dropStat
	streams                   map[string]*streamStat
	ends                      map[string]int64 // halfclose: how each kind of session ended
}

func newSoakStats() *soakStats {
	return &soakStats{faults: map[string]int64{}, drops: map[string]*dropStat{}, streams: map[string]*streamStat{}, ends: map[string]int64{}}
}

// streamStat is what one kind of checked stream verified, in bytes.
type streamStat struct {
	Verified  int64 `json:"verified"`
	Corrupted int64 `json:"corrupted"`
}

// counted adds n verified bytes, bad of them wrong, to the stream kind's
// tally; what says where the first wrong byte was.
func (s *soakStats) counted(kind string, n, bad int64, what func() string) {
	s.verified.Add(n)
	s.corrupted.Add(bad)
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.streams[kind]
	if t == nil {
		t = &streamStat{}
		s.streams[kind] = t
	}
	t.Verified += n
	t.Corrupted += bad
	if bad > 0 && s.firstCorruption == "" {
		s.firstCorruption = what()
	}
}

// ended counts how a session of a kind ended (the halfclose outcomes).
func (s *soakStats) endedAs(what string) {
	s.mu.Lock()
	s.ends[what]++
	s.mu.Unlock()
}

// dropStat is how one kind of half-open client fared: closed by the proxy
// (and the slowest time it took), or still waiting when the run ended.
type dropStat struct {
	Closed     int     `json:"closed"`
	MaxS       float64 `json:"max_s"`
	Unresolved int     `json:"unresolved"`
}

func (s *soakStats) dropped(kind string, after time.Duration, closed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.drops[kind]
	if d == nil {
		d = &dropStat{}
		s.drops[kind] = d
	}
	if closed {
		d.Closed++
		d.MaxS = max(d.MaxS, after.Seconds())
	} else {
		d.Unresolved++
	}
}

func (s *soakStats) fault(kind string) {
	s.mu.Lock()
	s.faults[kind]++
	s.mu.Unlock()
}

func (s *soakStats) fail(kind string, err error) {
	s.mu.Lock()
	if c := causeOf(err); c != "" {
		kind += " " + c
	}
	s.errs.add(&phaseError{kind, err})
	s.mu.Unlock()
}

// causeOf names the class of a session's end, for the error table; empty for
// time-outs, which errorTally marks itself.
func causeOf(err error) string {
	var cl *wsclient.CloseError
	var ne net.Error
	var pe *phaseError
	switch {
	case errors.As(err, &pe) && pe.phase == "handshake":
		return "handshake"
	case errors.As(err, &cl):
		return fmt.Sprintf("close-%d", cl.Code)
	case errors.As(err, &ne) && ne.Timeout():
		return ""
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	}
	return "other"
}

// check counts got against want; a difference is corruption, wherever it
// happened.
func (s *soakStats) check(what string, got, want []byte) {
	bad := diffCount(got, want)
	s.counted(what, int64(len(got)), bad, func() string {
		i := 0
		for got[i] == want[i] {
			i++
		}
		return fmt.Sprintf("%s: byte %d of %d is %#02x, want %#02x", what, i, len(got), got[i], want[i])
	})
}

func (r *soakRun) progressLine(el time.Duration, mem *memPeak) string {
	var now, peak int64
	if mem != nil {
		now, peak = mem.rssNowAndPeak()
	}
	r.st.mu.Lock()
	var nf int64
	for _, v := range r.st.faults {
		nf += v
	}
	nerr := r.st.errs.total()
	r.st.mu.Unlock()
	rssText := "?"
	if peak > 0 {
		rssText = fmt.Sprintf("%.1f MiB (peak %.1f)", float64(now)/(1<<20), float64(peak)/(1<<20))
	}
	return fmt.Sprintf("%s %5.0fs  open %4d  opened %7d  verified %9.1f MB  corrupt %d  faults %5d  errors %d  rss %s",
		r.phase, el.Seconds(), r.st.open.Load(), r.st.opened.Load(), float64(r.st.verified.Load())/1e6,
		r.st.corrupted.Load(), nf, nerr, rssText)
}

// soakResult is the soak's JSON object.
type soakResult struct {
	Mode                  string                 `json:"mode"`
	Label                 string                 `json:"label"`
	Proxy                 string                 `json:"proxy"`
	Commit                string                 `json:"commit,omitempty"`
	Machine               string                 `json:"machine,omitempty"`
	Time                  string                 `json:"time"` // when it started (UTC)
	End                   string                 `json:"end"`
	Seed                  uint64                 `json:"seed"`
	DurationS             float64                `json:"duration"`
	BytesSent             int64                  `json:"bytes_sent"`
	BytesVerified         int64                  `json:"bytes_verified"`
	CorruptedBytes        int64                  `json:"corrupted_bytes"`
	Streams               map[string]*streamStat `json:"streams"` // by kind of checked stream ("/wss": over wss)
	HalfCloseEnds         map[string]int64       `json:"halfclose_ends"`
	FirstCorruption       string                 `json:"first_corruption,omitempty"`
	SessionsOpened        int64                  `json:"sessions_opened"`
	EchoRoundTrips        int64                  `json:"echo_round_trips"`
	ChurnSessions         int64                  `json:"churn_sessions"`
	BulkTransfers         int64                  `json:"bulk_transfers"`
	SlowDownloads         int64                  `json:"slow_downloads"`
	FragmentedMessages    int64                  `json:"fragmented_messages"`
	Faults                map[string]int64       `json:"faults"`
	FaultAffected         int64                  `json:"fault_affected_sessions"`
	HalfOpen              map[string]*dropStat   `json:"halfopen"`
	UnexpectedErrors      int                    `json:"unexpected_errors"`
	Errors                errorTally             `json:"errors"`
	ProxyBefore           *proxyStatus           `json:"proxy_before"`
	ProxyAfter            *proxyStatus           `json:"proxy_after"`
	ProxyRSSPeak          int64                  `json:"proxy_rss_peak"`
	ProxyRSSAfter         int64                  `json:"proxy_rss_after"` // after the drain: a steady climb shows here
	ProxyPrivateDirtyPeak int64                  `json:"proxy_private_dirty_peak"`
	RSS                   *rssVerdict            `json:"rss"`
	RSSSeries             []rssSample            `json:"rss_series"` // every second from the start of the traffic to the final reading
	Failures              []string               `json:"failures"`
	Pass                  bool                   `json:"pass"`
}

func (r *soakRun) fill(res *soakResult, proxyErr error) {
	st := r.st
	st.mu.Lock()
	defer st.mu.Unlock()
	res.BytesSent, res.BytesVerified, res.CorruptedBytes = st.sent.Load(), st.verified.Load(), st.corrupted.Load()
	res.FirstCorruption = st.firstCorruption
	res.Streams, res.HalfCloseEnds = st.streams, st.ends
	res.SessionsOpened, res.EchoRoundTrips = st.opened.Load(), st.roundTrips.Load()
	res.ChurnSessions, res.BulkTransfers = st.churned.Load(), st.bulkDone.Load()
	res.SlowDownloads, res.FragmentedMessages = st.slowDone.Load(), st.fragmented.Load()
	res.Faults = map[string]int64{}
	for _, k := range append(slices.Clone(faultKinds), faultRestart) {
		res.Faults[k] = st.faults[k]
	}
	res.FaultAffected = st.affected.Load()
	res.HalfOpen = st.drops
	res.Errors = st.errs
	if res.Errors.Count == nil {
		res.Errors = errorTally{Count: map[string]int{}, Example: map[string]string{}}
	}
	res.UnexpectedErrors = st.errs.total()
	if res.Failures == nil {
		res.Failures = []string{}
	}
	if res.CorruptedBytes > 0 {
		res.Failures = append(res.Failures, fmt.Sprintf("%d corrupted bytes (%s)", res.CorruptedBytes, res.FirstCorruption))
	}
	if proxyErr != nil {
		res.Failures = append(res.Failures, proxyErr.Error())
	}
	if r.restartBroken.Load() {
		why := ""
		for k, v := range st.errs.Example {
			if strings.HasPrefix(k, faultRestart) {
				why = v
			}
		}
		res.Failures = append(res.Failures, "the target did not come back after a restart: "+why)
	}
	if res.ProxyAfter != nil {
		res.Failures = append(res.Failures, r.leaks(res.ProxyBefore, res.ProxyAfter)...)
	}
	if res.RSS != nil && res.RSS.Climbing {
		res.Failures = append(res.Failures, "RSS climbs: "+res.RSS.Verdict)
	}
	if r.cfg.maxErrors >= 0 && res.UnexpectedErrors > r.cfg.maxErrors {
		res.Failures = append(res.Failures, fmt.Sprintf("%d unexpected errors (limit %d)", res.UnexpectedErrors, r.cfg.maxErrors))
	}
	res.Pass = len(res.Failures) == 0
}

// table is the human-readable summary.
func (res *soakResult) table() string {
	var b bytes.Buffer
	row := func(k, format string, a ...any) { fmt.Fprintf(&b, "  %-26s "+format+"\n", append([]any{k}, a...)...) }
	fmt.Fprintf(&b, "soak of %s (%s), %.0f s, seed %d\n", res.Label, res.Proxy, res.DurationS, res.Seed)
	row("commit", "%s", orDash(res.Commit))
	row("machine", "%s", res.Machine)
	row("started, ended (UTC)", "%s, %s", res.Time, res.End)
	row("bytes sent", "%d", res.BytesSent)
	row("bytes verified", "%d", res.BytesVerified)
	row("corrupted bytes", "%d", res.CorruptedBytes)
	kinds := make([]string, 0, len(res.Streams))
	for k := range res.Streams {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		row("  "+k, "%d bytes verified, %d corrupted", res.Streams[k].Verified, res.Streams[k].Corrupted)
	}
	ends := make([]string, 0, len(res.HalfCloseEnds))
	for k := range res.HalfCloseEnds {
		ends = append(ends, k)
	}
	slices.Sort(ends)
	for _, k := range ends {
		row("halfclose "+k, "%d", res.HalfCloseEnds[k])
	}
	row("sessions opened", "%d", res.SessionsOpened)
	row("echo round trips", "%d", res.EchoRoundTrips)
	row("churn sessions", "%d", res.ChurnSessions)
	row("bulk transfers", "%d", res.BulkTransfers)
	row("slow downloads", "%d", res.SlowDownloads)
	row("fragmented messages", "%d", res.FragmentedMessages)
	for _, k := range append(slices.Clone(faultKinds), faultRestart) {
		row("fault "+k, "%d", res.Faults[k])
	}
	row("fault-affected sessions", "%d (ended with a close frame)", res.FaultAffected)
	for _, k := range faultKinds[1:5] {
		if d := res.HalfOpen[k]; d != nil {
			row("  "+k, "closed by the proxy %d (slowest %.1f s), open at the end %d", d.Closed, d.MaxS, d.Unresolved)
		}
	}
	row("unexpected errors", "%d", res.UnexpectedErrors)
	keys := make([]string, 0, len(res.Errors.Count))
	for k := range res.Errors.Count {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		row("  "+k, "%d, e.g. %s", res.Errors.Count[k], res.Errors.Example[k])
	}
	if res.ProxyBefore != nil {
		row("proxy before", "%s", res.ProxyBefore)
	}
	if res.ProxyAfter != nil {
		row("proxy after", "%s", res.ProxyAfter)
	}
	row("proxy RSS peak", "%.1f MiB (private dirty %.1f MiB); %.1f MiB after the drain",
		float64(res.ProxyRSSPeak)/(1<<20), float64(res.ProxyPrivateDirtyPeak)/(1<<20), float64(res.ProxyRSSAfter)/(1<<20))
	if res.RSS != nil {
		row("proxy RSS over the run", "%s", res.RSS.Verdict)
	}
	if res.Pass && res.UnexpectedErrors > 0 {
		fmt.Fprintf(&b, "PASS (no corruption, no leak; but %d unexpected errors: -max-errors 0 fails on them)\n", res.UnexpectedErrors)
	} else if res.Pass {
		b.WriteString("PASS\n")
	} else {
		for _, f := range res.Failures {
			fmt.Fprintf(&b, "FAIL: %s\n", f)
		}
	}
	return b.String()
}
