package token

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const sampleTokens = `# a comment
plain: example.com:5900

tab:	10.0.0.1:5901
v6: ::1:5902
v6brackets: [fe80::1]:5903
unix: unix_socket:/run/vnc.sock
  spaced  :   host.example:5904   
no separator here
badport: host:99999
two: parts: here:1
`

func TestReadOnlyTokenFileFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.conf")
	writeFile(t, path, sampleTokens)
	logs := &logRecorder{}
	p, err := New("ReadOnlyTokenFile", path, logs.log)
	if err != nil {
		t.Fatal(err)
	}
	wantTarget(t, p, "plain", tcp("example.com:5900"))
	wantTarget(t, p, "tab", tcp("10.0.0.1:5901"))
	wantTarget(t, p, "v6", tcp("[::1]:5902"))
	wantTarget(t, p, "v6brackets", tcp("[fe80::1]:5903"))
	wantTarget(t, p, "unix", Target{Network: "unix", Addr: "/run/vnc.sock"})
	wantTarget(t, p, "spaced", tcp("host.example:5904"))
	for _, token := range []string{"missing", "badport", "two", "# a comment", ""} {
		wantNotFound(t, p, token)
	}
	for _, line := range []int{9, 10, 11} {
		if !logs.contains(path, fmt.Sprintf("line %d:", line)) {
			t.Errorf("no log naming %s line %d; logs: %q", path, line, logs.all())
		}
	}
	if n := len(logs.all()); n != 3 {
		t.Errorf("%d log lines, want 3 (blank and comment lines are not errors): %q", n, logs.all())
	}
	for _, msg := range logs.all() {
		if strings.Contains(msg, "\n") {
			t.Errorf("log message spans lines: %q", msg)
		}
	}
}

func TestTokenFileFromDirectory(t *testing.T) {
	for _, name := range []string{"ReadOnlyTokenFile", "TokenFile"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "a.conf"), "one: host1:1\nshared: first:1\n")
			writeFile(t, filepath.Join(dir, "b.conf"), "two: host2:2\nbroken line\nshared: second:2\n")
			if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, "sub", "c.conf"), "three: host3:3\n")
			logs := &logRecorder{}
			p, err := New(name, dir, logs.log)
			if err != nil {
				t.Fatal(err)
			}
			wantTarget(t, p, "one", tcp("host1:1"))
			wantTarget(t, p, "two", tcp("host2:2"))
			wantTarget(t, p, "shared", tcp("second:2")) // files in name order, later wins
			wantNotFound(t, p, "three")                 // not recursive
			// Line numbers count per file, and the message names the file.
			if !logs.contains(filepath.Join(dir, "b.conf"), "line 2:") {
				t.Errorf("no log naming b.conf line 2; logs: %q", logs.all())
			}
		})
	}
}

func TestReadOnlyTokenFileIgnoresEdits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, path, "a: old:1\n")
	p, err := New("ReadOnlyTokenFile", path, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantTarget(t, p, "a", tcp("old:1"))
	writeFile(t, path, "a: new:1\nb: added:2\n")
	wantTarget(t, p, "a", tcp("old:1"))
	wantNotFound(t, p, "b")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	wantTarget(t, p, "a", tcp("old:1"))
}

func TestTokenFileFollowsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, path, "a: host:1111\n")
	logs := &logRecorder{}
	p, err := New("TokenFile", path, logs.log)
	if err != nil {
		t.Fatal(err)
	}
	wantTarget(t, p, "a", tcp("host:1111"))
	// Same size, very likely the same mtime tick: still seen.
	writeFile(t, path, "a: host:2222\n")
	wantTarget(t, p, "a", tcp("host:2222"))
	writeFile(t, path, "a: host:2222\nb: other:3\n")
	wantTarget(t, p, "b", tcp("other:3"))
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, p, "a")
	if !logs.contains("cannot read", path) {
		t.Errorf("a vanished source is not logged: %q", logs.all())
	}
	writeFile(t, path, "c: back:4\n")
	wantTarget(t, p, "c", tcp("back:4"))
	wantNotFound(t, p, "a")
}

func TestTokenFileFollowsDirectory(t *testing.T) {
	dir := t.TempDir()
	first := filepath.Join(dir, "first")
	writeFile(t, first, "a: host:1\n")
	p, err := New("TokenFile", dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantTarget(t, p, "a", tcp("host:1"))
	second := filepath.Join(dir, "second")
	writeFile(t, second, "b: host:2\n")
	wantTarget(t, p, "b", tcp("host:2"))
	writeFile(t, first, "a: edited:9\n") // in place: the directory does not change
	wantTarget(t, p, "a", tcp("edited:9"))
	if err := os.Remove(first); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, p, "a")
	wantTarget(t, p, "b", tcp("host:2"))
}

// bigTokenFile writes a file of n tokens tok0..tok<n-1>, its mtime an hour
// back as an unchanged file's would be.
func bigTokenFile(tb testing.TB, n int) string {
	path := filepath.Join(tb.TempDir(), "tokens")
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "tok%d: host%d.example:%d\n", i, i, 1+i%65535)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	past := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, past, past); err != nil {
		tb.Fatal(err)
	}
	return path
}

func TestTokenFileParsesOnlyOnChange(t *testing.T) {
	path := bigTokenFile(t, 10000)
	plugin, err := New("TokenFile", path, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := plugin.(*tokenFiles)
	for i := range 1000 {
		wantTarget(t, p, fmt.Sprintf("tok%d", i*7), tcp(fmt.Sprintf("host%d.example:%d", i*7, 1+i*7)))
	}
	if n := p.parses.Load(); n != 1 {
		t.Fatalf("%d parses over 1000 lookups of an unchanged file, want 1", n)
	}
	writeFile(t, path, "tok1: changed:1\n")
	wantTarget(t, p, "tok1", tcp("changed:1"))
	if n := p.parses.Load(); n < 2 {
		t.Fatalf("%d parses after a change, want a re-parse", n)
	}
}

func TestTokenFileConcurrentLookups(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens")
	writeFile(t, path, "a: host:1\n")
	p, err := New("TokenFile", dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := p.Lookup(testContext(t, time.Second), "a")
				if err != nil || got.Network != "tcp" {
					errs <- fmt.Errorf("Lookup(a) = %+v, %v", got, err)
					return
				}
			}
		})
	}
	for i := range 200 {
		// Rename into place, as editors and config tools do, so "a" is always there.
		tmp := filepath.Join(t.TempDir(), "tmp")
		writeFile(t, tmp, fmt.Sprintf("a: host:%d\n", 1+i))
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	wantTarget(t, p, "a", tcp("host:200"))
}

func BenchmarkTokenFileLookupUnchanged(b *testing.B) {
	path := bigTokenFile(b, 10000)
	p, err := New("TokenFile", path, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := p.Lookup(ctx, "tok5000"); err != nil {
			b.Fatal(err)
		}
	}
	if n := p.(*tokenFiles).parses.Load(); n != 1 {
		b.Fatalf("%d parses, want 1", n)
	}
}
