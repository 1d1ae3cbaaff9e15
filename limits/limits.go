// Package limits owns the proxy's bookkeeping against abuse: how many
// sessions are open, overall and per client address (--max-sessions,
// --max-sessions-per-ip), how fast each address opens connections (a token
// bucket per address, --max-handshakes-per-ip), and the log lines of what
// they refuse, one per burst rather than one per client. It touches no
// socket: a codec.Session asks it (it is a codec.Limiter) once a request
// head is complete, from any event loop, and nothing here waits on more
// than a short mutex over one shard of the address table.
//
// The table holds an entry for an address while it has a session open or
// its bucket is not full again, so its size is bounded by the open sessions
// plus the addresses seen within the last burst/rate seconds, and the
// latter never by more than MaxIdleEntries: past that, the entry of some
// address with no session open is dropped (forgiving its recent handshakes)
// to make room.
//
// Each process keeps its own table: with --workers, each worker enforces
// the limits on the clients the kernel gave it.
package limits

import (
	"fmt"
	"hash/maphash"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gowebsockify/websockify/codec"
)

// Config is what to enforce; a zero field means no limit (MaxRequestHead
// and MaxFrameSize are enforced by codec.Session, and only named here so
// that refusals' log lines can say the limit).
type Config struct {
	MaxSessions      int     // sessions open at once; 0: unlimited
	MaxSessionsPerIP int     // sessions open at once per client address; 0: unlimited
	HandshakesPerIP  float64 // new connections per second per address (burst max(1, rate)); 0: unlimited
	MaxRequestHead   int     // bytes; 0: codec.MaxHeaderBytes
	MaxFrameSize     uint64  // bytes of a client's data frame payload; 0: unlimited
}

// MaxIdleEntries bounds the addresses the table remembers that have no
// session open (only a bucket still refilling): about 100 bytes each.
const MaxIdleEntries = 1 << 16

// Retry-After for a refusal by a session limit: sessions end when they end,
// so this is only a hint that asking again at once is pointless.
const sessionRetryAfter = 5

const numShards = 64

// Limiter is the limits of one process. Its methods are safe for
// concurrent use.
type Limiter struct {
	cfg   Config
	burst float64 // bucket size: max(1, rate)
	table bool    // addresses are tracked (a per-address limit is set)

	open    atomic.Int64 // sessions admitted and not released
	seed    maphash.Seed
	shards  [numShards]shard
	entries atomic.Int64  // entries in all shards
	sweep   atomic.Uint32 // the shard Tick sweeps next

	start time.Time
	now   func() time.Duration // since start, monotonic; a test's clock
	logs  [numKinds]burstLog
	// bursts counts the bursts of refusals not yet ended.
	bursts atomic.Int32

	// The Limiter ticks itself (Tick) every tickEvery while it has a
	// burst to end or entries to sweep, and not at all when it has
	// neither, so an idle proxy is never woken.
	selfTick bool
	ticking  atomic.Bool
	stopped  atomic.Bool
}

const tickEvery = 100 * time.Millisecond

type shard struct {
	mu      sync.Mutex
	m       map[string]entry
	sweptAt time.Duration
}

// entry is one address: its open sessions and its bucket, tokens as of at.
type entry struct {
	sessions int32
	tokens   float64
	at       time.Duration
}

// New returns the limits of cfg; log writes one warning line (the
// Limiter's refusals, a burst at a time).
func New(cfg Config, log func(string)) *Limiter {
	l := newLimiter(cfg, log)
	l.selfTick = true
	return l
}

// newLimiter is New without the self-ticking, for a test that ticks it.
func newLimiter(cfg Config, log func(string)) *Limiter {
	l := &Limiter{cfg: cfg, burst: math.Max(1, cfg.HandshakesPerIP), seed: maphash.MakeSeed(), start: time.Now()}
	l.now = func() time.Duration { return time.Since(l.start) }
	l.table = cfg.MaxSessionsPerIP > 0 || cfg.HandshakesPerIP > 0
	perShard := MaxIdleEntries / numShards
	for i := range l.shards {
		l.shards[i].m = make(map[string]entry, min(perShard, 16))
	}
	head := cfg.MaxRequestHead
	if head <= 0 {
		head = codec.MaxHeaderBytes
	}
	labels := [numKinds]string{
		kindSessions:   "max-sessions=" + strconv.Itoa(cfg.MaxSessions),
		kindPerIP:      "max-sessions-per-ip=" + strconv.Itoa(cfg.MaxSessionsPerIP),
		kindHandshakes: "max-handshakes-per-ip=" + strconv.FormatFloat(cfg.HandshakesPerIP, 'g', -1, 64),
		kindHead:       "max-request-head=" + strconv.Itoa(head),
	}
	for k := range l.logs {
		l.logs[k] = burstLog{label: labels[k], what: kindWhat[k], log: log, bursts: &l.bursts}
	}
	return l
}

