package token

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// maxTargetFile bounds what TokenFileName reads: a target is one short line.
const maxTargetFile = 4096

// tokenFileName is TokenFileName: the file in the source directory named
// after the token holds its target.
type tokenFileName struct {
	dir string
	log func(string)
}

func newTokenFileName(source string, log func(string)) (Plugin, error) {
	info, err := os.Stat(source)
	if err != nil {
		return nil, fmt.Errorf("TokenFileName: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("TokenFileName: %s is not a directory", source)
	}
	return &tokenFileName{dir: source, log: log}, nil
}

func (p *tokenFileName) Name() string { return "TokenFileName" }
func (p *tokenFileName) Sockets() int { return 0 }
func (p *tokenFileName) Close() error { return nil }

func (p *tokenFileName) Lookup(ctx context.Context, token string) (Target, error) {
	if err := ctx.Err(); err != nil {
		return Target{}, &BackendError{Backend: "TokenFileName " + p.dir, Err: err}
	}
	// Only the base name counts, as in Python, so a token never leaves dir.
	name := filepath.Base(token)
	if token == "" || name == "." || name == ".." || name == "/" || strings.ContainsRune(name, 0) {
		return Target{}, ErrNotFound
	}
	path := filepath.Join(p.dir, name)
	file, err := os.Open(path)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			p.log(fmt.Sprintf("TokenFileName: %v", err))
		}
		return Target{}, ErrNotFound
	}
	defer file.Close()
	if info, err := file.Stat(); err != nil || !info.Mode().IsRegular() {
		return Target{}, ErrNotFound
	}
	data, err := io.ReadAll(io.LimitReader(file, maxTargetFile))
	if err != nil {
		p.log(fmt.Sprintf("TokenFileName: %v", err))
		return Target{}, ErrNotFound
	}
	target, err := ParseTarget(strings.TrimSpace(string(data)))
	if err != nil {
		p.log(fmt.Sprintf("TokenFileName: %s: %v", path, err))
		return Target{}, ErrNotFound
	}
	return target, nil
}
