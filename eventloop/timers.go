package eventloop

import "time"

// deadlineQueue is the timer wheel of one event loop for one fixed duration.
//
// Every timer here has a fixed length (the first-byte wait, the request-head
// wait, the heartbeat period, the flush and linger bounds of a close), so
// timers started later always fire later: a FIFO queue per duration is
// already sorted, and insertion and expiry are O(1) without the buckets of a
// general wheel. Cancelling is lazy: whoever fires checks that the entry
// still applies.
//
// A queue is owned by one loop goroutine; no locks.
type deadlineQueue[T any] struct {
	d     time.Duration
	items []deadline[T]
	head  int
	added func(at int64) // tells the loop when the new entry is due
}

type deadline[T any] struct {
	at int64 // unix nanoseconds
	v  T
}

// add starts a timer for v at now and returns when it is due.
func (q *deadlineQueue[T]) add(now int64, v T) int64 {
	if q.head > 0 && q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	at := now + int64(q.d)
	q.items = append(q.items, deadline[T]{at: at, v: v})
	if q.added != nil {
		q.added(at)
	}
	return at
}

// next is when the oldest entry is due, 0 when there is none.
func (q *deadlineQueue[T]) next() int64 {
	if q.head == len(q.items) {
		return 0
	}
	return q.items[q.head].at
}

// expire calls fire for every entry due at now, oldest first.
func (q *deadlineQueue[T]) expire(now int64, fire func(T, int64)) {
	var zero T
	for q.head < len(q.items) && q.items[q.head].at <= now {
		d := q.items[q.head]
		q.items[q.head].v = zero // let it be collected
		q.head++
		fire(d.v, d.at)
	}
	// Compact once the dead prefix dominates, so the slice does not grow
	// for ever under a steady stream of timers.
	if q.head > 1024 && q.head*2 > len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
}