// Counter counts refusals (a Prometheus counter, for one).
type Counter interface{ Inc() }

// kindNames name the limits for CountRefusals.
var kindNames = [numKinds]string{"max_sessions", "max_sessions_per_ip", "max_handshakes_per_ip", "max_request_head"}

// CountRefusals has every refusal counted on counter(name of its limit):
// max_sessions, max_sessions_per_ip, max_handshakes_per_ip or
// max_request_head. Call it before the first Admit.
func (l *Limiter) CountRefusals(counter func(limit string) Counter) {
	for k := range l.logs {
		l.logs[k].count = counter(kindNames[k])
	}
}

// Open is the number of sessions admitted and not yet released.
func (l *Limiter) Open() int64 { return l.open.Load() }

// Admit implements codec.Limiter: the handshake rate is checked first (and
// a handshake counts whether or not a session limit then refuses it), then
// the address's sessions, then the overall count.
func (l *Limiter) Admit(addr string, what codec.Admission) *codec.HTTPError {
	rate := what&codec.AdmitHandshake != 0 && l.cfg.HandshakesPerIP > 0
	session := what&codec.AdmitSession != 0
	if !rate && !session {
		return nil
	}
	if !l.table { // no per-address limit: only the overall count
		return l.admitOverall(addr)
	}
	return l.admitAddr(addr, rate, session)
}

// admitAddr checks and counts an address's handshake (rate) and session
// (session, which then needs the overall count too), under its shard's lock
// so that two loops admitting the same address cannot both take its last
// place.
func (l *Limiter) admitAddr(addr string, rate, session bool) *codec.HTTPError {
	key := keyOf(addr)
	sh := &l.shards[maphash.String(l.seed, key)%numShards]
	now := l.now()
	sh.mu.Lock()
	e, ok := sh.m[key]
	if !ok {
		e = entry{tokens: l.burst, at: now}
	}
	var refusal *codec.HTTPError
	var kind kind
	if rate {
		l.refill(&e, now)
		if e.tokens < 1 {
			wait := math.Ceil((1 - e.tokens) / l.cfg.HandshakesPerIP)
			refusal, kind = tooMany("Too many connections from your address", int(wait)), kindHandshakes
		} else {
			e.tokens--
		}
	}
	if refusal == nil && session {
		if most := l.cfg.MaxSessionsPerIP; most > 0 && int(e.sessions) >= most {
			refusal, kind = tooMany("Too many sessions from your address", sessionRetryAfter), kindPerIP
		} else if refusal = l.takeOverall(); refusal != nil {
			kind = kindSessions
		} else if l.cfg.MaxSessionsPerIP > 0 {
			e.sessions++
		}
	}
	added := false
	if ok || !l.idle(&e, now) {
		if !ok {
			l.makeRoom(sh, now)
			l.entries.Add(1)
			added = true
		}
		sh.m[key] = e
	}
	sh.mu.Unlock()
	if refusal != nil {
		l.logs[kind].refused(key, now)
	}
	if added || refusal != nil {
		l.wake()
	}
	return refusal
}

// admitOverall counts a session toward --max-sessions only.
func (l *Limiter) admitOverall(addr string) *codec.HTTPError {
	refusal := l.takeOverall()
	if refusal != nil {
		l.logs[kindSessions].refused(keyOf(addr), l.now())
		l.wake()
	}
	return refusal
}

// takeOverall counts a session toward --max-sessions. A compare-and-swap,
// not an add undone when over: the count is never seen above the limit.
func (l *Limiter) takeOverall() *codec.HTTPError {
	for {
		n := l.open.Load()
		if l.cfg.MaxSessions > 0 && n >= int64(l.cfg.MaxSessions) {
			return &codec.HTTPError{Status: 503, Reason: "Too many sessions, try again later",
				Header: "Retry-After: " + strconv.Itoa(sessionRetryAfter) + "\r\n"}
		}
		if l.open.CompareAndSwap(n, n+1) {
			return nil
		}
	}
}

func tooMany(reason string, retryAfter int) *codec.HTTPError {
	return &codec.HTTPError{Status: 429, Reason: reason, Header: "Retry-After: " + strconv.Itoa(max(1, retryAfter)) + "\r\n"}
}

