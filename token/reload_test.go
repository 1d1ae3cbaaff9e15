package token

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

func mustReload(t *testing.T, p Plugin, want ...string) {
	t.Helper()
	r, ok := p.(Reloader)
	if !ok {
		t.Fatalf("%s is not a Reloader", p.Name())
	}
	msg, err := r.Reload()
	if err != nil {
		t.Fatalf("%s: Reload: %v", p.Name(), err)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("%s: Reload says %q, want it to mention %q", p.Name(), msg, w)
		}
	}
}

func reloadError(t *testing.T, p Plugin, want string) {
	t.Helper()
	_, err := p.(Reloader).Reload()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: Reload error %v, want one saying %q", p.Name(), err, want)
	}
}

// ReadOnlyTokenFile ignores edits until Reload, and keeps its tokens when
// the file is gone at a Reload.
func TestReadOnlyTokenFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, path, "a: old:1\n")
	p, err := New("ReadOnlyTokenFile", path, nil)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, "a: new:1\nb: added:2\n")
	wantTarget(t, p, "a", tcp("old:1"))
	mustReload(t, p, "ReadOnlyTokenFile", path, "2 tokens")
	wantTarget(t, p, "a", tcp("new:1"))
	wantTarget(t, p, "b", tcp("added:2"))

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	reloadError(t, p, "keeping the 2 tokens")
	wantTarget(t, p, "b", tcp("added:2"))
}

// TokenFile's Reload parses again even when nothing changed on disk.
func TestTokenFileReloadForcesParse(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "one"), "a: host:1\n")
	writeFile(t, filepath.Join(dir, "two"), "b: host:2\nc: host:3\n")
	p, err := New("TokenFile", dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	tf := p.(*tokenFiles)
	before := tf.parses.Load()
	mustReload(t, p, "TokenFile", "3 tokens in 2 files")
	if got := tf.parses.Load() - before; got != 2 {
		t.Errorf("Reload parsed %d files, want 2", got)
	}
	wantTarget(t, p, "c", tcp("host:3"))

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	reloadError(t, p, "no tokens until it is back")
	wantNotFound(t, p, "a")
}

func TestJWTReload(t *testing.T) {
	dir := t.TempDir()
	key, public, _ := rsaKeyFiles(t, dir, "")
	logs := &logRecorder{}
	p := newJWT(t, public, logs)
	tok := signJWS(t, jose.RS256, key, remote)
	mustReload(t, p, "JWTTokenApi", public, "RSA public key")
	wantTarget(t, p, tok, tcp("remote_host:5900"))

	writeFile(t, public, "-----BEGIN PUBLIC KEY-----\ngarbage\n")
	reloadError(t, p, "refused until it is fixed")
	wantNotFound(t, p, tok)
}

func TestDirectoryPluginsReload(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"TokenFileName", "UnixDomainSocketDirectory"} {
		p, err := New(name, dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		mustReload(t, p, name, dir)
	}
	gone := filepath.Join(dir, "gone")
	p, err := New("UnixDomainSocketDirectory", gone, nil)
	if err != nil {
		t.Fatal(err)
	}
	reloadError(t, p, "no such file")

	// The API and Redis plugins have no files to read again.
	for _, p := range []Plugin{&tokenAPI{}, &tokenRedis{}} {
		if _, ok := p.(Reloader); ok {
			t.Errorf("%T claims to reload", p)
		}
	}
}
