package logsink

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func readText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func write(t *testing.T, f *File, s string) {
	t.Helper()
	if _, err := f.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func TestFileAppendsAndReopens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "websockify.log")
	if err := os.WriteFile(path, []byte("earlier run\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	write(t, f, "a\n")

	// logrotate renames the file away; lines go there until the reopen.
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	write(t, f, "b\n")
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	write(t, f, "c\n")

	if got, want := readText(t, rotated), "earlier run\na\nb\n"; got != want {
		t.Errorf("rotated file %q, want %q", got, want)
	}
	if got, want := readText(t, path), "c\n"; got != want {
		t.Errorf("reopened file %q, want %q", got, want)
	}
}

func TestFileCreatedReadableByAll(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.log")
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// 0644 less whatever the umask takes; the owner can always write.
	if perm := st.Mode().Perm(); perm&^0o644 != 0 || perm&0o600 != 0o600 {
		t.Errorf("mode %v, want 0644 less the umask", perm)
	}
}

func TestFilePathIsAbsolute(t *testing.T) {
	t.Chdir(t.TempDir())
	f, err := OpenFile("relative.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !filepath.IsAbs(f.Path()) {
		t.Errorf("path %q is relative: a daemon's chdir would lose the file on reopen", f.Path())
	}
}

func TestFileErrors(t *testing.T) {
	if _, err := OpenFile(filepath.Join(t.TempDir(), "no-such-dir", "x.log")); err == nil {
		t.Error("opening in a missing directory: no error")
	}
	f, err := OpenFile(filepath.Join(t.TempDir(), "x.log"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("late\n")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("write after Close: %v, want os.ErrClosed", err)
	}
	if err := f.Reopen(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("reopen after Close: %v, want os.ErrClosed", err)
	}
}
