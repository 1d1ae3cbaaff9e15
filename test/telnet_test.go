package test

// The telnet client page, web/wstelnet.html, against a real telnetd: log in
// through the page in headless Chromium and run a command.

import (
	"bytes"
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
	// telnetUser is the account that scripts/install-test-deps.sh creates
	// for this test, with a password of its own making in telnetPasswordFile.
	telnetUser         = "wstelnet"
	telnetPasswordFile = "/var/lib/websockify-tests/wstelnet.password"
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
	pw, err := os.ReadFile(telnetPasswordFile)
	if err != nil || len(bytes.TrimSpace(pw)) == 0 {
		t.Fatalf("no password for %s in %s (%v): `make test` makes one (scripts/install-test-deps.sh)", telnetUser, telnetPasswordFile, err)
	}
	telnetPassword := string(bytes.TrimSpace(pw))
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
			ctx, cancel := context.WithTimeout(tab, 90*time.Second) // generous: CI machines can be slow
			defer cancel()

			q := url.Values{"host": {"127.0.0.1"}, "port": {strconv.Itoa(p.port)}, "path": {"websockify"}, "mode": {mode}}
			pageURL := "http://127.0.0.1:" + strconv.Itoa(p.port) + "/wstelnet.html?" + q.Encode()
			screen := chromedp.CSS("#screen")

			// step runs one stage of the session and says which one failed.
			step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
				t.Helper()
				start := time.Now()
				defer func() { t.Logf("%s: %v", what, time.Since(start).Round(time.Millisecond)) }()
				if err := chromedp.Do(ctx, actions...); err != nil {
					text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`wstelnet.screenText()`))
					status, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#status")))
					saveScreenshot(t, ctx, outDir, "wstelnet_"+mode+"_failed.png")
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
			// The account's shell is sh, whose prompt is "$ "; other shells'
			// prompts end in "$" too.
			step("waiting for the shell prompt", waitScreen(`/\$$/.test(lines[lines.length - 1])`))
			// A typo fixed with Backspace checks the key map and the
			// terminal's BS handling on the echo.
			step("running a command", chromedp.SendKeys(screen,
				`echo hellp`+"\b"+`o-$((6*7)) $TERM $(stty size); printf 'x\377y\n'`+"\r"))
			step("waiting for the output", waitScreen(`lines.includes('hello-42 vt100 24 80')`))
			step("waiting for the 255 byte", waitScreen(`lines.includes('x\ufffdy')`))
			saveScreenshot(t, ctx, outDir, screenshotName(mode))

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

// TestTelnetProtocol checks web/telnet.js and web/vt100.js in headless
// Chromium without a telnet server: received streams cut at every pair of
// positions must parse the same (commands split across frames), negotiation
// must answer exactly once and never loop, and the screen must show what the
// escape sequences draw. The page only serves the modules here.
func TestTelnetProtocol(t *testing.T) {
	browser, _ := startChromium(t)
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, startEcho(t).addr, "--web", filepath.Join(root, "web"))
	ctx, cancel := context.WithTimeout(browser, 60*time.Second)
	defer cancel()
	pageURL := "http://127.0.0.1:" + strconv.Itoa(p.port) + "/wstelnet.html"
	if err := chromedp.Do(ctx, chromedp.Navigate(pageURL)); err != nil {
		t.Fatal(err)
	}
	failures, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](telnetProtocolChecks, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("running the checks: %v", err)
	}
	for _, f := range failures {
		t.Error(f)
	}
}

