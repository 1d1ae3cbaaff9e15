package record

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const node = "/usr/bin/node"

// nodeLoader evaluates a recording as the playback page does (as a
// script defining VNC_frame_data) and decodes each entry as it does: the
// first character is the direction, the timestamp runs to the next one,
// the rest is a binary string whose char codes are the bytes.
const nodeLoader = `
const fs = require('fs');
const vm = require('vm');
const load = (path) => {
    const context = {};
    vm.runInNewContext(fs.readFileSync(path, 'utf8'), context);
    const frames = context.VNC_frame_data;
    if (!Array.isArray(frames)) throw new Error(path + ': VNC_frame_data is not an array');
    return frames.map((frame) => {
        if (frame === 'EOF') return {eof: true};
        const mark = frame[0];
        if (mark !== '{' && mark !== '}') throw new Error(path + ': bad direction ' + mark);
        const dataIdx = frame.indexOf(mark, 1) + 1;
        const bytes = [];
        for (let j = dataIdx; j < frame.length; j++) {
            const c = frame.charCodeAt(j);
            if (c > 255) throw new Error(path + ': char code ' + c);
            bytes.push(c);
        }
        return {mark: mark, ms: parseInt(frame.slice(1, dataIdx - 1), 10),
                data: Buffer.from(bytes).toString('base64')};
    });
};
process.stdout.write(JSON.stringify(process.argv.slice(1).map(load)));
`

type frame struct {
	EOF  bool   `json:"eof"`
	Mark string `json:"mark"`
	MS   int64  `json:"ms"`
	Data []byte `json:"data"` // base64 in the JSON
}

// loadWithNode gives the entries of each recording, loaded by node.
func loadWithNode(t *testing.T, paths ...string) [][]frame {
	t.Helper()
	if _, err := exec.LookPath(node); err != nil {
		t.Skipf("no %s: %v", node, err)
	}
	out, err := exec.Command(node, append([]string{"-e", nodeLoader}, paths...)...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("node could not load %s: %v\n%s", paths, err, stderr)
	}
	var recordings [][]frame
	if err := json.Unmarshal(out, &recordings); err != nil {
		t.Fatalf("node's output: %v", err)
	}
	return recordings
}

// fed is a chunk as given to a session.
type fed struct {
	mark byte
	ms   int64
	data []byte
}

// checkRecording loads path with node and compares it with want, which
// must be followed by 'EOF' and nothing else.
func checkRecording(t *testing.T, path string, want []fed) {
	t.Helper()
	got := loadWithNode(t, path)[0]
	if len(got) != len(want)+1 {
		t.Fatalf("%s: %d entries, want %d chunks and 'EOF'", path, len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.EOF || g.Mark != string(w.mark) || g.MS != w.ms || !bytes.Equal(g.Data, w.data) {
			t.Fatalf("%s: entry %d is %+v, fed %q at %d ms: %x", path, i, g, w.mark, w.ms, w.data)
		}
	}
	if !got[len(want)].EOF {
		t.Fatalf("%s: last entry is %+v, not 'EOF'", path, got[len(want)])
	}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(text, []byte(fileHeader)) || !bytes.HasSuffix(text, []byte(fileTrailer)) {
		t.Fatalf("%s does not start with %q and end with %q", path, fileHeader, fileTrailer)
	}
}

// logLines collects what a Recorder logs.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) log(msg string) {
	l.mu.Lock()
	l.lines = append(l.lines, msg)
	l.mu.Unlock()
}

