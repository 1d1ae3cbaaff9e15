// Package record owns --record FILE: for each upgraded connection it writes
// FILE.N, a JavaScript file that noVNC's playback page loads, in Python
// websockify 0.13's format: "var VNC_frame_data = [", one line per chunk
// ('{MS{DATA', to the client, '}MS}DATA', from it, MS being milliseconds
// since the upgrade), and 'EOF'];.
//
// The callers are event loops, which must never block. So a caller only
// escapes a chunk into its session's pending buffer; one writer goroutine
// per Recorder opens, writes and closes the files. What a session has
// waiting for the disk is bounded: past the bound its recording stops, and
// the file is finished so that it still loads.
package record

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
)

// SessionPendingLimit is the most escaped bytes a session may have waiting
// for the disk (queued plus being written). A read of the event loops
// (256 KiB) escapes to at most 1 MiB, so a few of those fit while the
// writer is busy elsewhere; past it the disk is not keeping up.
const SessionPendingLimit = 4 << 20

// A Recorder writes the recordings of one --record FILE. It is safe for
// concurrent use.
type Recorder struct {
	base         string
	log          func(msg string)
	pendingLimit int
	// beforeWrite, when set (by tests, before the writer starts), runs on
	// the writer before each write to a session's file.
	beforeWrite func(s *Session)

	mu sync.Mutex
	// wake is signalled when ready gains a session or closing is set.
	wake sync.Cond
	// ready holds the sessions with something for the writer, each once
	// (Session.queued).
	ready   []*Session
	closing bool
	// exited: the writer has finished every file and is gone.
	exited bool

	// The writer's own.
	batch []*Session
	open  map[*Session]struct{}

	done      chan struct{}
	closeOnce sync.Once
}

// NewRecorder starts the writer of the recordings FILE.N, base being FILE
// as an absolute path. log receives one line per recording that fails or
// stops early; it is called from the writer goroutine only, and may be nil.
func NewRecorder(base string, log func(msg string)) *Recorder {
	return newRecorder(base, log, SessionPendingLimit, nil)
}

func newRecorder(base string, log func(string), pendingLimit int, beforeWrite func(*Session)) *Recorder {
	if log == nil {
		log = func(string) {}
	}
	r := &Recorder{
		base:         base,
		log:          log,
		pendingLimit: pendingLimit,
		beforeWrite:  beforeWrite,
		open:         make(map[*Session]struct{}),
		done:         make(chan struct{}),
	}
	r.wake.L = &r.mu
	go r.run()
	return r
}

// Path is the file of session n, FILE.N.
func (r *Recorder) Path(n uint64) string {
	return r.base + "." + strconv.FormatUint(n, 10)
}

// Open starts the recording of session n. The file is created on the
// writer, not here; if that fails, the writer logs it and the session's
// calls become no-ops. After Close, Open returns a session that records
// nothing.
func (r *Recorder) Open(n uint64) *Session {
	s := &Session{r: r, n: n}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		s.stopped.Store(true)
		return s
	}
	s.queued = true // so that the writer creates the file now, as Python does at the upgrade
	r.ready = append(r.ready, s)
	r.wake.Signal()
	return s
}

// Close waits until everything queued is written, finishes the files of
// sessions still open with 'EOF']; and stops the writer. Later calls on
// sessions are no-ops.
func (r *Recorder) Close() {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closing = true
		r.wake.Signal()
		r.mu.Unlock()
	})
	<-r.done
}

func (r *Recorder) enqueue(s *Session) {
	r.mu.Lock()
	if !r.exited {
		r.ready = append(r.ready, s)
		r.wake.Signal()
	}
	r.mu.Unlock()
}

