package eventloop

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// outQueue holds bytes accepted for a socket that the kernel has not taken
// yet, in pooled chunks: an idle socket's queue holds none, so it costs a
// few words.
//
// gnet's own outbound buffer is never used. When gnet drains it, it turns
// reading back on (its eventloop_unix.go), undoing our pauses one read at a
// time, which let a paused session's backlog creep up to any cap; with our
// own queue gnet never touches a socket's epoll registration after
// accepting it, and pausing is exact.
type outQueue struct {
	chunks []*outChunk
	off    int // bytes of chunks[0] already written
	n      int // bytes queued
}

const outChunkSize = 16 << 10

type outChunk struct {
	b   [outChunkSize]byte
	end int
}

var outChunks = sync.Pool{New: func() any { return new(outChunk) }}

func (q *outQueue) len() int { return q.n }

// add copies p to the end of the queue.
func (q *outQueue) add(p []byte) {
	for len(p) > 0 {
		var c *outChunk
		if k := len(q.chunks); k > 0 && q.chunks[k-1].end < outChunkSize {
			c = q.chunks[k-1]
		} else {
			c = outChunks.Get().(*outChunk)
			c.end = 0
			q.chunks = append(q.chunks, c)
		}
		m := copy(c.b[c.end:], p)
		c.end += m
		q.n += m
		p = p[m:]
	}
}

// iovecs appends the queued bytes to iov, at most max entries.
func (q *outQueue) iovecs(iov []unix.Iovec, max int) []unix.Iovec {
	for i, c := range q.chunks {
		if len(iov) == max {
			break
		}
		start := 0
		if i == 0 {
			start = q.off
		}
		iov = appendIovec(iov, c.b[start:c.end])
	}
	return iov
}

// discard drops the first n queued bytes (they were written), returning
// emptied chunks to the pool.
func (q *outQueue) discard(n int) {
	q.n -= n
	for n > 0 {
		c := q.chunks[0]
		m := min(n, c.end-q.off)
		q.off += m
		n -= m
		if q.off == c.end {
			outChunks.Put(c)
			q.chunks[0] = nil
			q.chunks = q.chunks[1:]
			q.off = 0
		}
	}
	if len(q.chunks) == 0 {
		q.chunks = nil // an idle socket keeps no slice
	}
}

// reset drops everything queued.
func (q *outQueue) reset() {
	for _, c := range q.chunks {
		outChunks.Put(c)
	}
	*q = outQueue{}
}

// appendIovec adds p to iov unless it is empty.
func appendIovec(iov []unix.Iovec, p []byte) []unix.Iovec {
	if len(p) == 0 {
		return iov
	}
	v := unix.Iovec{Base: &p[0]}
	v.SetLen(len(p))
	return append(iov, v)
}

// iovMax is the most iovecs one writev takes on Linux.
const iovMax = 1024

// writev writes iov to fd with one system call, without the allocations of
// unix.Writev.
func writev(fd int, iov []unix.Iovec) (int, error) {
	if len(iov) == 0 {
		return 0, nil
	}
	n, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