// telnetProtocolChecks is JS that resolves to the list of failed checks.
const telnetProtocolChecks = `(async () => {
  const { Telnet } = await import('/telnet.js');
  const { Terminal } = await import('/vt100.js');
  const failures = [];
  const same = (what, got, want) => {
    const g = JSON.stringify(Array.from(got)), w = JSON.stringify(Array.from(want));
    if (g !== w) failures.push(what + ': got ' + g + ', want ' + w);
  };
  const bytes = (s) => Array.from(s, (c) => c.charCodeAt(0));

  // A Telnet on a fake Websock that records what is sent.
  const session = () => {
    const sent = [], data = [];
    const sock = { on() {}, send(b) { sent.push(...b); } };
    const tn = new Telnet(sock, { onData: (b) => data.push(...b), cols: 80, rows: 24 });
    return { tn, sent, data, take() { return sent.splice(0); } };
  };

  const IAC = 255, WILL = 251, WONT = 252, DO = 253, DONT = 254, SB = 250, SE = 240;
  const stream = [
    97, 98, IAC, IAC, 99,              // "ab", an escaped 255, "c"
    IAC, WILL, 1,                      // WILL ECHO: accepted
    IAC, WILL, 3,                      // WILL SGA: accepted
    IAC, DO, 24,                       // DO TTYPE: accepted
    IAC, SB, 24, 1, IAC, SE,           // TTYPE SEND
    13, 0, 100,                        // CR NUL "d"
    IAC, 241,                          // NOP
    IAC, DO, 31,                       // DO NAWS: accepted, size follows
    IAC, DO, 99, IAC, WILL, 99,        // unknown option: refused both ways
    IAC, SB, 99, 1, IAC, IAC, 2, IAC, SE, // its subnegotiation: ignored
    13, 10, 101,                       // CR LF "e"
    IAC, DO, 1,                        // DO ECHO: we do not echo
  ];
  const wantData = [97, 98, 255, 99, 13, 100, 13, 10, 101];
  const wantSent = [
    IAC, DO, 1, IAC, DO, 3, IAC, WILL, 24,
    IAC, SB, 24, 0, ...bytes('VT100'), IAC, SE,
    IAC, WILL, 31, IAC, SB, 31, 0, 80, 0, 24, IAC, SE,
    IAC, WONT, 99, IAC, DONT, 99, IAC, WONT, 1,
  ];
  // Every way of cutting the stream into three frames (empty ones included).
  let cutFailures = 0;
  for (let i = 0; i <= stream.length && cutFailures < 3; i++) {
    for (let j = i; j <= stream.length && cutFailures < 3; j++) {
      const s = session();
      s.tn.receive(Uint8Array.from(stream.slice(0, i)));
      s.tn.receive(Uint8Array.from(stream.slice(i, j)));
      s.tn.receive(Uint8Array.from(stream.slice(j)));
      const before = failures.length;
      same('data, cut at ' + i + ',' + j, s.data, wantData);
      same('sent, cut at ' + i + ',' + j, s.sent, wantSent);
      if (failures.length > before) cutFailures++;
    }
  }
  { // one byte per frame
    const s = session();
    for (const b of stream) s.tn.receive(Uint8Array.of(b));
    same('data, byte by byte', s.data, wantData);
    same('sent, byte by byte', s.sent, wantSent);
  }

  // Negotiation after that: no answer unless something changes.
  const s = session();
  s.tn.receive(Uint8Array.from(stream));
  s.take();
  if (!s.tn.serverEchoes) failures.push('serverEchoes false after WILL ECHO');
  const answer = (what, input, want) => { s.tn.receive(Uint8Array.from(input)); same(what, s.take(), want); };
  answer('WILL ECHO again', [IAC, WILL, 1], []);
  answer('DO TTYPE again', [IAC, DO, 24], []);
  answer('WONT ECHO', [IAC, WONT, 1], [IAC, DONT, 1]);
  answer('WONT ECHO again', [IAC, WONT, 1], []);
  answer('DONT 99 while off', [IAC, DONT, 99], []);
  answer('WONT 99 while off', [IAC, WONT, 99], []);
  answer('second TTYPE SEND', [IAC, SB, 24, 1, IAC, SE], [IAC, SB, 24, 0, ...bytes('XTERM'), IAC, SE]);
  answer('third TTYPE SEND repeats the last', [IAC, SB, 24, 1, IAC, SE], [IAC, SB, 24, 0, ...bytes('XTERM'), IAC, SE]);
  answer('DONT NAWS', [IAC, DONT, 31], [IAC, WONT, 31]);
  s.tn.setWindowSize(100, 30);
  same('resize with NAWS off', s.take(), []);
  answer('DO NAWS again', [IAC, DO, 31], [IAC, WILL, 31, IAC, SB, 31, 0, 100, 0, 30, IAC, SE]);
  s.tn.setWindowSize(255, 300);
  same('resize, 255 doubled', s.take(), [IAC, SB, 31, 0, IAC, IAC, 1, 44, IAC, SE]);
  s.tn.sendText('a\r\nb\rc\nd\xff');
  same('sendText', s.take(), [97, 13, 10, 98, 13, 0, 99, 13, 10, 100, IAC, IAC]);
  {
    const t2 = session();
    t2.tn.receive(Uint8Array.from([IAC, SB, 24, 1, IAC, SE]));
    same('TTYPE SEND before DO TTYPE', t2.take(), []);
  }

  // The screen.
  const pre = document.createElement('pre');
  const term = new Terminal(pre, { cols: 20, rows: 5 });
  const lines = () => term.text().split('\n');
  const screen = (what, input, want) => {
    term.reset();
    for (const part of input) term.write(part);
    same(what, lines(), want);
  };
  screen('erase to end of line', ['hello\x1b[2D\x1b[K'], ['hel', '', '', '', '']);
  screen('CR LF and TAB', ['x\r\nab\tc'], ['x', 'ab      c', '', '', '']);
  screen('cursor position', ['\x1b[3;5HX\x1b[AY\x1b[2CZ\x1b[BW\x1b[4DV'], ['', '     Y  Z', '    X V  W', '', '']);
  screen('wrap', ['0123456789012345678901'], ['01234567890123456789', '01', '', '', '']);
  screen('scroll', ['1\r\n2\r\n3\r\n4\r\n5\r\n6'], ['2', '3', '4', '5', '6']);
  screen('backspace', ['abc\b\bX'], ['aXc', '', '', '', '']);
  screen('erase display', ['abc\r\ndef\x1b[2J\x1b[Hz'], ['z', '', '', '', '']);
  screen('SGR and unknown sequences', ['\x1b[1;31mR\x1b[0m\x1b]0;title\x07ok\x1b[?25l\x1b(B!\x07'], ['Rok!', '', '', '', '']);
  screen('ESC inside a sequence starts a new one', ['ab\x1b[1\x1b[1Dc'], ['ac', '', '', '', '']);
  screen('sequence split across writes', ['a\x1b', '[', '1', 'Db'], ['b', '', '', '', '']);
  screen('insert and delete chars', ['abcdef\x1b[1;3H\x1b[2P\x1b[1;2H\x1b[1@'], ['a bef', '', '', '', '']);
  screen('scroll region', ['1\r\n2\r\n3\r\n4\r\n5\x1b[2;4r\x1b[4;1H\n'], ['1', '3', '4', '', '5']);

  // Keys.
  const typed = [];
  term.onInput = (text) => typed.push(text);
  const key = (init) => { typed.length = 0; pre.dispatchEvent(new KeyboardEvent('keydown', init)); return typed.join(''); };
  term.reset();
  same('keys', [
    key({ key: 'a' }), key({ key: 'A', shiftKey: true }), key({ key: 'Enter' }), key({ key: 'Backspace' }),
    key({ key: 'c', ctrlKey: true }), key({ key: 'ArrowUp' }), key({ key: 'x', altKey: true }), key({ key: 'Shift', shiftKey: true }),
  ], ['a', 'A', '\r', '\x7f', '\x03', '\x1b[A', '\x1bx', '']);
  term.write('\x1b[?1h');
  same('cursor keys in application mode', [key({ key: 'ArrowLeft' })], ['\x1bOD']);
  return failures;
})()`