// A Session is the recording of one connection. Its methods never block on
// the disk and are safe for concurrent use; on a nil *Session they do
// nothing, so a caller without --record can hold nil.
type Session struct {
	r *Recorder
	n uint64
	// stopped: no more chunks are taken. Read without mu so that a
	// stopped session costs its caller only this load.
	stopped atomic.Bool

	mu sync.Mutex
	// pending holds whole lines not yet handed to the writer; spare is
	// the buffer the writer gave back, which pending becomes next, so
	// that the two are reused rather than reallocated.
	pending, spare []byte
	// inFlight is how much the writer took and has not written yet.
	inFlight   int
	queued     bool
	closeAsked bool
	// overflowed: a chunk did not fit in the bound; chunkSize is the
	// size of its line and held what was waiting then, for the log line.
	overflowed      bool
	chunkSize, held int

	// The writer's own.
	file     *os.File
	finished bool // the file is closed or was never created
}

// ToClient records p, bytes that go to the client (what the target sent,
// before framing), ms milliseconds after the upgrade. p is not kept.
func (s *Session) ToClient(ms int64, p []byte) { s.add(toClientMark, ms, p) }

// FromClient records p, bytes from the client (decoded payload, what goes
// to the target), ms milliseconds after the upgrade. p is not kept.
func (s *Session) FromClient(ms int64, p []byte) { s.add(fromClientMark, ms, p) }

func (s *Session) add(mark byte, ms int64, p []byte) {
	if s == nil || s.stopped.Load() {
		return
	}
	s.mu.Lock()
	if s.stopped.Load() {
		s.mu.Unlock()
		return
	}
	limit := s.r.pendingLimit
	held := len(s.pending) + s.inFlight
	// Sizing the line exactly takes a pass over p; the bound of four
	// bytes a byte does not, and settles most calls.
	size := lineSizeAtMost(ms, p)
	if held+size > limit || cap(s.pending)-len(s.pending) < size {
		size = lineSize(ms, p)
	}
	if held+size > limit {
		// Dropping only this chunk would leave a recording with a hole
		// that plays back as garbage; end it here instead. What waits
		// is dropped too when the disk is behind, so that the memory
		// goes now and the file is finished soon; a chunk too big for
		// any disk leaves it to be written.
		s.stopped.Store(true)
		s.overflowed, s.chunkSize, s.held = true, size, held
		if size <= limit {
			s.pending = nil
		}
		s.queueLocked()
		return
	}
	if cap(s.pending)-len(s.pending) < size {
		// Grow by doubling, never past the bound, so that the memory
		// of a session is bounded too: at most two buffers (pending
		// and the one being written) of at most pendingLimit each.
		grown := min(max(2*cap(s.pending), len(s.pending)+size, 4<<10), limit)
		s.pending = append(make([]byte, 0, grown), s.pending...)
	}
	s.pending = appendLine(s.pending, mark, ms, p)
	s.queueLocked()
}

// queueLocked hands s to the writer unless it is already waiting there,
// and unlocks s.mu.
func (s *Session) queueLocked() {
	queue := !s.queued
	s.queued = true
	s.mu.Unlock()
	if queue {
		s.r.enqueue(s)
	}
}

// Close ends the recording: what is pending is written, then 'EOF'];, and
// the file is closed, all on the writer.
func (s *Session) Close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.closeAsked {
		s.mu.Unlock()
		return
	}
	s.closeAsked = true
	s.stopped.Store(true)
	s.queueLocked()
}

// run is the writer.
func (r *Recorder) run() {
	defer close(r.done)
	for {
		r.mu.Lock()
		for len(r.ready) == 0 && !r.closing {
			r.wake.Wait()
		}
		if len(r.ready) == 0 {
			r.exited = true
			r.mu.Unlock()
			r.finishAll()
			return
		}
		batch := r.ready
		r.ready = r.batch[:0]
		r.mu.Unlock()
		for i, s := range batch {
			r.service(s)
			batch[i] = nil
		}
		r.batch = batch[:0]
	}
}

