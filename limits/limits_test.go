package limits

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gowebsockify/websockify/codec"
)

// fakeLimiter is a Limiter on a clock the test moves, with its log lines kept.
type fakeLimiter struct {
	*Limiter
	clock time.Duration
	mu    sync.Mutex
	lines []string
}

func newFake(cfg Config) *fakeLimiter {
	f := &fakeLimiter{}
	f.Limiter = newLimiter(cfg, func(s string) {
		f.mu.Lock()
		f.lines = append(f.lines, s)
		f.mu.Unlock()
	})
	f.now = func() time.Duration { return f.clock }
	return f
}

func (f *fakeLimiter) logged() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lines...)
}

const (
	hs   = codec.AdmitHandshake
	sess = codec.AdmitSession
	both = codec.AdmitHandshake | codec.AdmitSession
)

// step is one call: Admit (release false) or Release, at a time.
type step struct {
	at      time.Duration
	addr    string
	what    codec.Admission
	release bool
	status  int // what Admit answers: 0 admitted, else the refusal's status
	retry   string
}

func TestAdmit(t *testing.T) {
	const a, b = "203.0.113.7", "198.51.100.2"
	ms := time.Millisecond
	tests := []struct {
		name  string
		cfg   Config
		steps []step
		open  int64 // sessions open at the end
	}{
		{name: "no limits", cfg: Config{}, steps: []step{
			{addr: a, what: both}, {addr: a, what: both}, {addr: a, what: hs}, {addr: a, what: sess},
		}, open: 3},
		{name: "overall", cfg: Config{MaxSessions: 2}, steps: []step{
			{addr: a, what: both}, {addr: b, what: both},
			{addr: a, what: both, status: 503, retry: "5"},
			{addr: b, what: hs}, // a web request is not a session
			{addr: a, release: true},
			{addr: b, what: both}, // a place came free
			{addr: b, what: both, status: 503},
		}, open: 2},
		{name: "per address", cfg: Config{MaxSessionsPerIP: 2}, steps: []step{
			{addr: a, what: both}, {addr: a, what: both},
			{addr: a, what: both, status: 429, retry: "5"},
			{addr: b, what: both}, // another address is not affected
			{addr: a, release: true},
			{addr: a, what: both},
		}, open: 3},
		{name: "per address before overall", cfg: Config{MaxSessions: 2, MaxSessionsPerIP: 1}, steps: []step{
			{addr: a, what: both},
			{addr: a, what: both, status: 429},
			{addr: b, what: both},
			{addr: "192.0.2.9", what: both, status: 503},
		}, open: 2},
		{name: "rate, burst 3", cfg: Config{HandshakesPerIP: 3}, steps: []step{
			{addr: a, what: both}, {addr: a, what: hs}, {addr: a, what: both},
			{addr: a, what: both, status: 429, retry: "1"},
			{addr: a, what: sess}, // a kept-alive connection's upgrade is no new handshake
			{addr: b, what: hs},
			{at: 340 * ms, addr: a, what: hs}, // one token back after a third of a second
			{at: 340 * ms, addr: a, what: hs, status: 429},
			{at: 2 * time.Second, addr: a, what: hs}, {addr: a, what: hs}, {addr: a, what: hs},
			{addr: a, what: hs, status: 429},
		}, open: 3},
		{name: "slow rate waits whole seconds", cfg: Config{HandshakesPerIP: 0.25}, steps: []step{
			{addr: a, what: hs},
			{at: time.Second, addr: a, what: hs, status: 429, retry: "3"},
			{at: 4 * time.Second, addr: a, what: hs},
		}},
		{name: "refused by rate, not counted as a session", cfg: Config{HandshakesPerIP: 1, MaxSessionsPerIP: 5}, steps: []step{
			{addr: a, what: both},
			{addr: a, what: both, status: 429},
			{at: time.Second, addr: a, what: both},
		}, open: 2},
		{name: "a refused session still spends its handshake", cfg: Config{HandshakesPerIP: 2, MaxSessionsPerIP: 1}, steps: []step{
			{addr: a, what: both},
			{addr: a, what: both, status: 429, retry: "5"},
			{addr: a, what: both, status: 429, retry: "1"}, // the bucket is empty now
		}, open: 1},
		{name: "one address however written", cfg: Config{MaxSessionsPerIP: 1}, steps: []step{
			{addr: "::ffff:10.1.2.3", what: both},
			{addr: "10.1.2.3", what: both, status: 429},
			{addr: "10.1.2.3:5555", what: both, status: 429},
			{addr: "[2001:db8::1]:443", what: both},
			{addr: "2001:db8::1", what: both, status: 429},
			{addr: "2001:db8::1", release: true},
			{addr: "2001:db8::1", what: both},
		}, open: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(tt.cfg)
			for i, s := range tt.steps {
				if s.at > f.clock {
					f.clock = s.at
				}
				if s.release {
					f.Release(s.addr)
					continue
				}
				refusal := f.Admit(s.addr, s.what)
				status := 0
				if refusal != nil {
					status = refusal.Status
				}
				if status != s.status {
					t.Fatalf("step %d (%s at %v): status %d, want %d", i, s.addr, f.clock, status, s.status)
				}
				if s.retry != "" && !strings.Contains(refusal.Header, "Retry-After: "+s.retry+"\r\n") {
					t.Errorf("step %d: headers %q, want Retry-After: %s", i, refusal.Header, s.retry)
				}
				if refusal != nil && !strings.HasPrefix(string(refusal.Response()), fmt.Sprintf("HTTP/1.1 %d ", s.status)) {
					t.Errorf("step %d: response %q", i, refusal.Response())
				}
			}
			if got := f.Open(); got != tt.open {
				t.Errorf("open sessions %d, want %d", got, tt.open)
			}
		})
	}
}