// Release implements codec.Limiter.
func (l *Limiter) Release(addr string) {
	l.open.Add(-1)
	if l.cfg.MaxSessionsPerIP <= 0 {
		return
	}
	key := keyOf(addr)
	sh := &l.shards[maphash.String(l.seed, key)%numShards]
	now := l.now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[key]
	if !ok {
		return // it was admitted: it is there unless a test's clock says otherwise
	}
	if e.sessions > 0 {
		e.sessions--
	}
	if l.idle(&e, now) {
		delete(sh.m, key)
		l.entries.Add(-1)
	} else {
		sh.m[key] = e
	}
}

// HeadTooLarge implements codec.Limiter.
func (l *Limiter) HeadTooLarge(addr string) {
	l.logs[kindHead].refused(keyOf(addr), l.now())
	l.wake()
}

// refill brings e's bucket up to now.
func (l *Limiter) refill(e *entry, now time.Duration) {
	if now > e.at {
		e.tokens = math.Min(l.burst, e.tokens+(now-e.at).Seconds()*l.cfg.HandshakesPerIP)
		e.at = now
	}
}

// idle reports whether e says nothing the table must remember: no session
// open, and a full bucket (as good as no entry at all).
func (l *Limiter) idle(e *entry, now time.Duration) bool {
	if e.sessions > 0 {
		return false
	}
	if l.cfg.HandshakesPerIP <= 0 {
		return true
	}
	return e.tokens+(now-e.at).Seconds()*l.cfg.HandshakesPerIP >= l.burst
}

// makeRoom keeps a shard within its share of MaxIdleEntries before a new
// address is added: idle entries go first (at most one pass per sweepEvery),
// then, if need be, one entry with no session open, whichever the map
// yields first. Entries with sessions open are never dropped: they are
// bounded by the open sessions (each holds a descriptor).
func (l *Limiter) makeRoom(sh *shard, now time.Duration) {
	if len(sh.m) < MaxIdleEntries/numShards {
		return
	}
	if now-sh.sweptAt >= sweepEvery {
		l.sweepShard(sh, now)
		if len(sh.m) < MaxIdleEntries/numShards {
			return
		}
	}
	for k, e := range sh.m {
		if e.sessions == 0 {
			delete(sh.m, k)
			l.entries.Add(-1)
			return
		}
	}
}

const sweepEvery = 100 * time.Millisecond

// sweepShard drops the idle entries of sh; its lock is held.
func (l *Limiter) sweepShard(sh *shard, now time.Duration) {
	sh.sweptAt = now
	for k, e := range sh.m {
		if l.idle(&e, now) {
			delete(sh.m, k)
			l.entries.Add(-1)
		}
	}
}

// wake starts the self-ticking, unless it runs.
func (l *Limiter) wake() {
	if l.selfTick && !l.stopped.Load() && l.ticking.CompareAndSwap(false, true) {
		time.AfterFunc(tickEvery, l.selfTicked)
	}
}

func (l *Limiter) selfTicked() {
	if l.stopped.Load() {
		return
	}
	l.Tick()
	if l.pending() {
		time.AfterFunc(tickEvery, l.selfTicked)
		return
	}
	l.ticking.Store(false)
	if l.pending() { // came in meanwhile, its wake seeing the ticking still on
		l.wake()
	}
}

// pending reports whether a Tick has something to do.
func (l *Limiter) pending() bool { return l.bursts.Load() > 0 || l.entries.Load() > 0 }

// Stop ends the bursts of refusals still open, logging their summaries,
// and the self-ticking: the proxy is stopping.
func (l *Limiter) Stop() {
	l.stopped.Store(true)
	now := l.now()
	for k := range l.logs {
		l.logs[k].end(now)
	}
}

// Tick ends bursts of refusals that have gone quiet (logging their
// summaries) and sweeps one shard of the table. A Limiter from New calls
// it itself, every tickEvery while it has something to do.
func (l *Limiter) Tick() {
	now := l.now()
	for k := range l.logs {
		l.logs[k].tick(now)
	}
	if l.table {
		sh := &l.shards[l.sweep.Add(1)%numShards]
		sh.mu.Lock()
		l.sweepShard(sh, now)
		sh.mu.Unlock()
	}
}

// Entries is how many addresses the table holds.
func (l *Limiter) Entries() int { return int(l.entries.Load()) }

