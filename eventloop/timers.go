package eventloop

import "time"

// deadlineQueue is the timer wheel of one event loop for one fixed duration.
//
// Every per-session timer here has a fixed length (the first-byte wait, the
// request-head wait, the heartbeat period), so timers started later always
// fire later: a FIFO queue per duration is already sorted, and insertion and
// expiry are O(1) without the buckets of a general wheel. Cancelling is lazy:
// an entry whose session has moved on is skipped when it comes due.
//
// A queue is owned by one loop goroutine; no locks.
type deadlineQueue struct {
	d     time.Duration
	items []deadline
	head  int
}

type deadline struct {
	at int64 // unix nanoseconds
	s  *session
}

func (q *deadlineQueue) add(now int64, s *session) {
	if q.head > 0 && q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	q.items = append(q.items, deadline{at: now + int64(q.d), s: s})
}

// expire calls fire for every entry due at now, oldest first.
func (q *deadlineQueue) expire(now int64, fire func(*session)) {
	for q.head < len(q.items) && q.items[q.head].at <= now {
		s := q.items[q.head].s
		q.items[q.head].s = nil // let the session be collected
		q.head++
		fire(s)
	}
	// Compact once the dead prefix dominates, so the slice does not grow
	// for ever under a steady stream of timers.
	if q.head > 1024 && q.head*2 > len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
}
