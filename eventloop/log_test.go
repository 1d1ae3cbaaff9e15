package eventloop

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingWriter keeps every Write apart, to check each carries whole lines.
type recordingWriter struct {
	mu     sync.Mutex
	writes []string
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

func (w *recordingWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.writes, "")
}

const dateRE = `\[\d\d/[A-Z][a-z]{2}/\d{4} \d\d:\d\d:\d\d\]`

func TestLineFormats(t *testing.T) {
	for _, verbose := range []bool{false, true} {
		var out recordingWriter
		l := NewLogger(&out, verbose)
		l.Connf("192.0.2.1", "connecting to %s", "target:5900")
		l.ConnDebugf("192.0.2.1", "debug %d", 1)
		l.Infof("plain %d", 2)
		l.Debugf("debug %d", 3)
		l.Warnf("warning %d", 4)
		l.Errorf("error %d", 5)
		l.Flush()
		want := `^192\.0\.2\.1 - - ` + dateRE + ` connecting to target:5900\n`
		if verbose {
			want += `192\.0\.2\.1 - - ` + dateRE + ` debug 1\n`
		}
		want += `plain 2\n`
		if verbose {
			want += `debug 3\n`
		}
		want += `warning 4\nerror 5\n$`
		if got := out.String(); !regexp.MustCompile(want).MatchString(got) {
			t.Errorf("verbose %v: got\n%s\nwant to match\n%s", verbose, got, want)
		}
	}
}

func TestLinesWaitThenGoOutUnflushed(t *testing.T) {
	var out recordingWriter
	l := NewLogger(&out, false)
	l.Infof("soon")
	if got := out.String(); got != "" {
		t.Fatalf("written at once (%q): lines should wait for company", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for out.String() != "soon\n" {
		if time.Now().After(deadline) {
			t.Fatalf("after 5s without Flush: %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFlushDeliversEverythingInWholeLines(t *testing.T) {
	var out recordingWriter
	l := NewLogger(&out, false)
	const goroutines, perGoroutine = 8, 2500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perGoroutine {
				l.Connf("198.51.100."+strconv.Itoa(g), "line %d of %d %s", i, g, strings.Repeat("-", i%50))
			}
		}()
	}
	wg.Wait()
	l.Flush()

	out.mu.Lock()
	writes := out.writes
	out.mu.Unlock()
	seen := map[string]bool{}
	for _, w := range writes {
		if !strings.HasSuffix(w, "\n") || len(w) > maxWriteSize {
			t.Fatalf("a write of %d bytes not of whole lines within %d: ...%q", len(w), maxWriteSize, w[max(0, len(w)-40):])
		}
		for _, line := range strings.Split(strings.TrimSuffix(w, "\n"), "\n") {
			i := strings.Index(line, "] line ")
			if i < 0 || seen[line[i:]] {
				t.Fatalf("bad or repeated line %q", line)
			}
			seen[line[i:]] = true
		}
	}
	if len(seen) != goroutines*perGoroutine {
		t.Errorf("%d lines written, want %d", len(seen), goroutines*perGoroutine)
	}
	if len(writes) > goroutines*perGoroutine/10 {
		t.Errorf("%d writes for %d lines: lines are not batched", len(writes), len(seen))
	}
}

// stallingWriter blocks every write until released, as a terminal or pipe
// nobody reads does.
type stallingWriter struct {
	entered     chan struct{}
	enteredOnce sync.Once
	release     chan struct{}
	out         recordingWriter
}

func (w *stallingWriter) Write(p []byte) (int, error) {
	w.enteredOnce.Do(func() { close(w.entered) })
	<-w.release
	return w.out.Write(p)
}

func TestStalledSinkDoesNotBlockCallersAndDropsAreReported(t *testing.T) {
	w := &stallingWriter{entered: make(chan struct{}), release: make(chan struct{})}
	l := NewLogger(w, false)
	l.Infof("first")
	select {
	case <-w.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the writer never wrote the first line")
	}

	// The writer is stuck on "first": pending takes 4096 lines of 1 KiB,
	// the rest are dropped.
	const lines, lineLen = 5000, 1024
	kept := maxPending / lineLen
	pad := strings.Repeat("x", lineLen-len("000000 \n"))
	start := time.Now()
	for i := range lines {
		t0 := time.Now()
		l.Infof("%06d %s", i, pad)
		if took := time.Since(t0); took > 250*time.Millisecond {
			t.Fatalf("Infof %d took %v with the sink stalled", i, took)
		}
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("%d Infof calls took %v with the sink stalled", lines, took)
	}
	close(w.release)
	l.Flush()

	var want strings.Builder
	want.WriteString("first\n")
	for i := range kept {
		fmt.Fprintf(&want, "%06d %s\n", i, pad)
	}
	fmt.Fprintf(&want, "websockify: %d log lines dropped: log output too slow\n", lines-kept)
	if got := w.out.String(); got != want.String() {
		t.Errorf("got %d bytes ending %q, want %d bytes ending %q",
			len(got), got[max(0, len(got)-80):], want.Len(), want.String()[want.Len()-80:])
	}
}

func TestCallersNeverWaitForTheWriter(t *testing.T) {
	w := &stallingWriter{entered: make(chan struct{}), release: make(chan struct{})}
	l := NewLogger(w, false)
	const lines = 1000 // 1 MB: far past writeOutSize
	pad := strings.Repeat("z", 1000)
	logged := make(chan struct{})
	go func() {
		for i := range lines {
			l.Infof("%d %s", i, pad)
		}
		close(logged)
	}()
	select {
	case <-logged:
	case <-time.After(5 * time.Second):
		t.Fatal("Infof blocked on a stalled sink")
	}
	select {
	case <-w.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the writer never started")
	}
	close(w.release)
	l.Flush()
	if n := strings.Count(w.out.String(), "\n"); n != lines {
		t.Errorf("%d lines written, want %d", n, lines)
	}
}

func TestLogFileGetsEveryLineAndReopens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "websockify.log")
	var stderr recordingWriter
	l, err := OpenLogger(LogConfig{Stderr: &stderr, File: path})
	if err != nil {
		t.Fatal(err)
	}
	l.Infof("before rotation")
	l.Flush()
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Infof("after rotation")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Infof("after close") // stderr only

	for _, c := range []struct{ path, want string }{
		{rotated, "before rotation\n"},
		{path, "after rotation\n"},
	} {
		b, err := os.ReadFile(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != c.want {
			t.Errorf("%s: %q, want %q", filepath.Base(c.path), b, c.want)
		}
	}
	l.Flush()
	if got, want := stderr.String(), "before rotation\nafter rotation\nafter close\n"; got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}
}

func listenSyslog(t *testing.T) (string, *net.UnixConn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return path, conn
}

func readDatagrams(t *testing.T, conn *net.UnixConn, n int) []string {
	t.Helper()
	var got []string
	buf := make([]byte, 64<<10)
	for range n {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, string(buf[:k]))
	}
	return got
}