// service does what session s has waiting: create its file, write its
// lines, finish it.
func (r *Recorder) service(s *Session) {
	s.mu.Lock()
	s.queued = false
	lines := s.pending
	s.pending, s.spare = s.spare[:0], nil
	s.inFlight = len(lines)
	closeAsked, overflowed := s.closeAsked, s.overflowed
	chunkSize, held := s.chunkSize, s.held
	s.mu.Unlock()

	if s.finished {
		return
	}
	if s.file == nil && !r.create(s) {
		return
	}
	if err := r.write(s, lines); err != nil {
		r.abandon(s, fmt.Sprintf("recording to %s stopped: %v", r.Path(s.n), unwrapPath(err)))
		return
	}
	s.mu.Lock()
	s.inFlight = 0
	s.spare = lines[:0]
	s.mu.Unlock()

	switch {
	case overflowed:
		var why string
		if chunkSize > r.pendingLimit {
			why = fmt.Sprintf("a chunk escaped to %d bytes, more than the %d a recording may have waiting", chunkSize, r.pendingLimit)
		} else {
			why = fmt.Sprintf("the disk could not keep up (%d bytes waiting, limit %d)", held, r.pendingLimit)
		}
		msg := fmt.Sprintf("recording to %s stopped: %s; the file ends there", r.Path(s.n), why)
		if err := r.finish(s); err != nil {
			msg += fmt.Sprintf("; finishing it failed: %v", unwrapPath(err))
		}
		r.log(msg)
	case closeAsked:
		if err := r.finish(s); err != nil {
			r.log(fmt.Sprintf("recording to %s: finishing it failed: %v", r.Path(s.n), unwrapPath(err)))
		}
	}
}

// create creates s's file and writes its first line. On failure it logs
// and gives up on s.
func (r *Recorder) create(s *Session) bool {
	path := r.Path(s.n)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		r.abandon(s, fmt.Sprintf("recording to %s failed: %v", path, unwrapPath(err)))
		return false
	}
	s.file = f
	r.open[s] = struct{}{}
	if err := r.write(s, []byte(fileHeader)); err != nil {
		r.abandon(s, fmt.Sprintf("recording to %s stopped: %v", path, unwrapPath(err)))
		return false
	}
	return true
}

func (r *Recorder) write(s *Session, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if r.beforeWrite != nil {
		r.beforeWrite(s)
	}
	_, err := s.file.Write(p)
	return err
}

// finish writes the last line, closes s's file and lets go of s.
func (r *Recorder) finish(s *Session) error {
	err := r.write(s, []byte(fileTrailer))
	if cerr := s.file.Close(); err == nil {
		err = cerr
	}
	r.release(s)
	return err
}

// abandon gives up on s after an error: one log line, the file closed as
// it is, later calls no-ops.
func (r *Recorder) abandon(s *Session, msg string) {
	r.log(msg)
	if s.file != nil {
		s.file.Close()
	}
	r.release(s)
}

func (r *Recorder) release(s *Session) {
	s.finished = true
	s.file = nil
	delete(r.open, s)
	s.mu.Lock()
	s.stopped.Store(true)
	s.pending, s.spare, s.inFlight = nil, nil, 0
	s.mu.Unlock()
}

// finishAll ends, at Close, the recordings whose sessions are still open:
// their last lines are written and the files finished so that they load.
func (r *Recorder) finishAll() {
	for s := range r.open {
		s.mu.Lock()
		s.stopped.Store(true)
		lines := s.pending
		s.pending = nil
		s.mu.Unlock()
		if err := r.write(s, lines); err != nil {
			r.abandon(s, fmt.Sprintf("recording to %s stopped: %v", r.Path(s.n), unwrapPath(err)))
			continue
		}
		if err := r.finish(s); err != nil {
			r.log(fmt.Sprintf("recording to %s: finishing it failed: %v", r.Path(s.n), unwrapPath(err)))
		}
	}
}

// unwrapPath drops the path from an *os.PathError: the log lines name the
// file once themselves.
func unwrapPath(err error) error {
	if pe, ok := errors.AsType[*os.PathError](err); ok {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}
