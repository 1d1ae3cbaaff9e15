package test

// The telnet client page, web/wstelnet.html, against a real telnetd: log in
// through the page in headless Chromium and run a command.

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const (
	// telnetdPath is inetutils-telnetd, which scripts/install-test-deps.sh installs.
	telnetdPath = "/usr/sbin/telnetd"
	// telnetUser and telnetPassword are the account that
	// scripts/install-test-deps.sh creates for this test.
	telnetUser     = "wstelnet"
	telnetPassword = "wstelnet-test-pw"
)

// TestTelnetBrowser opens web/wstelnet.html, served by websockify's --web
// server in front of a real telnetd, in headless Chromium; types the user
// name and password into the page's terminal (a real /bin/login checks
// them), runs a command and reads its output from the screen. It runs once
// per subprotocol. The command's output also proves the negotiation: $TERM
// comes from TERMINAL-TYPE, `stty size` from NAWS, and the 255 byte printf
// writes reaches the page only if the IAC IAC escape is undone.
func TestTelnetBrowser(t *testing.T) {
	if _, err := os.Stat(telnetdPath); err != nil {
		t.Fatalf("%s is missing (%v): `make test` installs it (scripts/install-test-deps.sh)", telnetdPath, err)
	}
	if _, err := user.Lookup(telnetUser); err != nil {
		t.Fatalf("no user %s to log in as (%v): `make test` creates it (scripts/install-test-deps.sh)", telnetUser, err)
	}
	browser, outDir := startChromium(t)
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	telnetAddr := startTelnetd(t)
	p := startProxy(t, telnetAddr, "--web", filepath.Join(root, "web"))

	for _, mode := range []string{"binary", "base64"} {
		t.Run(mode, func(t *testing.T) {
			tab, cancelTab := chromedp.NewContext(browser)
			defer cancelTab()
			ctx, cancel := context.WithTimeout(tab, 60*time.Second)
			defer cancel()

			q := url.Values{"host": {"127.0.0.1"}, "port": {strconv.Itoa(p.port)}, "path": {"websockify"}, "mode": {mode}}
			pageURL := "http://127.0.0.1:" + strconv.Itoa(p.port) + "/wstelnet.html?" + q.Encode()
			screen := chromedp.CSS("#screen")

			// step runs one stage of the session and says which one failed.
			step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
				t.Helper()
				if err := chromedp.Do(ctx, actions...); err != nil {
					text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`wstelnet.screenText()`))
					status, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#status")))
					saveScreenshot(t, ctx, filepath.Join(outDir, "wstelnet_"+mode+"_failed.png"))
					t.Fatalf("%s: %v\nstatus: %s\nscreen:\n%s", what, err, status, text)
				}
			}
			// waitScreen waits until the screen text satisfies the JS
			// predicate, given the text as s and its non-blank lines as lines.
			waitScreen := func(predicate string) chromedp.Action[chromedp.Void] {
				expr := `((s) => { const lines = s.split('\n').map((l) => l.trimEnd()).filter((l) => l); return ` +
					predicate + `; })(wstelnet.screenText())`
				return pollTrue(expr)
			}

			step("loading the page", chromedp.Navigate(pageURL), chromedp.WaitVisible(screen))
			step("connecting", chromedp.Click(chromedp.CSS("#connect")),
				pollTrue(`document.getElementById('status').textContent.startsWith('connected to')`))
			status, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#status")))
			if err != nil || !strings.HasSuffix(status, "("+mode+")") {
				t.Fatalf("status %q (%v), want the %s subprotocol", status, err, mode)
			}
			step("waiting for the login prompt", waitScreen(`/login: *$/.test(lines[lines.length - 1] || '')`))
			step("typing the user name", chromedp.SendKeys(screen, telnetUser+"\r"))
			step("waiting for the password prompt", waitScreen(`/Password: *$/.test(lines[lines.length - 1])`))
			step("typing the password", chromedp.SendKeys(screen, telnetPassword+"\r"))
			// The account's shell is sh, whose prompt is "$ ".
			step("waiting for the shell prompt", waitScreen(`lines[lines.length - 1] === '$'`))
			// A typo fixed with Backspace checks the key map and the
			// terminal's BS handling on the echo.
			step("running a command", chromedp.SendKeys(screen,
				`echo hellp`+"\b"+`o-$((6*7)) $TERM $(stty size); printf 'x\377y\n'`+"\r"))
			step("waiting for the output", waitScreen(`lines.includes('hello-42 vt100 24 80')`))
			step("waiting for the 255 byte", waitScreen(`lines.includes('x\ufffdy')`))
			saveScreenshot(t, ctx, filepath.Join(outDir, screenshotName(mode)))

			step("logging out", chromedp.SendKeys(screen, "exit\r"),
				pollTrue(`document.getElementById('status').textContent.startsWith('disconnected')`))
		})
	}
}

// screenshotName is wstelnet.png for the first mode and wstelnet_MODE.png
// for the other.
func screenshotName(mode string) string {
	if mode == "binary" {
		return "wstelnet.png"
	}
	return "wstelnet_" + mode + ".png"
}

// pollTrue waits until the JS expression is true.
func pollTrue(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond))(ctx, tg)
		return err
	})
}

func saveScreenshot(t *testing.T, ctx context.Context, file string) {
	t.Helper()
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err == nil {
		err = os.WriteFile(file, shot, 0o644)
	}
	if err != nil {
		t.Errorf("screenshot %s: %v", file, err)
	}
}

// startTelnetd serves telnet on a fresh 127.0.0.1 port the way inetd does:
// each connection becomes stdin, stdout and stderr of its own telnetd. It
// returns the address; the listener and the daemons are stopped when the test
// ends.
func startTelnetd(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		procs []*exec.Cmd
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("telnetd listener: %v", err)
				}
				return
			}
			// File dups the socket for the child; our copy is closed at once.
			f, err := c.(*net.TCPConn).File()
			c.Close()
			if err != nil {
				t.Errorf("telnetd socket: %v", err)
				continue
			}
			// -h: no host banner before the login prompt.
			cmd := exec.Command(telnetdPath, "-h")
			cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, f
			err = cmd.Start()
			f.Close()
			if err != nil {
				t.Errorf("starting %s: %v", telnetdPath, err)
				continue
			}
			mu.Lock()
			procs = append(procs, cmd)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = cmd.Wait()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, cmd := range procs {
			// Ending telnetd closes its pty, which hangs up login's shell.
			_ = cmd.Process.Kill()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}
