package token

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// racyWindow: a file whose mtime is this close to the moment we read it may
// still change within the same mtime tick (file systems stamp times from a
// coarse clock), so it is read again on the next lookup until it is older.
const racyWindow = 100 * time.Millisecond

// fileID identifies one version of a file well enough to tell "unchanged"
// from one stat call.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds
}

// statID stats path; a missing or unreadable path has the zero fileID.
func statID(path string) (fileID, os.FileInfo) {
	info, err := os.Stat(path)
	if err != nil {
		return fileID{}, nil
	}
	id := fileID{size: info.Size(), mtime: info.ModTime().UnixNano()}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
		id.ctime = st.Ctim.Nano()
	}
	return id, info
}

// settledBy reports whether a file stamped with id, read at readStart, can
// be trusted to be unchanged for as long as its id stays the same.
func settledBy(id fileID, readStart time.Time) bool {
	return id.mtime < readStart.Add(-racyWindow).UnixNano()
}

// parsedFile is one token file as last read.
type parsedFile struct {
	id      fileID
	settled bool
	targets map[string]Target
}

// tokenSet is an immutable snapshot of the whole source; lookups read it
// without locking.
type tokenSet struct {
	dirID       fileID // directory sources only
	dirSettled  bool
	files       map[string]*parsedFile // by path
	targets     map[string]Target      // all files merged, later names win
	sourceError bool                   // the source could not be read; logged once
}

// tokenFiles backs ReadOnlyTokenFile (loaded once) and TokenFile (reloaded
// when a stat shows a change).
type tokenFiles struct {
	name    string
	source  string
	isDir   bool
	live    bool // TokenFile: follow edits
	log     func(string)
	parses  atomic.Int64 // files parsed, for tests
	current atomic.Pointer[tokenSet]
	reload  sync.Mutex // one reload at a time; lookups keep using the old set
}

func newReadOnlyTokenFile(source string, log func(string)) (Plugin, error) {
	return newTokenFiles("ReadOnlyTokenFile", source, false, log)
}

func newTokenFile(source string, log func(string)) (Plugin, error) {
	return newTokenFiles("TokenFile", source, true, log)
}

func newTokenFiles(name, source string, live bool, log func(string)) (*tokenFiles, error) {
	info, err := os.Stat(source)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &tokenFiles{name: name, source: source, isDir: info.IsDir(), live: live, log: log}
	p.current.Store(p.load(nil))
	return p, nil
}

func (p *tokenFiles) Name() string { return p.name }
func (p *tokenFiles) Sockets() int { return 0 }
func (p *tokenFiles) Close() error { return nil }

func (p *tokenFiles) Lookup(ctx context.Context, token string) (Target, error) {
	if err := ctx.Err(); err != nil {
		return Target{}, &BackendError{Backend: p.name + " " + p.source, Err: err}
	}
	set := p.current.Load()
	if p.live && p.stale(set) {
		p.reload.Lock()
		if set = p.current.Load(); p.stale(set) {
			set = p.load(set)
			p.current.Store(set)
		}
		p.reload.Unlock()
	}
	if target, ok := set.targets[token]; ok {
		return target, nil
	}
	return Target{}, ErrNotFound
}

// stale reports whether set no longer matches the files on disk: one stat
// for a file source; for a directory one stat of it plus one per file.
func (p *tokenFiles) stale(set *tokenSet) bool {
	if p.isDir {
		if id, _ := statID(p.source); id != set.dirID || !set.dirSettled {
			return true
		}
	}
	for path, file := range set.files {
		if id, _ := statID(path); id != file.id || !file.settled {
			return true
		}
	}
	return false
}

