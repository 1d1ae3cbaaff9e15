package wrap

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// rebindSource is rebind/rebind.c, built into rebind.so when no built
// copy is installed. It has a directory of its own because the go tool
// refuses C files in a package that does not use cgo.
//
//go:embed rebind/rebind.c
var rebindSource []byte

// compilers are the C compilers FindRebind tries, in order.
var compilers = []string{"cc", "gcc", "clang"}

// FindRebind returns the absolute path of rebind.so for the websockify
// binary at exe (os.Executable's answer): the one beside exe, else the one
// in ../lib/websockify relative to exe's directory, else one built from the
// embedded source into the user's cache directory
// (os.UserCacheDir()/websockify/rebind-<hash of the source>.so, reused while
// the source is unchanged). It fails when none is installed and there is no
// C compiler, saying what to install.
func FindRebind(exe string) (string, error) {
	dir := filepath.Dir(exe)
	beside := filepath.Join(dir, "rebind.so")
	inLib := filepath.Join(dir, "..", "lib", "websockify", "rebind.so")
	for _, path := range []string{beside, inLib} {
		if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() {
			return filepath.Abs(path)
		}
	}
	path, err := buildRebind()
	if err != nil {
		return "", fmt.Errorf("rebind.so not found beside websockify (%s) or in %s, and %w",
			beside, filepath.Clean(filepath.Dir(inLib)), err)
	}
	return path, nil
}

// buildRebind compiles the embedded rebind.c into the user's cache
// directory, unless an earlier run already did. The error completes
// FindRebind's sentence.
func buildRebind() (string, error) {
	cacheDir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory to build it in (%v): put rebind.so beside the binary", err)
	}
	sum := sha256.Sum256(rebindSource)
	dir := filepath.Join(cacheDir, "websockify")
	path := filepath.Join(dir, "rebind-"+hex.EncodeToString(sum[:8])+".so")
	if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() {
		return path, nil
	}
	cc := ""
	for _, name := range compilers {
		if found, err := exec.LookPath(name); err == nil {
			cc = found
			break
		}
	}
	if cc == "" {
		return "", errors.New("no C compiler to build it: install gcc (apt-get install gcc) or put rebind.so beside the binary")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("cannot build it: %v", err)
	}
	// Built under a temporary name and renamed, so a concurrent websockify
	// never loads a half-written library.
	tmp, err := os.CreateTemp(dir, ".rebind-*.so")
	if err != nil {
		return "", fmt.Errorf("cannot build it: %v", err)
	}
	tmpPath := tmp.Name()
	tmp.Close()
	defer os.Remove(tmpPath) // a no-op once renamed
	build := exec.Command(cc, "-shared", "-fPIC", "-O2", "-o", tmpPath, "-x", "c", "-", "-ldl")
	build.Stdin = bytes.NewReader(rebindSource)
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building it with %s failed (%v): %s", cc, err, strings.TrimSpace(string(out)))
	}
	if err := os.Chmod(tmpPath, 0o644); err != nil {
		return "", fmt.Errorf("cannot build it: %v", err)
	}
	if err := os.Rename(tmpPath, path); err != nil {
		return "", fmt.Errorf("cannot build it: %v", err)
	}
	return path, nil
}