func TestKeyOf(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1":              "10.0.0.1",
		"10.0.0.1:80":           "10.0.0.1",
		"::ffff:10.0.0.1":       "10.0.0.1",
		"[::ffff:10.0.0.1]:443": "10.0.0.1",
		"::1":                   "::1",
		"[::1]:6080":            "::1",
		"2001:DB8::1":           "2001:db8::1",
		"fe80::1%eth0":          "fe80::1",
		"unix":                  "unix",
		"/run/ws.sock":          "/run/ws.sock",
		"unknown":               "unknown",
	} {
		if got := keyOf(in); got != want {
			t.Errorf("keyOf(%q) = %q, want %q", in, got, want)
		}
	}
}

// A burst of refusals logs its first at once and the rest in one summary
// once it has been quiet for burstQuiet.
func TestBurstLogging(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		addrs   []string // refused in turn, after the one that fills the limit
		first   string
		summary string
	}{
		{name: "one address", cfg: Config{MaxSessionsPerIP: 1}, addrs: repeat("203.0.113.7", 50),
			first:   "limit max-sessions-per-ip=1 reached: refused an upgrade from 203.0.113.7; further refusals are counted until 1s pass without one",
			summary: "limit max-sessions-per-ip=1: refused 49 more upgrades from 203.0.113.7 in the last 1.5s"},
		{name: "many addresses", cfg: Config{MaxSessions: 1},
			addrs:   append(repeat("203.0.113.7", 30), "198.51.100.1", "198.51.100.2", "198.51.100.1"),
			first:   "limit max-sessions=1 reached: refused an upgrade from 203.0.113.7;",
			summary: "limit max-sessions=1: refused 32 more upgrades from 3 addresses (most from 203.0.113.7: 29) in the last 1.5s"},
		{name: "handshakes", cfg: Config{HandshakesPerIP: 0.5}, addrs: repeat("::1", 2),
			first:   "limit max-handshakes-per-ip=0.5 reached: refused a connection from ::1;",
			summary: "limit max-handshakes-per-ip=0.5: refused 1 more connection from ::1 in the last 1.5s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(tt.cfg)
			if r := f.Admit(tt.addrs[0], both); r != nil {
				t.Fatalf("first admission refused: %v", r)
			}
			for i, a := range tt.addrs {
				f.clock = time.Duration(i) * 10 * time.Millisecond // 50 in half a second
				if r := f.Admit(a, both); r == nil {
					t.Fatalf("refusal %d admitted", i)
				}
				f.Tick()
			}
			if lines := f.logged(); len(lines) != 1 || !strings.HasPrefix(lines[0], tt.first) {
				t.Fatalf("during the burst: %q, want one line %q", lines, tt.first)
			}
			last := f.clock
			f.clock = last + burstQuiet - time.Millisecond
			f.Tick()
			if n := len(f.logged()); n != 1 {
				t.Fatalf("summary before the burst was quiet for %v: %q", burstQuiet, f.logged())
			}
			f.clock = time.Duration(0) + 1500*time.Millisecond
			if f.clock < last+burstQuiet {
				f.clock = last + burstQuiet
			}
			f.Tick()
			f.Tick()
			lines := f.logged()
			if len(lines) != 2 || lines[1] != tt.summary {
				t.Fatalf("after the burst: %q, want the summary %q", lines, tt.summary)
			}
			// The next refusal opens a new burst with a line of its own.
			f.clock += time.Second
			f.Admit(tt.addrs[0], both)
			f.Admit(tt.addrs[0], both)
			if lines := f.logged(); len(lines) != 3 || !strings.HasPrefix(lines[2], tt.first) {
				t.Fatalf("a new burst: %q", lines)
			}
		})
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// A burst that never goes quiet is summarised every burstReport; a lone
// refusal gets no summary at all.
func TestBurstLoggingLongAndLone(t *testing.T) {
	f := newFake(Config{MaxSessions: 1})
	f.Admit("10.0.0.1", both)
	for ms := 0; ms <= 25000; ms += 100 {
		f.clock = time.Duration(ms) * time.Millisecond
		f.Admit("10.0.0.2", both)
		f.Tick()
	}
	lines := f.logged()
	if len(lines) != 3 || !strings.Contains(lines[1], "refused 100 more upgrades from 10.0.0.2 in the last 10.0s") ||
		!strings.Contains(lines[2], "refused 100 more upgrades from 10.0.0.2 in the last 10.0s") {
		t.Fatalf("a 25 s burst: %q", lines)
	}
	f.clock += 2 * time.Second
	f.Tick()
	if lines := f.logged(); len(lines) != 4 || !strings.Contains(lines[3], "refused 50 more") {
		t.Fatalf("its end: %q", lines)
	}

	g := newFake(Config{MaxSessions: 1})
	g.Admit("10.0.0.1", both)
	g.Admit("10.0.0.1", both)
	g.clock = 5 * time.Second
	g.Tick()
	if lines := g.logged(); len(lines) != 1 {
		t.Fatalf("a lone refusal: %q", lines)
	}
	g.Admit("10.0.0.1", both) // Stop summarises a burst still open
	g.Admit("10.0.0.1", both)
	g.Stop()
	if lines := g.logged(); len(lines) != 3 || !strings.Contains(lines[2], "refused 1 more upgrade from 10.0.0.1") {
		t.Fatalf("Stop: %q", lines)
	}
}

