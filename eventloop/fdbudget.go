package eventloop

import (
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// fdBudget keeps the process under RLIMIT_NOFILE.
//
// gnet v2.9.7 shuts its whole engine down, dropping every session, when
// accept fails with EMFILE. In ReusePort mode each loop accepts one
// connection per wakeup and calls OnOpen synchronously, so refusing a client
// in OnOpen frees its fd before that loop accepts again: at most one fd per
// loop is ever in flight beyond what is counted here. The count must include
// dials in progress, which briefly hold three fds per session (client, the
// dialed socket, and gnet's dup of it made by Enroll).
type fdBudget struct {
	limit   int64 // RLIMIT_NOFILE soft limit
	reserve int64 // baseline fds plus a margin
	inUse   atomic.Int64
}

// fdsPerDial is what a dial in progress holds beyond the client's own fd.
// It is reserved when the client is admitted, so that a burst of admitted
// clients cannot all dial at once past the limit.
const fdsPerDial = 2

func newFDBudget(loops int) *fdBudget {
	var rl unix.Rlimit
	_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &rl)
	b := &fdBudget{limit: int64(rl.Cur)}
	// Baseline: stdio, the Go runtime's poller, each loop's epoll, eventfd and
	// listener. Plus one accept in flight per loop, and a margin for
	// transient fds (log files, /proc reads, the resolver).
	b.reserve = int64(countOpenFDs()) + int64(3*loops) + int64(loops) + 16
	return b
}

// admit reserves a whole session (client, dialed socket, target dup) if it
// fits. The session gives back what it does not use: see session.startDial
// and session.clientClosed.
func (b *fdBudget) admit() bool {
	n := b.inUse.Add(1 + fdsPerDial)
	if n+b.reserve > b.limit {
		b.inUse.Add(-1 - fdsPerDial)
		return false
	}
	return true
}

func (b *fdBudget) add(n int64) { b.inUse.Add(n) }

func countOpenFDs() int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 16
	}
	return len(entries)
}
