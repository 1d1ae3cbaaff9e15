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
// loop is ever in flight beyond what is counted here.
//
// A session is admitted with its client's descriptor plus a reserve for
// what it may hold at once before its target is up: the dial's sockets
// (dialReserve), or instead the duplicates of a TLS handshake (two, briefly)
// or a web file (one). Once the target has joined the loop the session holds
// two, client and target, and gives the rest back (session.targetOpened,
// session.finish).
type fdBudget struct {
	limit       int64 // RLIMIT_NOFILE soft limit
	reserve     int64 // baseline fds plus a margin
	dialReserve int64
	inUse       atomic.Int64
	refused     atomic.Uint64 // clients admit turned away (metrics)
}

func newFDBudget(loops int, dialReserve int64) *fdBudget {
	var rl unix.Rlimit
	_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &rl)
	b := &fdBudget{limit: int64(rl.Cur), dialReserve: dialReserve}
	// Baseline: stdio, the Go runtime's poller, each loop's epoll, eventfd and
	// listener, the drain poller's two. Plus one accept in flight per loop,
	// and a margin for transient fds (log files, /proc reads).
	b.reserve = int64(countOpenFDs()) + int64(3*loops) + int64(loops) + 2 + 16
	return b
}

// admit reserves a whole session (client and dial reserve) if it fits and
// returns how much it reserved, or 0.
func (b *fdBudget) admit() int64 {
	want := 1 + b.dialReserve
	n := b.inUse.Add(want)
	if n+b.reserve > b.limit {
		b.inUse.Add(-want)
		b.refused.Add(1)
		return 0
	}
	return want
}

func (b *fdBudget) add(n int64) { b.inUse.Add(n) }

func countOpenFDs() int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 16
	}
	return len(entries)
}
