// Real-browser tests of noVNC through websockify to a real TigerVNC server:
// Debian's novnc package and the latest @novnc/novnc from npm, each showing
// the server's screen and typing into it, and 20 tabs sharing one server.
package test

import (
	"context"
	"encoding/json"
	"fmt"
	neturl "net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// debianNoVNC is where Debian's novnc package puts its pages.
const debianNoVNC = "/usr/share/novnc"

// upgradeLine is what the proxy logs once per WebSocket client, and
// xvncAccepted what Xvnc logs once per RFB client.
const (
	upgradeLine  = "Plain non-SSL (ws://) WebSocket connection"
	xvncAccepted = "Connections: accepted: "
)

// npmNoVNC returns the folder of the @novnc/novnc package that
// scripts/install-test-deps.sh installs with npm into .cache/npm, and its
// version.
func npmNoVNC(t testing.TB) (dir, version string) {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(root, ".cache", "npm", "node_modules", "@novnc", "novnc")
	requireFile(t, filepath.Join(dir, "core", "rfb.js"), "npm package @novnc/novnc")
	var pkg struct{ Version string }
	if b, err := os.ReadFile(filepath.Join(dir, "package.json")); err == nil {
		_ = json.Unmarshal(b, &pkg)
	}
	return dir, pkg.Version
}

// noVNCWebRoot builds the folder the proxy serves for the npm client: the
// test page novnc_npm.html beside a copy of the package in novnc/ (the page
// imports ./novnc/core/rfb.js). With debian set it also holds a copy of
// Debian's novnc in debian/.
func noVNCWebRoot(t testing.TB, debian bool) string {
	t.Helper()
	pkg, version := npmNoVNC(t)
	t.Logf("@novnc/novnc %s from %s", version, pkg)
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	web := t.TempDir()
	page, err := os.ReadFile(filepath.Join(root, "test", "testdata", "novnc_npm.html"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(web, "novnc_npm.html"), page, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := copyTree(pkg, filepath.Join(web, "novnc")); err != nil {
		t.Fatalf("copying %s: %v", pkg, err)
	}
	if debian {
		requireFile(t, filepath.Join(debianNoVNC, "vnc_lite.html"), "Debian package novnc")
		if err := copyTree(debianNoVNC, filepath.Join(web, "debian")); err != nil {
			t.Fatalf("copying %s: %v", debianNoVNC, err)
		}
	}
	return web
}

// TestNoVNCDebian: Debian's vnc_lite.html, served by the proxy's --web
// straight from /usr/share/novnc, shows the Xvnc screen and types into it.
func TestNoVNCDebian(t *testing.T) {
	requireFile(t, filepath.Join(debianNoVNC, "vnc_lite.html"), "Debian package novnc")
	browser, outDir := startChromium(t)
	x := startXvnc(t)
	x.startXterm(t)
	p := startProxy(t, x.rfbAddr, "--web", debianNoVNC)
	url := "http://127.0.0.1:" + strconv.Itoa(p.port) + "/vnc_lite.html?path=websockify"
	checkNoVNCSession(t, browser, outDir, "novnc_debian.png", p, url)
}

// TestNoVNCNpm: the latest @novnc/novnc from npm, through a minimal page,
// shows the Xvnc screen and types into it.
func TestNoVNCNpm(t *testing.T) {
	web := noVNCWebRoot(t, false)
	browser, outDir := startChromium(t)
	x := startXvnc(t)
	x.startXterm(t)
	p := startProxy(t, x.rfbAddr, "--web", web)
	url := "http://127.0.0.1:" + strconv.Itoa(p.port) + "/novnc_npm.html"
	checkNoVNCSession(t, browser, outDir, "novnc_npm.png", p, url)
}

// checkNoVNCSession opens url, a noVNC page connecting through p to an Xvnc
// showing rootColour with an xterm in it, and checks that
//   - the page reaches "Connected" and the proxy logged the upgrade;
//   - the canvas shows the server's screen: the root colour in two corners
//     and the black xterm where it was placed;
//   - keys typed on the canvas reach the xterm: its text area lights up;
//   - the typed command `xsetroot -solid red` runs: the root turns red on
//     the canvas.
//
// The final screen is saved as outDir/shot.
func checkNoVNCSession(t *testing.T, browser context.Context, outDir, shot string, p *proxy, url string) {
	t.Helper()
	start := time.Now()
	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v (after %v)", what, err, time.Since(start).Round(time.Millisecond))
		}
		t.Logf("%s: ok after %v", what, time.Since(start).Round(time.Millisecond))
	}
	openCtx, cancelOpen := context.WithTimeout(context.Background(), 30*time.Second)
	tab, cancelTab, err := openTab(openCtx, browser)
	cancelOpen()
	step("open a tab", err)
	defer cancelTab()
	// Generous: a loaded 2-core machine takes many seconds to load a page.
	ctx, cancel := context.WithTimeout(tab, 90*time.Second)
	defer cancel()
	// The screen as it was when the test ended, passed or failed.
	defer saveScreenshot(t, tab, outDir, shot)

	step("open "+url, chromedp.Do(ctx, chromedp.Navigate(url)))
	step("page says Connected", waitText(ctx, "#status", "Connected"))
	if !waitLog(p, upgradeLine, 5*time.Second) {
		t.Fatalf("the proxy logged no WebSocket upgrade")
	}
	step("root colour top-left", waitPixel(ctx, 10, 10, rootRGB))
	step("root colour bottom-right", waitPixel(ctx, screenW-10, screenH-10, rootRGB))
	step("xterm shown", waitPixel(ctx, xtermX+xtermCols*fontW-20, xtermY+xtermRows*fontH-20, rgb{0, 0, 0}))

	// Clicking the xterm focuses noVNC's canvas in the page and moves the X
	// pointer into the xterm, which then gets the keys (no window manager:
	// the focus follows the pointer).
	cx, cy, err := canvasPoint(ctx, xtermX+60, xtermY+60)
	step("find the xterm in the page", err)
	step("click the xterm", chromedp.Do(ctx, chromedp.MouseClickXY(cx, cy)))
	before, err := canvasLitPixels(ctx, xtermRect)
	step(fmt.Sprintf("xterm text area before typing (%d lit pixels)", before), err)

	step("type", chromedp.Do(ctx, chromedp.KeyEvent("xsetroot -solid red")))
	// 19 characters of a 6x13 font light far more than 100 pixels.
	var after int
	step("typed text shows in the xterm", waitFor(ctx, func() (bool, string) {
		n, err := canvasLitPixels(ctx, xtermRect)
		if err != nil {
			return false, err.Error()
		}
		after = n
		return n > before+100, fmt.Sprintf("%d lit pixels, had %d", n, before)
	}))
	t.Logf("xterm text area: %d lit pixels before typing, %d after", before, after)

	step("press Enter", chromedp.Do(ctx, chromedp.KeyEvent("\r")))
	red := rgb{255, 0, 0}
	step("root turned red (top-left)", waitPixel(ctx, 10, 10, red))
	step("root turned red (bottom-right)", waitPixel(ctx, screenW-10, screenH-10, red))
}

// waitFor polls cond every 50 ms until it holds or ctx ends; the error then
// carries cond's last description of what it saw.
func waitFor(ctx context.Context, cond func() (bool, string)) error {
	for {
		ok, seen := cond()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out: %s", seen)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestNoVNCTabs: 20 tabs of one Chromium, half Debian's noVNC and half
// npm's, connect through one proxy to one shared Xvnc at the same time; all
// show the screen, the proxy logs 20 upgrades, and all see a change of the
// root colour while still connected.
func TestNoVNCTabs(t *testing.T) {
	const (
		tabs = 20
		// Opening pages costs CPU; a few at a time keep both cores busy
		// without starving the ones that already run.
		opening = 4
		// How long opening all tabs may take, and each later step for all
		// of them: generous, as a loaded 2-core machine takes seconds to
		// open one tab. (An idle one opens all 20 in seconds.)
		openTimeout = 150 * time.Second
		stepTimeout = 30 * time.Second
	)
	web := noVNCWebRoot(t, true)
	browser, outDir := startChromium(t)
	x := startXvnc(t)
	// startXvnc's own probe connection is in Xvnc's log already.
	xvncClients0 := strings.Count(x.log.String(), xvncAccepted)
	p := startProxy(t, x.rfbAddr, "--web", web)
	base := "http://127.0.0.1:" + strconv.Itoa(p.port)
	start := time.Now()
	since := func() time.Duration { return time.Since(start).Round(time.Millisecond) }

	urls := make([]string, tabs)
	for i := range urls {
		urls[i] = base + "/novnc_npm.html"
		if i%2 == 0 {
			urls[i] = base + "/debian/vnc_lite.html?path=websockify"
		}
	}
	ctxs := make([]context.Context, tabs)
	cancels := make([]context.CancelFunc, tabs)
	// Closing the tabs one by one takes seconds each on a loaded machine;
	// close them all at once.
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, cancel := range cancels {
			if cancel != nil {
				wg.Go(cancel)
			}
		}
		wg.Wait()
	})

	// each runs f on every tab, at most limit at a time, within timeout for
	// all of them, and fails the test for each tab where it fails.
	each := func(what string, limit int, timeout time.Duration, f func(ctx context.Context, i int) error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var wg sync.WaitGroup
		sem := make(chan struct{}, limit)
		errs := make([]error, tabs)
		for i := range tabs {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				errs[i] = f(ctx, i)
			})
		}
		wg.Wait()
		failed := 0
		for i, err := range errs {
			if err != nil {
				failed++
				t.Errorf("tab %02d (%s): %s: %v", i, urls[i], what, err)
			}
		}
		if failed > 0 {
			t.FailNow()
		}
		t.Logf("all %d tabs: %s after %v", tabs, what, since())
	}
	// inTab runs f in tab i, bounded by the step's ctx.
	inTab := func(ctx context.Context, i int, f func(ctx context.Context) error) error {
		tctx, cancel := context.WithCancel(ctxs[i])
		defer cancel()
		stop := context.AfterFunc(ctx, cancel)
		defer stop()
		return f(tctx)
	}

	each("open", opening, openTimeout, func(ctx context.Context, i int) error {
		tab, cancel, err := openTab(ctx, browser)
		if err != nil {
			return err
		}
		ctxs[i], cancels[i] = tab, cancel
		return inTab(ctx, i, func(ctx context.Context) error {
			return chromedp.Do(ctx, chromedp.Navigate(urls[i]))
		})
	})
	each("Connected", tabs, stepTimeout, func(ctx context.Context, i int) error {
		return inTab(ctx, i, func(ctx context.Context) error { return waitText(ctx, "#status", "Connected") })
	})
	each("root colour shown", tabs, stepTimeout, func(ctx context.Context, i int) error {
		return inTab(ctx, i, func(ctx context.Context) error { return waitPixel(ctx, screenW/2, screenH/2, rootRGB) })
	})
	// Each tab is its own WebSocket through the proxy and its own RFB
	// connection to Xvnc.
	logCtx, cancelLog := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelLog()
	if err := waitFor(logCtx, func() (bool, string) {
		n := strings.Count(p.stderr.String(), upgradeLine)
		m := strings.Count(x.log.String(), xvncAccepted) - xvncClients0
		return n == tabs && m == tabs, fmt.Sprintf("the proxy logged %d upgrades and Xvnc %d clients, want %d each", n, m, tabs)
	}); err != nil {
		t.Fatal(err)
	}

	// One change on the shared screen must reach every tab: all 20
	// sessions are live at once, none was pushed out by a later one.
	changed := rgb{0xc0, 0x30, 0x20}
	x.setRoot(t, changed.String())
	each("root colour change shown", tabs, stepTimeout, func(ctx context.Context, i int) error {
		return inTab(ctx, i, func(ctx context.Context) error { return waitPixel(ctx, screenW/2, screenH/2, changed) })
	})
	each("still Connected", tabs, stepTimeout, func(ctx context.Context, i int) error {
		return inTab(ctx, i, func(ctx context.Context) error { return waitText(ctx, "#status", "Connected") })
	})
	if n := strings.Count(p.stderr.String(), upgradeLine); n != tabs {
		t.Errorf("the proxy logged %d upgrades, want %d", n, tabs)
	}
	// Two screenshots, one of each client, are enough to look at.
	saveScreenshot(t, ctxs[0], outDir, "novnc_tabs_00.png")
	saveScreenshot(t, ctxs[1], outDir, "novnc_tabs_01.png")
}