// keyOf is the client address a limit counts by: the IP of addr (which may
// carry a port or brackets, an IPv4-mapped IPv6 address counting as the
// IPv4 one), or addr itself when it is none (a unix socket's clients share
// one).
func keyOf(addr string) string {
	host := addr
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i > 0 {
			host = host[1:i]
		}
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.IndexByte(host, ':') == i {
		host = host[:i] // "ip:port"; more than one colon is IPv6 without a port
	}
	ip, err := netip.ParseAddr(host)
	switch {
	case err != nil:
		return addr
	case ip.Is4() && host == addr:
		return addr // as it is: no copy
	}
	return ip.Unmap().WithZone("").String()
}

// ---- refusals in the log, a burst at a time ----

type kind uint8

const (
	kindSessions kind = iota
	kindPerIP
	kindHandshakes
	kindHead
	numKinds
)

// kindWhat is what each kind of refusal refuses, in the log.
var kindWhat = [numKinds]string{"upgrade", "upgrade", "connection", "request"}

// A burst of refusals ends when none came for burstQuiet; one that goes on
// is summarised every burstReport.
const (
	burstQuiet  = time.Second
	burstReport = 10 * time.Second
	// burstAddrs bounds the addresses a burst's summary counts apart.
	burstAddrs = 1024
)

// burstLog logs the refusals of one kind: the first of a burst at once,
// the others counted and summarised in one line when the burst ends.
type burstLog struct {
	count  Counter // every refusal, for the metrics; nil: none
	label  string  // "max-sessions-per-ip=10"
	what   string  // "upgrade"
	log    func(string)
	bursts *atomic.Int32 // the Limiter's count of open bursts

	mu     sync.Mutex
	active bool
	since  time.Duration // the start of what the next summary covers
	last   time.Duration // the latest refusal
	more   int           // refusals since the line that opened the burst or the last summary
	addrs  map[string]int
	capped bool // more addresses than burstAddrs
}

func (b *burstLog) refused(addr string, now time.Duration) {
	if b.count != nil {
		b.count.Inc()
	}
	b.mu.Lock()
	if !b.active {
		b.active, b.since, b.last, b.more = true, now, now, 0
		b.bursts.Add(1)
		b.mu.Unlock()
		b.log(fmt.Sprintf("limit %s reached: refused %s from %s; further refusals are counted until %v pass without one",
			b.label, article(b.what), addr, burstQuiet))
		return
	}
	b.last = now
	b.more++
	if b.addrs == nil {
		b.addrs = make(map[string]int)
	}
	if _, ok := b.addrs[addr]; ok || len(b.addrs) < burstAddrs {
		b.addrs[addr]++
	} else {
		b.capped = true
	}
	b.mu.Unlock()
}

func (b *burstLog) tick(now time.Duration) {
	b.mu.Lock()
	if !b.active {
		b.mu.Unlock()
		return
	}
	var line string
	switch {
	case now-b.last >= burstQuiet:
		b.active = false
		b.bursts.Add(-1)
		line = b.summary(now)
	case now-b.since >= burstReport:
		line = b.summary(now)
		b.since = now
	}
	b.mu.Unlock()
	if line != "" {
		b.log(line)
	}
}

// end ends the burst now, if one is open.
func (b *burstLog) end(now time.Duration) {
	b.mu.Lock()
	var line string
	if b.active {
		b.active = false
		b.bursts.Add(-1)
		line = b.summary(now)
	}
	b.mu.Unlock()
	if line != "" {
		b.log(line)
	}
}

// summary is the line for the refusals counted since b.since ("" for
// none), which it resets; b.mu is held.
func (b *burstLog) summary(now time.Duration) string {
	if b.more == 0 {
		return ""
	}
	from := ""
	switch {
	case len(b.addrs) == 1:
		for a := range b.addrs {
			from = a
		}
	default:
		top, topN := "", 0
		for a, n := range b.addrs {
			if n > topN || n == topN && a < top {
				top, topN = a, n
			}
		}
		plus := ""
		if b.capped {
			plus = "+"
		}
		from = fmt.Sprintf("%d%s addresses (most from %s: %d)", len(b.addrs), plus, top, topN)
	}
	line := fmt.Sprintf("limit %s: refused %d more %s from %s in the last %.1fs",
		b.label, b.more, plural(b.what, b.more), from, (now - b.since).Seconds())
	b.more, b.addrs, b.capped = 0, nil, false
	return line
}

func article(what string) string {
	if strings.IndexByte("aeiou", what[0]) >= 0 {
		return "an " + what
	}
	return "a " + what
}

func plural(what string, n int) string {
	if n == 1 {
		return what
	}
	return what + "s"
}