func (l *logLines) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// feed gives s the chunk and clobbers the caller's buffer afterwards, as
// an event loop reuses it, and remembers what was fed in *into.
func feed(s *Session, into *[]fed, mark byte, ms int64, p []byte) {
	kept := bytes.Clone(p)
	if mark == toClientMark {
		s.ToClient(ms, p)
	} else {
		s.FromClient(ms, p)
	}
	for i := range p {
		p[i] = 0xa5
	}
	*into = append(*into, fed{mark, ms, kept})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRandomSessionLoadsInNodeAsFed(t *testing.T) {
	var logs logLines
	r := NewRecorder(filepath.Join(t.TempDir(), "rec"), logs.log)
	s := r.Open(7)
	rng := rand.New(rand.NewPCG(5, 6))
	var want []fed
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	feed(s, &want, toClientMark, 0, all)
	ms := int64(0)
	for range 400 {
		ms += int64(rng.IntN(3)) * int64(rng.IntN(50))
		mark := byte(toClientMark)
		if rng.IntN(2) == 0 {
			mark = fromClientMark
		}
		n := rng.IntN(300)
		if rng.IntN(20) == 0 {
			n = rng.IntN(64 << 10)
		}
		feed(s, &want, mark, ms, randomChunk(rng, n))
	}
	s.Close()
	s.ToClient(ms, []byte("after Close")) // not recorded
	r.Close()
	checkRecording(t, r.Path(7), want)
	if l := logs.get(); len(l) != 0 {
		t.Errorf("logged %q", l)
	}
}

// stallableWriter makes a Recorder whose writer, while stall is set,
// blocks before writing to the file of session n until release is
// closed; stalled is closed when it first does.
type stallableWriter struct {
	n           uint64
	stall       atomic.Bool
	stalled     chan struct{}
	release     chan struct{}
	stalledOnce sync.Once
	releaseOnce sync.Once
}

func (w *stallableWriter) hasStalled() bool {
	select {
	case <-w.stalled:
		return true
	default:
		return false
	}
}

// unstall lets the writer go on; again is harmless, so that a test's
// cleanup can make sure of it after a failure.
func (w *stallableWriter) unstall() {
	w.releaseOnce.Do(func() { close(w.release) })
}

func newStallableWriter(n uint64) *stallableWriter {
	return &stallableWriter{n: n, stalled: make(chan struct{}), release: make(chan struct{})}
}

func (w *stallableWriter) beforeWrite(s *Session) {
	if s.n == w.n && w.stall.Load() {
		w.stalledOnce.Do(func() { close(w.stalled) })
		<-w.release
	}
}

func fileHas(path, s string) func() bool {
	return func() bool {
		b, _ := os.ReadFile(path)
		return bytes.Contains(b, []byte(s))
	}
}

func TestDiskThatCannotKeepUpStopsOnlyThatSession(t *testing.T) {
	var logs logLines
	const limit = 64 << 10
	stuck := newStallableWriter(1)
	r := newRecorder(filepath.Join(t.TempDir(), "rec"), logs.log, limit, stuck.beforeWrite)
	t.Cleanup(func() { stuck.unstall(); r.Close() })

	slow := r.Open(1)
	var slowWant []fed
	feed(slow, &slowWant, toClientMark, 0, []byte("RFB 003.008\n"))
	waitFor(t, "the first line on disk", fileHas(r.Path(1), "RFB"))

	stuck.stall.Store(true)
	feed(slow, &slowWant, fromClientMark, 1, []byte("RFB 003.008\n"))
	waitFor(t, "the writer to stall", stuck.hasStalled) // holding that line

	// More than the bound arrives while the disk is stuck.
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 1<<10)
	for i := range limit/len(chunk) + 2 {
		slow.ToClient(int64(2+i), chunk)
	}
	if !slow.stopped.Load() {
		t.Fatal("the session still records past its bound")
	}
	slow.mu.Lock()
	held := len(slow.pending) + cap(slow.pending)
	slow.mu.Unlock()
	if held != 0 {
		t.Errorf("the stopped session still holds %d bytes of pending buffer", held)
	}

	// Another session records meanwhile, and after.
	other := r.Open(2)
	var otherWant []fed
	feed(other, &otherWant, toClientMark, 0, []byte("other"))
	stuck.unstall()
	waitFor(t, "the log line", func() bool { return len(logs.get()) > 0 })
	for i := range 30 { // within the bound, however slow the writer
		feed(other, &otherWant, fromClientMark, int64(i), bytes.Repeat([]byte{byte(i)}, 500))
	}
	slow.ToClient(99, []byte("no more"))
	slow.Close()
	other.Close()
	r.Close()

	checkRecording(t, r.Path(1), slowWant)
	checkRecording(t, r.Path(2), otherWant)
	l := logs.get()
	if len(l) != 1 || !strings.Contains(l[0], r.Path(1)) || !strings.Contains(l[0], "disk could not keep up") {
		t.Errorf("logged %q, want one line saying the recording of %s stopped as the disk could not keep up", l, r.Path(1))
	}
}

