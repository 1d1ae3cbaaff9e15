package eventloop

import (
	"context"
	"sort"
	"time"

	"github.com/gowebsockify/websockify/metrics"
	"github.com/panjf2000/gnet/v2"
)

// metricsView is what the server shows package metrics at scrape time
// (Config.Metrics); the counting itself is each loop's (loop.stats).
type metricsView struct{ s *server }

// ProbeLoops queues a no-op on every loop and times how long each waits to
// run: a loop's lag, as a scrape sees it. The no-op also counts the loop's
// paused reads, which only the loop may look at. Nothing here blocks a
// loop: answers go to a channel with room for all of them.
func (v metricsView) ProbeLoops(ctx context.Context) []metrics.LoopProbe {
	v.s.loopsMu.Lock()
	loops := make([]*loop, 0, len(v.s.loops))
	for _, l := range v.s.loops {
		loops = append(loops, l)
	}
	v.s.loopsMu.Unlock()
	sort.Slice(loops, func(i, j int) bool { return loops[i].idx < loops[j].idx })

	answers := make(chan metrics.LoopProbe, len(loops))
	sent := make([]time.Time, len(loops))
	asked := 0
	for i, l := range loops {
		sent[i] = time.Now()
		at := sent[i]
		probe := gnet.RunnableFunc(func(context.Context) error {
			answers <- metrics.LoopProbe{Loop: l.idx, Lag: time.Since(at), Paused: l.pausedReads(), Answered: true}
			return nil
		})
		if l.el.Execute(ctx, probe) == nil {
			asked++
		} else {
			sent[i] = time.Time{} // stopping: no answer will come
		}
	}
	probes := make([]metrics.LoopProbe, 0, len(loops))
	answered := make(map[int]bool, len(loops))
wait:
	for len(probes) < asked {
		select {
		case p := <-answers:
			probes = append(probes, p)
			answered[p.Loop] = true
		case <-ctx.Done():
			break wait // the loops that did not answer are reported as they stand
		}
	}
	for i, l := range loops {
		if !answered[l.idx] && !sent[i].IsZero() {
			probes = append(probes, metrics.LoopProbe{Loop: l.idx, Lag: time.Since(sent[i])})
		}
	}
	sort.Slice(probes, func(i, j int) bool { return probes[i].Loop < probes[j].Loop })
	return probes
}

// FDBudget reports the open-file budget (fdbudget.go).
func (v metricsView) FDBudget() metrics.FDBudget {
	b := v.s.budget
	return metrics.FDBudget{InUse: b.inUse.Load(), Limit: b.limit - b.reserve, Refusals: b.refused.Load()}
}

// pausedReads counts the loop's sockets whose peer is not read because they
// cannot take more: those the drain poller watches for room.
func (l *loop) pausedReads() int {
	n := 0
	for _, sd := range l.watched {
		if sd.blocked || sd.wantRoom > 0 {
			n++
		}
	}
	return n
}

// countToTarget counts the payload bytes of one write to a target.
func countToTarget(st *metrics.Loop, iov [][]byte) {
	if st == nil {
		return
	}
	n := 0
	for _, b := range iov {
		n += len(b)
	}
	st.ToTarget(n)
}
