package logsink

import (
	"os"
	"path/filepath"
	"sync"
)

// File is a log file opened for appending. Several processes (--workers)
// may share one: each Write is a single O_APPEND write, so lines passed
// whole stay whole.
type File struct {
	path string // absolute, so Reopen finds the file after a daemon's chdir

	mu sync.Mutex
	f  *os.File // nil once closed
}

// OpenFile opens path for appending, creating it (mode 0644 before the
// umask) if it does not exist.
func OpenFile(path string) (*File, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	f, err := openAppend(abs)
	if err != nil {
		return nil, err
	}
	return &File{path: abs, f: f}, nil
}

func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
}

// Path is the absolute path the file was opened by.
func (f *File) Path() string { return f.path }

// Write appends p, which should hold whole lines.
func (f *File) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return 0, os.ErrClosed
	}
	return f.f.Write(p)
}

// Reopen opens the path again and switches to it, so lines go to a new file
// once logrotate has renamed the old one away (SIGHUP). The new file is
// opened before the old is closed: if it cannot be opened, lines keep going
// to the old one.
func (f *File) Reopen() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return os.ErrClosed
	}
	reopened, err := openAppend(f.path)
	if err != nil {
		return err
	}
	old := f.f
	f.f = reopened
	return old.Close()
}

// Close closes the file; later writes fail with os.ErrClosed.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return nil
	}
	err := f.f.Close()
	f.f = nil
	return err
}
