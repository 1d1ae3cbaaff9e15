package eventloop

import (
	"io"
	"sync"
)

// trafficWriter takes --traffic's symbols from the loops and writes them to
// stdout on a goroutine of its own, so that a terminal or pipe that does not
// keep up never stalls a loop: past trafficBacklog waiting bytes, symbols
// are dropped (they are a rough picture of the flow, not a record).
type trafficWriter struct {
	out     io.Writer
	mu      sync.Mutex
	pending []byte
	spare   []byte
	wake    chan struct{}
}

const trafficBacklog = 1 << 20

// newTrafficWriter starts the writer; it runs for the life of the process.
func newTrafficWriter(out io.Writer) *trafficWriter {
	w := &trafficWriter{out: out, wake: make(chan struct{}, 1)}
	go w.run()
	return w
}

func (w *trafficWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	if len(w.pending)+len(p) <= trafficBacklog {
		w.pending = append(w.pending, p...)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *trafficWriter) run() {
	for range w.wake {
		w.mu.Lock()
		out := w.pending
		w.pending = w.spare[:0]
		w.mu.Unlock()
		if len(out) > 0 {
			_, _ = w.out.Write(out)
		}
		w.mu.Lock()
		w.spare = out[:0]
		w.mu.Unlock()
	}
}
