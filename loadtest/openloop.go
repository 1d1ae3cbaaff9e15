package main

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The openloop mode measures latency at a fixed offered rate: sessions are
// opened first, then messages go out on a schedule fixed from the start
// time, whatever the replies do. The echo mode is closed loop (a session
// sends its next request only after the answer), so a proxy that stalls
// also stops the requests that would have seen the stall, and its tail
// hides (coordinated omission). Here a send that goes out late is still
// timed from when it was due, so queueing in the proxy shows in full.

// openLoopSettings are the openloop mode's own flags.
type openLoopSettings struct {
	rates  rateList      // total offered messages per second, one step each
	warmup time.Duration // sent but not recorded, at the start of each step
}

// rateList is -rates: comma-separated messages per second, such as
// "1000,2000,4000" (a k suffix multiplies by 1,000).
type rateList []float64

func (l *rateList) String() string {
	var s []string
	for _, r := range *l {
		s = append(s, strconv.FormatFloat(r, 'f', -1, 64))
	}
	return strings.Join(s, ",")
}

func (l *rateList) Set(v string) error {
	var out rateList
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		mult := 1.0
		if strings.HasSuffix(f, "k") {
			f, mult = strings.TrimSuffix(f, "k"), 1000
		}
		r, err := strconv.ParseFloat(f, 64)
		if err != nil || r <= 0 || r*mult > 1e6 {
			return fmt.Errorf("%q: want rates in messages per second, above 0 and at most 1000k", f)
		}
		out = append(out, r*mult)
	}
	*l = out
	return nil
}

// openLoopFlags adds the openloop mode's flags to fs.
func openLoopFlags(fs *flag.FlagSet, cfg *settings) {
	cfg.openLoop.rates = rateList{1000, 2000, 4000}
	fs.IntVar(&cfg.conns, "conns", 200, "sessions, opened before the clock starts; the offered rate is spread evenly over them")
	fs.Var(&cfg.openLoop.rates, "rates", "total offered rates in messages per second, comma-separated (1k = 1000), measured one after the other on the same sessions")
	fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "recorded length of each rate step (after its warm-up)")
	fs.DurationVar(&cfg.openLoop.warmup, "warmup", time.Second, "start of each rate step whose messages are sent but not recorded")
	fs.IntVar(&cfg.msgSize, "size", 64, "message bytes (at least 8: the first 8 carry the message's number, checked on the echo)")
	fs.DurationVar(&cfg.rampTimeout, "ramp-timeout", 60*time.Second, "limit for opening the sessions")
	fs.IntVar(&cfg.dialParallel, "dial-parallel", 64, "sessions being opened at once")
	fs.IntVar(&cfg.maxFail, "max-fail", 100, "stop opening after this many failures")
}

// checkOpenLoop validates the openloop flags.
func (c *settings) checkOpenLoop() error {
	if c.conns < 1 || c.duration <= 0 || c.openLoop.warmup < 0 {
		return errors.New("-conns and -duration must be positive, -warmup not negative")
	}
	if c.msgSize < 8 {
		return errors.New("-size must be at least 8")
	}
	if len(c.openLoop.rates) == 0 {
		return errors.New("-rates: give at least one rate")
	}
	return nil
}

// openLoopLimit is how long an openloop run may take by its own limits.
func (c *settings) openLoopLimit() time.Duration {
	steps := time.Duration(len(c.openLoop.rates))
	return c.rampTimeout + steps*(c.openLoop.warmup+c.duration+c.opTimeout) + time.Minute
}

// openLoopStep is one offered rate's outcome, as recorded in the result.
type openLoopStep struct {
	OfferedPerSec float64 `json:"offered_per_s"`  // total over all sessions
	WarmupSeconds float64 `json:"warmup_s"`       // sent, not recorded
	Seconds       float64 `json:"window_s"`       // recorded
	Sent          int64   `json:"sent"`           // messages due in the recorded window that went out
	Received      int64   `json:"received"`       // of them, echoed back correctly
	Lost          int64   `json:"lost,omitempty"` // due in the window but not sent or not echoed (a session failed or the drain timed out)
	SentPerSec    float64 `json:"sent_per_s"`     // Sent over the window: the rate actually offered
	// Latency is receive time minus scheduled send time, in all.
	Latency *histSummary `json:"latency"`
	// SendLag is how late the client's writes went out against the
	// schedule: when it is large, the client (or a proxy that stopped
	// reading) held sends back; Latency still counts from the schedule.
	SendLag *histSummary `json:"send_lag"`
	// FromSend is receive time minus the write's actual time: the round
	// trip alone, without the client's lag (what a closed loop would see).
	FromSend *histSummary `json:"from_send"`
	ProxyCPU float64      `json:"proxy_cpu_pct,omitempty"`
}