// openTab opens a new tab of browser, giving up when ctx ends. The tab
// lives until cancel is called: chromedp ties a tab to the context of its
// first action, so that action runs on the tab's own context, without a
// deadline, and ctx only bounds the wait for it.
func openTab(ctx context.Context, browser context.Context) (tab context.Context, cancel context.CancelFunc, err error) {
	tab, cancel = chromedp.NewContext(browser)
	done := make(chan error, 1)
	go func() { done <- chromedp.Do(tab) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		err = fmt.Errorf("opening a tab: %w", ctx.Err())
	}
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return tab, cancel, nil
}

// TestNoVNCToken: noVNC picks its VNC server by a token in its path
// parameter, resolved by a TokenFile that also names a server that is not
// there; the session works as without a token.
func TestNoVNCToken(t *testing.T) {
	requireFile(t, filepath.Join(debianNoVNC, "vnc_lite.html"), "Debian package novnc")
	browser, outDir := startChromium(t)
	x := startXvnc(t)
	x.startXterm(t)
	tokens := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, tokens, "other: "+closedPort(t)+"\ndesk-1: "+x.rfbAddr+"\n")
	p := launchProxy(t, proxyConfig{Args: []string{"--web", debianNoVNC, "--token-plugin", "TokenFile", "--token-source", tokens}})
	url := "http://127.0.0.1:" + strconv.Itoa(p.port) + "/vnc_lite.html?path=" + neturl.QueryEscape("websockify?token=desk-1")
	checkNoVNCSession(t, browser, outDir, "novnc_token.png", p, url)
	if !waitLog(p, "connecting to: "+x.rfbAddr, 5*time.Second) {
		t.Errorf("the proxy did not log its dial to the token's target")
	}
}
