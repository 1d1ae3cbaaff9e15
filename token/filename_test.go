package token

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestTokenFileName(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "vm1"), "  10.0.0.1:5900\n")
	writeFile(t, filepath.Join(dir, "vm6"), "[::1]:5901")
	writeFile(t, filepath.Join(dir, "bad"), "no port")
	if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "secret")
	writeFile(t, outside, "evil:1")
	logs := &logRecorder{}
	p, err := New("TokenFileName", dir, logs.log)
	if err != nil {
		t.Fatal(err)
	}
	wantTarget(t, p, "vm1", tcp("10.0.0.1:5900"))
	wantTarget(t, p, "vm6", tcp("[::1]:5901"))
	wantTarget(t, p, "../../x/vm1", tcp("10.0.0.1:5900")) // only the base name counts
	for _, token := range []string{"", "missing", "bad", "subdir", ".", "..", "/", "../" + filepath.Base(filepath.Dir(outside)) + "/secret"} {
		wantNotFound(t, p, token)
	}
	if !logs.contains("bad") {
		t.Errorf("an unparsable target file is not logged: %q", logs.all())
	}
	if _, err := New("TokenFileName", filepath.Join(dir, "vm1"), nil); err == nil {
		t.Error("New(TokenFileName) on a regular file succeeded")
	}
	if _, err := New("TokenFileName", filepath.Join(dir, "nope"), nil); err == nil {
		t.Error("New(TokenFileName) on a missing path succeeded")
	}
}

func TestUnixDomainSocketDirectory(t *testing.T) {
	// Short paths: a unix socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "uds")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	outsideDir, err := os.MkdirTemp("", "udsout")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(outsideDir) })
	listen := func(path string) {
		l, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
	}
	listen(filepath.Join(dir, "vnc"))
	listen(filepath.Join(outsideDir, "other"))
	if err := os.Symlink(filepath.Join(outsideDir, "other"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "regular"), "x")
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	listen(filepath.Join(dir, "sub", "deep"))

	p, err := New("UnixDomainSocketDirectory", dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantTarget(t, p, "vnc", Target{Network: "unix", Addr: filepath.Join(dir, "vnc")})
	for _, token := range []string{"", ".", "..", "sub/deep", "a/b", "../" + filepath.Base(outsideDir) + "/other", "link", "regular", "sub", "missing", "vnc\x00"} {
		wantNotFound(t, p, token)
	}

	// A relative source becomes an absolute target.
	t.Chdir(dir)
	rel, err := New("UnixDomainSocketDirectory", ".", nil)
	if err != nil {
		t.Fatal(err)
	}
	wantTarget(t, rel, "vnc", Target{Network: "unix", Addr: filepath.Join(dir, "vnc")})
}