// scheduleAt is when message k of session i (of n) is due, for a total
// rate: the messages of all sessions form one evenly spaced sequence,
// message k of session i being number k*n+i of it. A function of the start
// time alone, so a late send never moves the ones after it.
func scheduleAt(start time.Time, rate float64, n, i int, k int64) time.Time {
	seq := float64(k)*float64(n) + float64(i)
	return start.Add(time.Duration(seq / rate * float64(time.Second)))
}

// messagesDue is how many messages session i (of n) has due strictly before
// the time d after the start.
func messagesDue(rate float64, n, i int, d time.Duration) int64 {
	seqs := d.Seconds() * rate // sequence numbers due before d: 0 .. ceil(seqs)-1
	if seqs <= float64(i) {
		return 0
	}
	// k*n+i < seqs
	k := int64((seqs-float64(i))/float64(n)) + 1
	for k > 0 && float64(k-1)*float64(n)+float64(i) >= seqs {
		k--
	}
	return k
}

// openLoopSession is one session's part of a step.
type openLoopSession struct {
	c       *echoConn
	payload []byte
	lat     []time.Duration // recorded messages' latencies
	lag     []time.Duration // recorded messages' send lag
	rtt     []time.Duration // recorded messages' time from the actual write
	sentAt  []atomic.Int64  // per message of the step: when it was written, ns since the step's start
	sent    int64           // recorded messages written
	got     int64           // recorded messages echoed back
	err     error
	broken  bool // the stream is out of step: not used again
}

// runOpenLoop opens the sessions, then runs one step per offered rate.
func runOpenLoop(e *env) error {
	cfg, res := e.cfg, e.result
	res.ConnsWanted, res.MsgBytes = cfg.conns, cfg.msgSize
	res.WindowSeconds = cfg.duration.Seconds()
	ramp, err := openForMeasuring(e, "sessions")
	defer closeAll(ramp.conns)
	if err != nil {
		return err
	}
	sessions := make([]*openLoopSession, len(ramp.conns))
	for i, c := range ramp.conns {
		p := make([]byte, cfg.msgSize)
		_, _ = rand.Read(p)
		sessions[i] = &openLoopSession{c: c, payload: p}
	}
	for _, rate := range cfg.openLoop.rates {
		step := runOpenLoopStep(e, sessions, rate)
		if step.Latency == nil {
			res.Notes = append(res.Notes, fmt.Sprintf("%s/s offered: no message echoed (%d sessions of %d failed before or during it)",
				fmtCount(int(rate)), countBroken(sessions), len(sessions)))
		}
		res.OpenLoop = append(res.OpenLoop, step)
		for _, s := range sessions {
			if s.err != nil {
				res.Errors.add(s.err)
				s.err = nil
			}
		}
	}
	res.ConnsLost = countBroken(sessions)
	for _, st := range res.OpenLoop {
		if st.Received > 0 {
			return nil
		}
	}
	return errors.New("no message was echoed in any step")
}

func countBroken(ss []*openLoopSession) int {
	n := 0
	for _, s := range ss {
		if s.broken {
			n++
		}
	}
	return n
}

