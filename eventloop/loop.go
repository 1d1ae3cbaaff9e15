package eventloop

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/gowebsockify/websockify/codec"
	"github.com/panjf2000/gnet/v2"
)

// loop is the state shared by the sessions of one event loop. Everything but
// the two atomics is touched only by that loop's goroutine.
type loop struct {
	srv  *Server
	el   gnet.EventLoop
	epfd int

	firstByte   deadlineQueue // sessions waiting for their first byte
	requestHead deadlineQueue // sessions waiting for a complete request head
	heartbeat   deadlineQueue // proxied sessions due a ping

	// waiting holds sessions that need the fast tick: a side paused until
	// its peer drains, or a side to close once its output is flushed.
	waiting []*session

	// scratch is where base64 and Hixie frames are built; one per loop is
	// enough because a loop runs one callback at a time.
	scratch []byte
	iov     [2][]byte // header and payload of a binary frame, for Writev

	// targetIov gathers the payload chunks decoded from one client read;
	// smallBytes holds copies of the chunks that do not point into the read.
	targetIov  [][]byte
	smallBytes []byte

	tickQueued    atomic.Bool // a tick is queued with Execute and has not run yet
	wantsFastTick atomic.Bool // waiting is not empty
}

func newLoop(s *Server, el gnet.EventLoop, epfd int) *loop {
	return &loop{
		srv:         s,
		el:          el,
		epfd:        epfd,
		firstByte:   deadlineQueue{d: firstByteTimeout},
		requestHead: deadlineQueue{d: requestHeadTimeout},
		heartbeat:   deadlineQueue{d: s.cfg.Heartbeat},
		targetIov:   make([][]byte, 0, 64),
		smallBytes:  make([]byte, 0, 64*codec.MaxUnaliasedPayload),
	}
}

// scratchFor returns the loop's scratch buffer, grown to at least n bytes.
func (l *loop) scratchFor(n int) []byte {
	if cap(l.scratch) < n {
		l.scratch = make([]byte, n)
	}
	return l.scratch[:n]
}

// wait puts s on the fast-tick list (once).
func (l *loop) wait(s *session) {
	if s.waiting {
		return
	}
	s.waiting = true
	l.waiting = append(l.waiting, s)
	if !l.wantsFastTick.Swap(true) {
		l.srv.kickTicker()
	}
}

// Run is the loop's tick, queued by Server.runTicker; it runs on the loop.
func (l *loop) Run(context.Context) error {
	l.tickQueued.Store(false)
	now := time.Now().UnixNano()
	l.firstByte.expire(now, (*session).firstByteExpired)
	l.requestHead.expire(now, (*session).requestHeadExpired)
	if l.srv.cfg.Heartbeat > 0 {
		l.heartbeat.expire(now, (*session).heartbeatDue)
	}
	if len(l.waiting) > 0 {
		kept := l.waiting[:0]
		for _, s := range l.waiting {
			if s.poll(now) {
				kept = append(kept, s)
			} else {
				s.waiting = false
			}
		}
		clear(l.waiting[len(kept):])
		l.waiting = kept
		l.wantsFastTick.Store(len(kept) > 0)
	}
	return nil
}
