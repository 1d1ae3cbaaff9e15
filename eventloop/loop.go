package eventloop

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gowebsockify/websockify/codec"
	"github.com/gowebsockify/websockify/metrics"
	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// loop is the state shared by the sessions of one event loop. Everything but
// the fields marked otherwise is touched only by that loop's goroutine.
type loop struct {
	srv  *server
	el   gnet.EventLoop
	epfd int // gnet's epoll descriptor for this loop (epoll.go)
	idx  int // in the drain poller's events

	stats *metrics.Loop // its counters for --metrics-listen; nil without

	sessions sessionList // every session of the loop, for shutdown

	firstByte   deadlineQueue[*session] // sessions waiting for their first byte
	requestHead deadlineQueue[*session] // sessions waiting for a complete request head
	heartbeat   deadlineQueue[*session] // relaying sessions due a ping
	flushing    deadlineQueue[*side]    // sides sending what they queued before closing
	lingering   deadlineQueue[*side]    // sides shut down for writing, waiting for EOF
	yielded     deadlineQueue[*side]    // sides that took a whole read on a shared loop

	// Sockets registered in the drain poller, by descriptor (drain.go).
	watched map[int32]*side

	// Filled by the drain poller's goroutine, under readyMu.
	readyMu     sync.Mutex
	readyFDs    []readyFD
	spareFDs    []readyFD
	readyQueued bool

	// Scratch space, one per loop because a loop runs one callback at a
	// time: frames are built in scratch; iov gathers a writev; targetIov
	// gathers the payloads decoded from one client read (smallBytes holds
	// copies of those that do not point into the read); plain receives
	// what TLS decrypts; joined makes a frame contiguous for TLS.
	scratch    []byte
	iov        []unix.Iovec
	targetIov  [][]byte
	smallBytes []byte
	plain      []byte
	joined     []byte

	lastRead    *session // the session that took a whole read last, and when (unix nanos)
	lastReadAt  int64
	sharedUntil int64 // until then, several sessions take whole reads on this loop

	// The loop's timers fire from one runtime timer set to the earliest
	// deadline, so a loop with nothing due is never woken: a thousand
	// stalled sessions cost no CPU at all.
	timer      *time.Timer
	timerAt    int64       // unix nanos it is set for; 0: not set
	tickQueued atomic.Bool // a tick is queued with Execute and has not run yet (any goroutine)
}

func newLoop(s *server, el gnet.EventLoop, epfd int) *loop {
	l := &loop{
		srv:         s,
		el:          el,
		stats:       s.cfg.Metrics.NewLoop(),
		epfd:        epfd,
		firstByte:   deadlineQueue[*session]{d: firstByteTimeout},
		requestHead: deadlineQueue[*session]{d: requestHeadTimeout},
		heartbeat:   deadlineQueue[*session]{d: s.cfg.Heartbeat},
		flushing:    deadlineQueue[*side]{d: flushTimeout},
		lingering:   deadlineQueue[*side]{d: lingerTimeout},
		yielded:     deadlineQueue[*side]{d: yieldFor},
		watched:     make(map[int32]*side),
		iov:         make([]unix.Iovec, 0, iovMax),
		targetIov:   make([][]byte, 0, 64),
		smallBytes:  make([]byte, 0, 64*codec.MaxUnaliasedPayload),
		plain:       make([]byte, readChunk),
	}
	l.timer = time.AfterFunc(time.Hour, func() {
		if !l.tickQueued.Swap(true) {
			_ = l.el.Execute(context.Background(), l)
		}
	})
	l.timer.Stop()
	for _, added := range []*func(int64){&l.firstByte.added, &l.requestHead.added, &l.heartbeat.added, &l.flushing.added, &l.lingering.added, &l.yielded.added} {
		*added = l.wakeAt
	}
	return l
}

// wakeAt makes the loop's tick run at unix nanos at, unless it runs earlier.
func (l *loop) wakeAt(at int64) {
	if l.timerAt != 0 && l.timerAt <= at {
		return
	}
	l.timerAt = at
	l.timer.Reset(time.Duration(at - time.Now().UnixNano()))
}

// scratchFor returns the loop's scratch buffer, grown to at least n bytes.
func (l *loop) scratchFor(n int) []byte {
	if cap(l.scratch) < n {
		l.scratch = make([]byte, n)
	}
	return l.scratch[:n]
}

// alone notes that s took a whole read at now and reports whether no other
// session did so within contendedFor. Only whole reads count: they are
// what makes a loop's turn long, and a lone bulk transfer among
// interactive sessions takes one per round of the loop like every other
// socket.
func (l *loop) alone(s *session, now int64) bool {
	if l.lastRead != s && now-l.lastReadAt < int64(contendedFor) {
		l.sharedUntil = now + int64(contendedFor)
	}
	l.lastRead, l.lastReadAt = s, now
	return now >= l.sharedUntil
}

// join returns bufs as one slice: the one buffer given, or a copy of them
// all in a buffer of the loop's (TLS writes a whole frame as one record).
func (l *loop) join(bufs [][]byte) []byte {
	n, nonEmpty := 0, 0
	for _, b := range bufs {
		if len(b) > 0 {
			n += len(b)
			nonEmpty++
		}
	}
	if nonEmpty <= 1 {
		for _, b := range bufs {
			if len(b) > 0 {
				return b
			}
		}
		return nil
	}
	if cap(l.joined) < n {
		l.joined = make([]byte, 0, n)
	}
	out := l.joined[:0]
	for _, b := range bufs {
		out = append(out, b...)
	}
	return out
}

// Run is the loop's tick, queued by its timer: it fires the timers that are
// due and sets the timer for the next.
func (l *loop) Run(context.Context) error {
	l.tickQueued.Store(false)
	l.timerAt = 0
	now := time.Now().UnixNano()
	l.firstByte.expire(now, (*session).firstByteExpired)
	l.requestHead.expire(now, (*session).requestHeadExpired)
	if l.srv.cfg.Heartbeat > 0 {
		l.heartbeat.expire(now, (*session).heartbeatDue)
	}
	l.flushing.expire(now, (*side).flushExpired)
	l.lingering.expire(now, (*side).lingerExpired)
	l.yielded.expire(now, (*side).yieldExpired)
	for _, at := range [...]int64{l.firstByte.next(), l.requestHead.next(), l.heartbeat.next(), l.flushing.next(), l.lingering.next(), l.yielded.next()} {
		if at != 0 {
			l.wakeAt(at)
		}
	}
	return nil
}

// sessionList is an intrusive list of a loop's sessions.
type sessionList struct {
	head *session
	n    int
}

func (sl *sessionList) add(s *session) {
	s.next = sl.head
	if sl.head != nil {
		sl.head.prev = s
	}
	sl.head = s
	sl.n++
}

func (sl *sessionList) remove(s *session) {
	if s.prev != nil {
		s.prev.next = s.next
	} else if sl.head == s {
		sl.head = s.next
	} else {
		return // not listed
	}
	if s.next != nil {
		s.next.prev = s.prev
	}
	s.prev, s.next = nil, nil
	sl.n--
}