func TestHeadTooLargeLogging(t *testing.T) {
	f := newFake(Config{MaxRequestHead: 4096})
	for range 20 {
		f.HeadTooLarge("10.0.0.3")
	}
	f.clock = 2 * time.Second
	f.Tick()
	want := []string{
		"limit max-request-head=4096 reached: refused a request from 10.0.0.3; further refusals are counted until 1s pass without one",
		"limit max-request-head=4096: refused 19 more requests from 10.0.0.3 in the last 2.0s",
	}
	if got := f.logged(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("logged %q, want %q", got, want)
	}
}

// The table forgets an address once it has no session open and a full
// bucket, and never holds more than MaxIdleEntries addresses with no
// session open.
func TestTableBounded(t *testing.T) {
	f := newFake(Config{MaxSessionsPerIP: 3})
	f.Admit("10.0.0.1", both)
	f.Admit("10.0.0.1", both)
	if n := f.Entries(); n != 1 {
		t.Fatalf("entries %d, want 1", n)
	}
	f.Release("10.0.0.1")
	f.Release("10.0.0.1")
	if n := f.Entries(); n != 0 {
		t.Fatalf("after the last release: entries %d, want 0", n)
	}

	f = newFake(Config{HandshakesPerIP: 0.1, MaxSessionsPerIP: 1})
	const withSessions = 500
	for i := range withSessions {
		f.Admit(fmt.Sprintf("10.1.%d.%d", i/256, i%256), both)
	}
	for i := range 3 * MaxIdleEntries {
		f.Admit(fmt.Sprintf("2001:db8::%x:%x", i>>16, i&0xffff), hs)
	}
	if n := f.Entries(); n > MaxIdleEntries+withSessions {
		t.Fatalf("entries %d, want at most %d", n, MaxIdleEntries+withSessions)
	}
	for i := range withSessions { // their entries were never dropped: still at their limit
		if r := f.Admit(fmt.Sprintf("10.1.%d.%d", i/256, i%256), sess); r == nil {
			t.Fatalf("address %d lost its entry", i)
		}
	}
	// Once the buckets are full again, ticks sweep the table clean but
	// for the addresses with sessions open.
	f.clock = 11 * time.Second
	for range numShards {
		f.Tick()
	}
	if n := f.Entries(); n != withSessions {
		t.Fatalf("after a sweep: entries %d, want %d", n, withSessions)
	}
}

// Several loops admitting and releasing at once leave nothing behind.
func TestConcurrent(t *testing.T) {
	l := New(Config{MaxSessions: 30, MaxSessionsPerIP: 5, HandshakesPerIP: 1e6}, func(string) {})
	defer l.Stop()
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted, refused := 0, 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var held []string
			n, r := 0, 0
			for i := range 2000 {
				addr := fmt.Sprintf("10.0.0.%d", i%7) // shared by every goroutine
				if l.Admit(addr, both) == nil {
					held = append(held, addr)
					n++
				} else {
					r++
				}
				if len(held) > 40 { // more than the limits allow even one goroutine
					l.Release(held[0])
					held = held[1:]
				}
				if open := l.Open(); open > 30 {
					t.Errorf("%d sessions open, limit 30", open)
				}
			}
			mu.Lock()
			admitted += n
			refused += r
			mu.Unlock()
			for _, a := range held {
				l.Release(a)
			}
		}()
	}
	wg.Wait()
	if admitted == 0 || refused == 0 {
		t.Fatalf("admitted %d, refused %d: the test did not reach the limits", admitted, refused)
	}
	if n := l.Open(); n != 0 {
		t.Fatalf("open %d after every release", n)
	}
	time.Sleep(10 * time.Millisecond) // every bucket full again
	for range numShards {
		l.Tick()
	}
	if n := l.Entries(); n != 0 {
		t.Fatalf("%d entries left", n)
	}
}
