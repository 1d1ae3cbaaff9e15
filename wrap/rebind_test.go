package wrap

import (
	"debug/elf"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rebindPath is the rebind.so every test wraps with, built by TestMain
// from the embedded source into a cache directory in testScratch.
var rebindPath string

// testScratch is a directory for the whole run, removed at its end.
var testScratch string

func TestMain(m *testing.M) {
	var err error
	testScratch, err = os.MkdirTemp("", "wrap-test-")
	if err != nil {
		panic(err)
	}
	cache := filepath.Join(testScratch, "cache")
	os.Setenv("XDG_CACHE_HOME", cache)
	rebindPath, err = FindRebind(filepath.Join(cache, "no-such-dir", "websockify"))
	if err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(testScratch)
	os.Exit(code)
}

func TestFindRebindBuildsIntoTheCache(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	exe := filepath.Join(t.TempDir(), "websockify")
	path, err := FindRebind(exe)
	if err != nil {
		t.Fatal(err)
	}
	dir, name := filepath.Split(path)
	if filepath.Clean(dir) != filepath.Join(cache, "websockify") || !strings.HasPrefix(name, "rebind-") || !strings.HasSuffix(name, ".so") {
		t.Fatalf("built %s, want %s/websockify/rebind-<hash>.so", path, cache)
	}
	lib, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer lib.Close()
	symbols, err := lib.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	exportsBind := false
	for _, s := range symbols {
		if s.Name == "bind" && s.Section != elf.SHN_UNDEF {
			exportsBind = true
		}
	}
	if lib.Type != elf.ET_DYN || !exportsBind {
		t.Fatalf("%s: type %v, exports bind: %v", path, lib.Type, exportsBind)
	}
	entries, _ := os.ReadDir(filepath.Join(cache, "websockify"))
	if len(entries) != 1 {
		t.Errorf("cache holds %d files, want the library alone (no temporary left)", len(entries))
	}

	// A second run reuses it: no compiler needed.
	t.Setenv("PATH", t.TempDir())
	again, err := FindRebind(exe)
	if err != nil || again != path {
		t.Fatalf("second FindRebind = %q, %v; want %q from the cache", again, err, path)
	}
}

func TestFindRebindBesideTheBinary(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("PATH", t.TempDir()) // no compiler: only the installed copies can answer
	root := t.TempDir()
	bin := filepath.Join(root, "bin")
	lib := filepath.Join(root, "lib", "websockify")
	for _, dir := range []string{bin, lib} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exe := filepath.Join(bin, "websockify")
	if err := os.WriteFile(filepath.Join(lib, "rebind.so"), []byte("lib"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := FindRebind(exe); err != nil || got != filepath.Join(lib, "rebind.so") {
		t.Fatalf("FindRebind = %q, %v; want the one in ../lib/websockify", got, err)
	}
	if err := os.WriteFile(filepath.Join(bin, "rebind.so"), []byte("bin"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := FindRebind(exe); err != nil || got != filepath.Join(bin, "rebind.so") {
		t.Fatalf("FindRebind = %q, %v; want the one beside the binary first", got, err)
	}
}

func TestFindRebindWithoutACompiler(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("PATH", t.TempDir())
	_, err := FindRebind(filepath.Join(t.TempDir(), "websockify"))
	if err == nil || !strings.Contains(err.Error(), "install gcc") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("FindRebind without a compiler: %v; want one line saying to install gcc", err)
	}
	t.Log(err)
}