// runOpenLoopStep offers rate messages per second over the sessions still
// in step for warm-up plus the window, then waits (at most the op timeout)
// for the last echoes.
func runOpenLoopStep(e *env, all []*openLoopSession, rate float64) openLoopStep {
	cfg := e.cfg
	var live []*openLoopSession
	for _, s := range all {
		if !s.broken {
			s.lat, s.lag, s.rtt, s.sent, s.got = s.lat[:0], s.lag[:0], s.rtt[:0], 0, 0
			live = append(live, s)
		}
	}
	step := openLoopStep{OfferedPerSec: rate, WarmupSeconds: cfg.openLoop.warmup.Seconds(), Seconds: cfg.duration.Seconds()}
	if len(live) == 0 {
		return step
	}
	n := len(live)
	start := time.Now().Add(20 * time.Millisecond)
	if openLoopStepStarted != nil {
		openLoopStepStarted(start)
	}
	recFrom, end := cfg.openLoop.warmup, cfg.openLoop.warmup+cfg.duration
	drainBy := start.Add(end + cfg.opTimeout)
	cpuRead := make(chan float64, 1)
	go func() { // the proxy's CPU over the recorded window
		time.Sleep(time.Until(start.Add(recFrom)))
		m := startCPU(e.proxyPID)
		time.Sleep(time.Until(start.Add(end)))
		cpuRead <- m.percent()
	}()

	var wg sync.WaitGroup
	for i, s := range live {
		total := messagesDue(rate, n, i, end)
		first := messagesDue(rate, n, i, recFrom) // the first recorded message
		// Written by the sender before the write, read by the receiver
		// after the echo: atomics, as the socket orders them, not Go.
		s.sentAt = make([]atomic.Int64, total)
		wg.Add(2)
		go func() { // sender: on the schedule, never waiting for echoes
			defer wg.Done()
			msg := slices.Clone(s.payload)
			for k := int64(0); k < total; k++ {
				due := scheduleAt(start, rate, n, i, k)
				time.Sleep(time.Until(due))
				binary.BigEndian.PutUint64(msg, uint64(k))
				wire := s.c.s.frame(msg)
				_ = s.c.s.conn.SetWriteDeadline(drainBy)
				lag := time.Since(due)
				s.sentAt[k].Store(int64(time.Since(start)))
				if err := s.c.s.send(wire); err != nil {
					s.fail(&phaseError{"send", err})
					return
				}
				if k >= first {
					s.lag = append(s.lag, lag)
					s.sent++
				}
			}
		}()
		go func() { // receiver: each echo in order, timed from its schedule
			defer wg.Done()
			_ = s.c.s.conn.SetReadDeadline(drainBy)
			want := slices.Clone(s.payload)
			for k := int64(0); k < total; k++ {
				if err := s.c.s.readFull(s.c.got); err != nil {
					s.fail(&phaseError{"recv", err})
					return
				}
				now := time.Now()
				binary.BigEndian.PutUint64(want, uint64(k))
				if !slices.Equal(s.c.got, want) {
					s.fail(&phaseError{"recv", fmt.Errorf("echo of message %d differs from what was sent", k)})
					return
				}
				if k >= first {
					s.lat = append(s.lat, now.Sub(scheduleAt(start, rate, n, i, k)))
					s.rtt = append(s.rtt, now.Sub(start)-time.Duration(s.sentAt[k].Load()))
					s.got++
				}
			}
		}()
	}
	wg.Wait()
	if pct := <-cpuRead; pct >= 0 {
		step.ProxyCPU = pct
	}
	var lat, lag, rtt []time.Duration
	var due int64
	for i, s := range live {
		due += messagesDue(rate, n, i, end) - messagesDue(rate, n, i, recFrom)
		step.Sent += s.sent
		step.Received += s.got
		lat = append(lat, s.lat...)
		lag = append(lag, s.lag...)
		rtt = append(rtt, s.rtt...)
		if !s.broken {
			_ = s.c.s.conn.SetDeadline(time.Time{})
		}
	}
	step.Lost = due - step.Received
	step.SentPerSec = float64(step.Sent) / cfg.duration.Seconds()
	step.Latency = summarizeDurations(lat)
	step.SendLag = summarizeDurations(lag)
	step.FromSend = summarizeDurations(rtt)
	return step
}

// openLoopStepStarted, when set (by tests), is told each step's start time.
var openLoopStepStarted func(start time.Time)

var olMu sync.Mutex // guards openLoopSession.err and broken across its goroutines

// fail records a session's first error and takes it out of later steps.
// The socket's deadline is pulled in so that its other goroutine stops too.
func (s *openLoopSession) fail(err error) {
	olMu.Lock()
	defer olMu.Unlock()
	if !s.broken {
		s.err, s.broken = err, true
		_ = s.c.s.conn.SetDeadline(time.Now())
	}
}

// summarizeDurations is the histogram summary of a step's measurements.
func summarizeDurations(ds []time.Duration) *histSummary {
	if len(ds) == 0 {
		return nil
	}
	var h histogram
	for _, d := range ds {
		h.record(int64(d))
	}
	return h.summary()
}

// openLoopSummary is the one-line summary of an openloop result.
func openLoopSummary(r *Result) string {
	s := fmt.Sprintf("openloop %s: %d/%d sessions, %d B messages", r.Label, r.ConnsOpen, r.ConnsWanted, r.MsgBytes)
	if r.ConnsLost > 0 {
		s += fmt.Sprintf(", %d sessions failed", r.ConnsLost)
	}
	for _, st := range r.OpenLoop {
		s += fmt.Sprintf("\n  %s/s offered (%.0f/s sent) for %g s: ", fmtCount(int(st.OfferedPerSec)), st.SentPerSec, st.Seconds)
		if h := st.Latency; h != nil {
			s += fmt.Sprintf("p50 %s, p90 %s, p99 %s, p99.9 %s, max %s",
				fmtDurUs(h.P50us), fmtDurUs(h.P90us), fmtDurUs(h.P99us), fmtDurUs(h.P999us), fmtDurUs(h.MaxUs))
		} else {
			s += "nothing echoed"
		}
		if st.SendLag != nil {
			s += fmt.Sprintf("; send lag p50 %s, p99 %s", fmtDurUs(st.SendLag.P50us), fmtDurUs(st.SendLag.P99us))
		}
		if h := st.FromSend; h != nil {
			s += fmt.Sprintf("; from the write p50 %s, p99 %s", fmtDurUs(h.P50us), fmtDurUs(h.P99us))
		}
		if st.Lost > 0 {
			s += fmt.Sprintf("; %d lost", st.Lost)
		}
		if st.ProxyCPU > 0 {
			s += fmt.Sprintf("; proxy CPU %.0f%%", st.ProxyCPU)
		}
	}
	return s
}