func TestChunkLargerThanTheBoundStopsTheRecordingSayingSo(t *testing.T) {
	var logs logLines
	r := newRecorder(filepath.Join(t.TempDir(), "rec"), logs.log, 1<<10, nil)
	s := r.Open(1)
	var want []fed
	feed(s, &want, toClientMark, 0, []byte("small"))
	s.ToClient(1, make([]byte, 1<<10))
	s.Close()
	r.Close()
	checkRecording(t, r.Path(1), want)
	l := logs.get()
	if len(l) != 1 || !strings.Contains(l[0], r.Path(1)) || !strings.Contains(l[0], "a chunk escaped to") {
		t.Errorf("logged %q, want one line about the chunk", l)
	}
}

func TestCallersAreNotBlockedByAStuckWriter(t *testing.T) {
	var logs logLines
	stuck := newStallableWriter(1)
	stuck.stall.Store(true)
	r := newRecorder(filepath.Join(t.TempDir(), "rec"), logs.log, 256<<10, stuck.beforeWrite)
	t.Cleanup(func() { stuck.unstall(); r.Close() })
	first := r.Open(1)
	waitFor(t, "the writer to stall", stuck.hasStalled) // on the first line of file 1

	done := make(chan time.Duration)
	go func() {
		var slowest time.Duration
		timed := func(f func()) {
			start := time.Now()
			f()
			slowest = max(slowest, time.Since(start))
		}
		chunk := make([]byte, 32<<10)
		var sessions []*Session
		for n := range uint64(50) {
			var s *Session
			timed(func() { s = r.Open(n + 2) })
			sessions = append(sessions, s)
		}
		// Through the bound and past it, on the stuck session and on
		// others, which wait behind it on the one writer.
		for i := range 40 {
			for _, s := range append(sessions[:3:3], first) {
				timed(func() { s.ToClient(int64(i), chunk) })
				timed(func() { s.FromClient(int64(i), chunk[:100]) })
			}
		}
		for _, s := range append(sessions, first) {
			timed(s.Close)
		}
		done <- slowest
	}()
	select {
	case slowest := <-done:
		// Generous: a call that waited on the writer would never return.
		if slowest > time.Second {
			t.Errorf("a call took %v while the writer was stuck", slowest)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("calls did not return while the writer was stuck")
	}
	stuck.unstall()
	r.Close()
	// Every file still loads, however far its recording got.
	var paths []string
	for n := range uint64(51) {
		paths = append(paths, r.Path(n+1))
	}
	for i, frames := range loadWithNode(t, paths...) {
		if len(frames) == 0 || !frames[len(frames)-1].EOF {
			t.Errorf("%s does not end with 'EOF': %+v", paths[i], frames)
		}
	}
}

func TestUnwritablePathLogsOnceAndCostsNothingElse(t *testing.T) {
	var logs logLines
	base := filepath.Join(t.TempDir(), "missing", "rec")
	r := NewRecorder(base, logs.log)
	s := r.Open(3)
	waitFor(t, "the session to give up", s.stopped.Load)

	chunk := bytes.Repeat([]byte{0xff}, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		s.ToClient(1, chunk)
		s.FromClient(1, chunk)
	})
	if allocs != 0 {
		t.Errorf("%v allocations a call pair on a failed session", allocs)
	}
	s.mu.Lock()
	held, queued := cap(s.pending)+cap(s.spare), s.queued
	s.mu.Unlock()
	if held != 0 || queued {
		t.Errorf("a failed session holds %d bytes, queued %v", held, queued)
	}
	s.Close()
	r.Close()

	l := logs.get()
	if len(l) != 1 || !strings.Contains(l[0], r.Path(3)) || !strings.Contains(l[0], "no such file") {
		t.Errorf("logged %q, want one line with the path and the error", l)
	}
	if _, err := os.Stat(filepath.Dir(base)); !os.IsNotExist(err) {
		t.Errorf("the missing directory: %v", err)
	}
}

