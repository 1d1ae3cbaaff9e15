package test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's Chromium, which scripts/install-test-deps.sh installs.
const chromiumPath = "/usr/bin/chromium"

// TestBrowserWebsock runs web/tests/websock_test.html in headless Chromium,
// served by websockify's own --web server in front of an echo target, once per
// mode: the page drives web/websock.js through a real browser WebSocket and
// reports PASS or FAIL in its title.
func TestBrowserWebsock(t *testing.T) {
	browser, outDir := startChromium(t)
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "--web", filepath.Join(root, "web"))

	for _, mode := range []string{"binary", "base64"} {
		t.Run(mode, func(t *testing.T) {
			tab, cancelTab := chromedp.NewContext(browser)
			defer cancelTab()
			ctx, cancel := context.WithTimeout(tab, 20*time.Second)
			defer cancel()

			url := "http://127.0.0.1:" + strconv.Itoa(p.port) + "/tests/websock_test.html?mode=" + mode
			start := time.Now()
			err := chromedp.Do(ctx, chromedp.Navigate(url))
			if err == nil {
				_, err = chromedp.Run(ctx, chromedp.Poll[bool](
					`document.title.startsWith("PASS") || document.title.startsWith("FAIL")`,
					chromedp.WithPollingInterval(50*time.Millisecond)))
			}
			// Whatever happened, read what the page shows.
			title, _ := chromedp.Run(ctx, chromedp.Title())
			body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
			shot, _ := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
			t.Logf("%s: %q after %v", url, title, time.Since(start).Round(time.Millisecond))
			if len(shot) > 0 {
				file := filepath.Join(outDir, "websock_test_"+mode+".png")
				if werr := os.WriteFile(file, shot, 0o644); werr != nil {
					t.Errorf("saving screenshot: %v", werr)
				}
			}
			if err != nil {
				t.Fatalf("page did not finish: %v (title %q)", err, title)
			}
			if title != "PASS "+mode {
				t.Fatalf("title %q, want %q; page:\n%s", title, "PASS "+mode, strings.TrimSpace(body))
			}
		})
	}
}

// startChromium starts headless Chromium for one test and returns its
// browser context (open tabs with chromedp.NewContext(browser)) and the
// folder screenshots go to (test/out). Chromium is closed when the test
// ends. A missing Chromium fails the test: `make test` installs it.
func startChromium(t *testing.T) (browser context.Context, outDir string) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s is missing (%v): `make test` installs it (scripts/install-test-deps.sh)", chromiumPath, err)
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	outDir = filepath.Join(root, "test", "out")
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The flags keep Chromium off the network and away from any profile:
	// the only traffic is to the proxy on 127.0.0.1.
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.WindowSize(1000, 700),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	browser, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelBrowser() // closes Chromium
		cancelAlloc()
	})
	// The first action starts Chromium; it must run without a timeout, which
	// would end the browser with it.
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	return browser, outDir
}

// saveScreenshot writes the tab's viewport as PNG to dir/name; a failure to
// take it is only logged, as the test's own checks decide.
func saveScreenshot(t testing.TB, ctx context.Context, dir, name string) {
	t.Helper()
	// Bounded: this also runs when the test failed because the tab hangs.
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name), shot, 0o644); err != nil {
		t.Errorf("saving screenshot: %v", err)
	}
}