func TestSyslogGetsEachLineAtItsLevel(t *testing.T) {
	path, conn := listenSyslog(t)
	var stderr recordingWriter
	l, err := OpenLogger(LogConfig{Verbose: true, Stderr: &stderr, Syslog: path, Daemon: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Infof("info\nsecond line")
	l.Debugf("debug")
	l.Warnf("warning")
	l.Errorf("error")
	l.Connf("192.0.2.1", "client")
	l.Flush()

	head := `1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \S+ websockify ` + strconv.Itoa(os.Getpid()) + ` - - `
	want := []string{
		`<30>` + head + `info second line`,
		`<31>` + head + `debug`,
		`<28>` + head + `warning`,
		`<27>` + head + `error`,
		`<30>` + head + `192\.0\.2\.1 - - ` + dateRE + ` client`,
	}
	for i, got := range readDatagrams(t, conn, len(want)) {
		if !regexp.MustCompile("^" + want[i] + "$").MatchString(got) {
			t.Errorf("message %d: %q, want to match %q", i, got, want[i])
		}
	}
	if got := stderr.String(); !strings.HasPrefix(got, "info\nsecond line\ndebug\n") {
		t.Errorf("stderr %q", got)
	}
}

func TestLegacySyslogUserFacility(t *testing.T) {
	path, conn := listenSyslog(t)
	l, err := OpenLogger(LogConfig{Stderr: &bytes.Buffer{}, Syslog: path, LegacySyslog: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Debugf("not verbose: not sent")
	l.Infof("info")
	l.Flush()
	if got, want := readDatagrams(t, conn, 1)[0], "<14>websockify["+strconv.Itoa(os.Getpid())+"]: info"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestStalledSyslogHoldsUpStderrBriefly(t *testing.T) {
	path, _ := listenSyslog(t) // never read: sends stall once its queue fills
	var stderr recordingWriter
	l, err := OpenLogger(LogConfig{Stderr: &stderr, Syslog: path, LegacySyslog: true})
	if err != nil {
		t.Fatal(err)
	}
	const lines = 3000
	pad := strings.Repeat("y", 1000)
	for i := range lines {
		l.Infof("%d %s", i, pad)
	}
	flushed := make(chan struct{})
	go func() { l.Flush(); close(flushed) }()
	select {
	case <-flushed:
	case <-time.After(10 * time.Second):
		t.Fatal("Flush still waiting after 10s on a stalled syslog")
	}
	defer l.Close() // only now: it flushes
	if n := strings.Count(stderr.String(), "\n"); n != lines {
		t.Errorf("stderr got %d lines, want %d", n, lines)
	}
}

func TestOpenLoggerErrors(t *testing.T) {
	if _, err := OpenLogger(LogConfig{File: filepath.Join(t.TempDir(), "missing", "x.log")}); err == nil {
		t.Error("a log file in a missing directory: no error")
	}
	_, err := OpenLogger(LogConfig{Syslog: "localhost:port"})
	if err == nil || err.Error() != "Error parsing syslog port" {
		t.Errorf("bad syslog port: error %v", err)
	}
}