// waitDrained waits, without allocating, until the writer has written
// all that s has waiting.
func waitDrained(s *Session) {
	for {
		s.mu.Lock()
		behind := len(s.pending) + s.inFlight
		s.mu.Unlock()
		if behind == 0 {
			return
		}
		runtime.Gosched()
	}
}

func TestSteadyStateCallsDoNotAllocate(t *testing.T) {
	r := NewRecorder(filepath.Join(t.TempDir(), "rec"), func(msg string) { t.Error(msg) })
	defer r.Close()
	s := r.Open(1)
	defer s.Close()
	chunk := make([]byte, 1500)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	call := func() {
		s.ToClient(1234, chunk)
		s.FromClient(1234, chunk[:60])
		// Let the writer catch up, as a disk does in the steady state:
		// a loop of calls outpaces any.
		waitDrained(s)
	}
	for range 100 { // grow the buffers
		call()
	}
	if allocs := testing.AllocsPerRun(1000, call); allocs != 0 {
		t.Errorf("%v allocations per call pair", allocs)
	}
	if s.stopped.Load() {
		t.Error("the recording stopped; the calls measured did nothing")
	}
}

func TestRecorderCloseFinishesOpenSessions(t *testing.T) {
	var logs logLines
	r := NewRecorder(filepath.Join(t.TempDir(), "rec"), logs.log)
	s := r.Open(4)
	var want []fed
	for i := range 50 {
		feed(s, &want, toClientMark, int64(i), []byte("frame'\\\x00"))
	}
	r.Close()
	s.ToClient(60, []byte("after"))
	s.Close()
	checkRecording(t, r.Path(4), want)

	late := r.Open(5)
	late.ToClient(0, []byte("late"))
	late.Close()
	if _, err := os.Stat(r.Path(5)); !os.IsNotExist(err) {
		t.Errorf("a session opened after Close made %s: %v", r.Path(5), err)
	}
	if l := logs.get(); len(l) != 0 {
		t.Errorf("logged %q", l)
	}
}

func TestFileIsCreatedTruncatedWithMode0644(t *testing.T) {
	defer syscall.Umask(syscall.Umask(0))
	r := NewRecorder(filepath.Join(t.TempDir(), "rec"), func(msg string) { t.Error(msg) })
	if err := os.WriteFile(r.Path(1), bytes.Repeat([]byte("old recording\n"), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(r.Path(1)); err != nil { // so that the mode is what the recorder makes
		t.Fatal(err)
	}
	if err := os.WriteFile(r.Path(2), bytes.Repeat([]byte("old recording\n"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	for n := range uint64(2) {
		s := r.Open(n + 1)
		s.FromClient(0, []byte("new"))
		s.Close()
	}
	r.Close()
	checkRecording(t, r.Path(2), []fed{{fromClientMark, 0, []byte("new")}})
	info, err := os.Stat(r.Path(1))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644 under umask 0", info.Mode().Perm())
	}
}

func TestNilSessionDoesNothing(t *testing.T) {
	var s *Session
	s.ToClient(0, []byte("x"))
	s.FromClient(0, []byte("x"))
	s.Close()
}

func BenchmarkSessionToClient(b *testing.B) {
	r := NewRecorder(filepath.Join(b.TempDir(), "rec"), func(msg string) { b.Log(msg) })
	defer r.Close()
	s := r.Open(1)
	defer s.Close()
	chunk := make([]byte, 16<<10)
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range chunk {
		chunk[i] = byte(rng.Uint32())
	}
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		s.ToClient(1, chunk)
		// A loop of calls outpaces any disk; what is measured is the
		// call, so the writer catches up untimed.
		b.StopTimer()
		waitDrained(s)
		b.StartTimer()
	}
	if s.stopped.Load() {
		b.Fatal("the recording stopped; the calls measured did nothing")
	}
}
