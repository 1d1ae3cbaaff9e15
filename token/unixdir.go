package token

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// unixSocketDirectory is UnixDomainSocketDirectory: the token names a unix
// socket directly inside the source directory.
type unixSocketDirectory struct {
	dir string // absolute
}

func newUnixDomainSocketDirectory(source string, log func(string)) (Plugin, error) {
	dir, err := filepath.Abs(source)
	if err != nil {
		return nil, fmt.Errorf("UnixDomainSocketDirectory: %w", err)
	}
	// The directory may appear later (e.g. under /run), as Python allows.
	if info, err := os.Stat(dir); err != nil || !info.IsDir() {
		log(fmt.Sprintf("UnixDomainSocketDirectory: %s is not a directory (yet); no token resolves until it is", dir))
	}
	return &unixSocketDirectory{dir: dir}, nil
}

func (p *unixSocketDirectory) Name() string { return "UnixDomainSocketDirectory" }
func (p *unixSocketDirectory) Sockets() int { return 0 }
func (p *unixSocketDirectory) Close() error { return nil }

func (p *unixSocketDirectory) Lookup(ctx context.Context, token string) (Target, error) {
	if err := ctx.Err(); err != nil {
		return Target{}, &BackendError{Backend: "UnixDomainSocketDirectory " + p.dir, Err: err}
	}
	if token == "" || token == "." || token == ".." || strings.ContainsAny(token, "/\x00") {
		return Target{}, ErrNotFound
	}
	path := filepath.Join(p.dir, token)
	// Lstat: a symlink could lead to a socket outside the directory.
	info, err := os.Lstat(path)
	if err != nil || info.Mode().Type() != os.ModeSocket {
		return Target{}, ErrNotFound
	}
	return Target{Network: "unix", Addr: path}, nil
}