// load reads the source into a new set, reusing prev's parse of every file
// whose stat is unchanged.
func (p *tokenFiles) load(prev *tokenSet) *tokenSet {
	readStart := time.Now()
	set := &tokenSet{files: map[string]*parsedFile{}}
	var paths []string
	if p.isDir {
		paths = p.listDir(prev, set, readStart)
	} else {
		paths = []string{p.source}
	}
	for _, path := range paths {
		id, info := statID(path)
		if info == nil && !p.isDir {
			set.sourceError = true
			if prev == nil || !prev.sourceError {
				p.log(fmt.Sprintf("%s: cannot read %s; no tokens until it is back", p.name, path))
			}
		}
		if info == nil || !info.Mode().IsRegular() {
			// A vanished file of a directory is noticed by the directory's
			// mtime; a vanished file source is watched at its zero id.
			if !p.isDir {
				set.files[path] = &parsedFile{id: id, settled: true}
			}
			continue
		}
		if prev != nil {
			if old := prev.files[path]; old != nil && old.id == id && old.settled {
				set.files[path] = old
				continue
			}
		}
		set.files[path] = &parsedFile{id: id, settled: settledBy(id, readStart), targets: p.parse(path)}
	}
	sort.Strings(paths)
	set.targets = map[string]Target{}
	for _, path := range paths {
		if file := set.files[path]; file != nil {
			for token, target := range file.targets {
				set.targets[token] = target
			}
		}
	}
	return set
}

// listDir lists the regular files (symlinks followed, not recursive) of a
// directory source, re-reading the directory only when its stat changed.
func (p *tokenFiles) listDir(prev *tokenSet, set *tokenSet, readStart time.Time) []string {
	id, info := statID(p.source)
	set.dirID = id
	set.dirSettled = settledBy(id, readStart)
	if prev != nil && prev.dirID == id && prev.dirSettled {
		set.sourceError = prev.sourceError
		paths := make([]string, 0, len(prev.files))
		for path := range prev.files {
			paths = append(paths, path)
		}
		return paths
	}
	var entries []os.DirEntry
	var err error
	if info != nil {
		entries, err = os.ReadDir(p.source)
	}
	if info == nil || err != nil {
		set.sourceError = true
		set.dirSettled = true // retried when the directory's stat changes
		if prev == nil || !prev.sourceError {
			p.log(fmt.Sprintf("%s: cannot read directory %s; no tokens until it is back", p.name, p.source))
		}
		return nil
	}
	paths := make([]string, 0, len(entries))
	for _, entry := range entries {
		paths = append(paths, filepath.Join(p.source, entry.Name()))
	}
	return paths
}

// parse reads one token file: lines "token: target", split where a colon
// is followed by white space (Python's re.split(r':\s', line), which must
// give two parts). Blank lines and # comments are skipped; a bad line is
// logged with its path and line number and skipped.
func (p *tokenFiles) parse(path string) map[string]Target {
	p.parses.Add(1)
	data, err := os.ReadFile(path)
	if err != nil {
		p.log(fmt.Sprintf("%s: %v", p.name, err))
		return nil
	}
	targets := map[string]Target{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		if trimmed := strings.TrimSpace(line); trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		token, target, err := parseTokenLine(line)
		if err != nil {
			p.log(fmt.Sprintf("%s: syntax error in %s on line %d: %v", p.name, path, i+1, err))
			continue
		}
		targets[token] = target
	}
	return targets
}

func parseTokenLine(line string) (string, Target, error) {
	sep := -1
	for i := 0; i+1 < len(line); i++ {
		if line[i] == ':' && isSpace(line[i+1]) {
			if sep >= 0 {
				return "", Target{}, fmt.Errorf("%q: more than one \": \"", line)
			}
			sep = i
		}
	}
	if sep < 0 {
		return "", Target{}, fmt.Errorf("%q: want \"token: host:port\"", line)
	}
	token := strings.TrimSpace(line[:sep])
	if token == "" {
		return "", Target{}, fmt.Errorf("%q: empty token", line)
	}
	target, err := ParseTarget(strings.TrimSpace(line[sep+1:]))
	if err != nil {
		return "", Target{}, err
	}
	return token, target, nil
}

// isSpace is the ASCII white space of Python's \s.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}
