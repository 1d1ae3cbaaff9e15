package test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// binPath is the websockify binary built by TestMain.
var binPath string

// defaultParallel is how many parallel tests run at once unless -parallel is
// given. The tests mostly wait on sockets and timers, so more than
// GOMAXPROCS of them can share the CPU; the long backpressure test holds one
// slot for about two minutes.
const defaultParallel = "8"

func TestMain(m *testing.M) {
	flag.Parse()
	parallelSet := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "test.parallel" {
			parallelSet = true
		}
	})
	if !parallelSet {
		_ = flag.Set("test.parallel", defaultParallel)
	}

	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot find the module root: %v\n", err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "websockify-itest-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkdtemp: %v\n", err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "websockify")
	args := []string{"build", "-o", binPath}
	if os.Getenv("WEBSOCKIFY_TEST_RACE") != "" {
		args = append(args, "-race") // the binary under test with the race detector
	}
	build := exec.Command("go", append(args, "./cmd/websockify")...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building websockify failed: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// moduleRoot is the directory of the go.mod governing this package.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		// Fall back to the parent directory of this package.
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		return filepath.Dir(wd), nil
	}
	return filepath.Dir(gomod), nil
}
