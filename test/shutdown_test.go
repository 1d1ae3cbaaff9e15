package test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// SIGTERM and SIGINT (SPEC section 9): stop accepting, send every session,
// ws and wss alike, a close frame 1001 "Going away" after whatever was
// already on its way to it, drain for a bounded time, exit 0.
const (
	sdExitBound = 15 * time.Second // from the signal to the process's exit
	sdStreamed  = 1 << 20          // a streaming session has read this much before the signal
)

// shutdownTarget echoes, except for a connection whose first six bytes are
// "stream": that one gets the pattern as fast as it is taken.
func shutdownTarget(t testing.TB) *target {
	return startTarget(t, "tcp", "127.0.0.1:0", func(c *tconn) {
		first := make([]byte, 6)
		if _, err := io.ReadFull(c, first); err != nil {
			return
		}
		if string(first) != "stream" {
			if _, err := c.Write(first); err != nil {
				return
			}
			_, _ = io.Copy(c, c)
			return
		}
		go func() { _, _ = io.Copy(io.Discard, c) }()
		buf := make([]byte, 64<<10)
		for off := int64(0); ; off += int64(len(buf)) {
			fillPattern(buf, off)
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
}

// sdResult tallies how the sessions of one kind ended.
type sdResult struct {
	total int
	ta    tally
}

// TestShutdownGoingAway: 50 ws and 50 wss sessions idle (each proven by an
// echo) and a few streaming from the target, then SIGTERM; the same with
// SIGINT and fewer sessions. Every client must get a close frame 1001
// before its connection ends (with a FIN), a streaming one after an intact
// prefix of the stream, and the process must exit 0 within sdExitBound.
func TestShutdownGoingAway(t *testing.T) {
	t.Parallel()
	pk := newPKI(t)
	for _, tc := range []struct {
		name         string
		sig          syscall.Signal
		idle, stream int
	}{
		{"SIGTERM", syscall.SIGTERM, 50, 3},
		{"SIGINT", syscall.SIGINT, 10, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runShutdown(t, pk, tc.name, tc.sig, tc.idle, tc.stream)
		})
	}
}

func runShutdown(t *testing.T, pk *testPKI, name string, sig syscall.Signal, nIdle, nStream int) {
	tg := shutdownTarget(t)
	p := startProxy(t, tg.addr, "--cert", pk.bundleFile)
	dials := map[string]func() (*wsClient, error){
		"ws":  func() (*wsClient, error) { return dialWSE(p, modeBinary, nil) },
		"wss": func() (*wsClient, error) { return dialWSS(p, pk.clientTLS(nil), modeBinary) },
	}

	// Open everything at once, each idle session proven by an echo.
	type opened struct {
		kind string // "ws idle", "wss stream", ...
		c    *wsClient
		err  error
	}
	var list []opened
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, tr := range []string{"ws", "wss"} {
		for i := range nIdle + nStream {
			kind := tr + " idle"
			if i >= nIdle {
				kind = tr + " streaming"
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := dials[tr]()
				if err == nil && strings.HasSuffix(kind, "idle") {
					err = c.echo([]byte("hello!"))
				} else if err == nil {
					err = c.send([]byte("stream"))
				}
				mu.Lock()
				list = append(list, opened{kind, c, err})
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	for _, o := range list {
		if o.c != nil {
			defer o.c.conn.Close()
		}
		if o.err != nil {
			t.Fatalf("%s session could not be set up: %v", o.kind, o.err)
		}
	}

	// Each client reads to the end of its session in its own goroutine:
	// the streaming ones first, and once each has read sdStreamed bytes (so
	// data is flowing when the signal comes) the idle ones.
	results := map[string]*sdResult{}
	for _, o := range list {
		if results[o.kind] == nil {
			results[o.kind] = &sdResult{ta: tally{unit: "sessions"}}
		}
		results[o.kind].total++
	}
	var ends sync.WaitGroup
	streamed := make(chan struct{}, len(list))
	readAll := func(idle bool) {
		for i, o := range list {
			if strings.HasSuffix(o.kind, "idle") != idle {
				continue
			}
			ends.Add(1)
			go func() {
				defer ends.Done()
				r := results[o.kind]
				if idle {
					e := readToEnd(o.c, func() error { return nil })
					r.ta.add(i, e.faults(0, 1001), e.String())
					return
				}
				o.c.throttle(10e6) // flowing, without taking all the CPU
				e := readStreamToEnd(o.c, streamed)
				r.ta.add(i, e.faults(-1, 1001), e.String())
			}()
		}
	}
	readAll(false)
	for range 2 * nStream {
		select {
		case <-streamed:
		case <-time.After(20 * time.Second):
			t.Fatalf("the streaming sessions did not get %d bytes each within 20s", sdStreamed)
		}
	}
	readAll(true)

	sent := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	code, exited := p.waitExit(sdExitBound)
	took := time.Since(sent)
	ends.Wait() // every read is bounded by lcWait

	var kinds []string
	for k := range results {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		r := results[k]
		t.Logf("%s: %d of %d %s sessions got close 1001 and then a FIN", name, r.total-r.ta.failed, r.total, k)
		r.ta.report(t, fmt.Sprintf("%s, %s sessions", name, k))
	}
	switch {
	case !exited:
		t.Errorf("websockify still running %v after %s", sdExitBound, name)
	case code != 0:
		t.Errorf("websockify exited with status %d (%v) %v after %s, want 0", code, p.state, took.Round(time.Millisecond), name)
	default:
		t.Logf("websockify exited 0 %v after %s", took.Round(time.Millisecond), name)
	}
}

// readStreamToEnd is readToEnd for a session the target streams to; it
// signals streamed once sdStreamed bytes have arrived.
func readStreamToEnd(c *wsClient, streamed chan<- struct{}) sessionEnd {
	var once sync.Once
	e := sessionEnd{code: -1}
	for {
		m, err := c.readMessage()
		var ce *closeErr
		if errors.As(err, &ce) {
			e.code, e.reason = int(ce.code), ce.reason
			var reply []byte
			if ce.code != 0 {
				reply = closePayload(ce.code, "")
			}
			_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = c.conn.Write(masked(ws.OpClose, reply)) // may meet a closed socket: not the point
			e.after = connEnd(c.conn, c.br)
			return e
		}
		if err != nil {
			e.readErr = err
			return e
		}
		if e.corrupt == nil {
			e.corrupt = checkPattern(m, e.got)
		}
		e.got += int64(len(m))
		if e.got >= sdStreamed {
			once.Do(func() { streamed <- struct{}{} })
		}
	}
}

// spawnProxy starts websockify with args and returns at once, without
// waiting for it to listen; onStderr, if set, sees the error output so
// far each time more arrives (on the goroutine copying it). The process is
// killed when the test ends. Safe to call from any goroutine.
func spawnProxy(t testing.TB, onStderr func(string), args ...string) (*proxy, error) {
	p := &proxy{t: t, cmd: exec.Command(binPath, args...), network: "tcp"}
	if err := p.start(onStderr); err != nil {
		return nil, err
	}
	t.Cleanup(p.kill)
	return p, nil
}

// TestShutdownBeforeBoot: a SIGTERM that arrives while the proxy is still
// starting, after its handler is installed but before its event engine is
// up, must still end the process promptly, with status 0. A signal that
// lands before the Go runtime installs any handler kills the process by
// its default action, which is as good: nothing was served yet.
//
// Three kinds of attempts aim at that window:
//   - "slow start": with --web naming a directory through a chain of long
//     symbolic links, which takes the proxy a good fraction of a second to
//     resolve once its handler is installed (it resolves the web root as it
//     starts serving); the signal comes 20 to 150 ms after the banner, well
//     inside. Today about one in three of these never exits (the rest of
//     the race is between the proxy's own goroutines), so there are 16;
//   - plain starts, the signal a delay after the banner's first line (which
//     is printed just before the handler is installed), the delay adapted as
//     they go: longer after a signal that came before the handler, shorter
//     after one that came once the engine was up, so it settles in between;
//   - plain starts with fixed delays of 0 to 20 ms from the start.
func TestShutdownBeforeBoot(t *testing.T) {
	t.Parallel()
	const (
		parallel    = 4
		enoughStuck = 3 // the fault is shown; stop spending time
		exitBound   = 8 * time.Second
	)
	echo := startEcho(t)
	slowRoot := slowWebRoot(t)

	// An attempt signals fromRun after the start when that is >= 0, else
	// after the banner's first line: slow later with a slow start, or the
	// adapted delay.
	type attempt struct {
		args    []string // before the listen address and target
		fromRun time.Duration
		slow    time.Duration
	}
	var attempts []attempt
	for i := range 16 {
		d := []time.Duration{20, 40, 60, 80, 100, 120, 150, 30}[i%8] * time.Millisecond
		attempts = append(attempts, attempt{args: []string{"--web", slowRoot}, fromRun: -1, slow: d})
	}
	for i := range 56 {
		a := attempt{fromRun: -1}
		if i%7 == 0 {
			a.fromRun = []time.Duration{0, 1, 2, 3, 5, 8, 12, 20}[i/7] * time.Millisecond
		}
		attempts = append(attempts, a)
	}

	var (
		mu                          sync.Mutex
		delay                       = 100 * time.Microsecond // after the banner's first line, adapted
		stuck, handled, early, runs int
		reports                     []string
	)
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	for _, a := range attempts {
		mu.Lock()
		enough := stuck >= enoughStuck
		mu.Unlock()
		if enough {
			break
		}
		sem <- struct{}{}
		port := freePort(t, "127.0.0.1")
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			args := append(append([]string{}, a.args...), "127.0.0.1:"+strconv.Itoa(port), echo.addr)
			var how string
			var p *proxy
			var err error
			if a.fromRun >= 0 {
				how = fmt.Sprintf("%v after the start", a.fromRun)
				if p, err = spawnProxy(t, nil, args...); err == nil {
					time.Sleep(a.fromRun)
					_ = p.cmd.Process.Signal(syscall.SIGTERM)
				}
			} else {
				d := a.slow
				how = fmt.Sprintf("%v after the banner, slow start (--web through long links)", d)
				if d == 0 {
					mu.Lock()
					d = delay
					mu.Unlock()
					how = fmt.Sprintf("%v after the banner", d)
				}
				var once sync.Once
				var pp *proxy
				ready := make(chan struct{})
				p, err = spawnProxy(t, func(out string) {
					if !strings.Contains(out, "WebSocket server settings:") {
						return
					}
					once.Do(func() {
						<-ready
						// Busy-wait: a sleep this short oversleeps.
						for end := time.Now().Add(d); time.Now().Before(end); {
							runtime.Gosched()
						}
						_ = pp.cmd.Process.Signal(syscall.SIGTERM)
					})
				}, args...)
				pp = p
				close(ready)
			}
			mu.Lock()
			if err != nil {
				reports = append(reports, fmt.Sprintf("starting websockify: %v", err))
				mu.Unlock()
				return
			}
			mu.Unlock()
			code, exited := p.waitExit(exitBound)
			mu.Lock()
			defer mu.Unlock()
			if exited && code == 1 && strings.Contains(p.stderr.String(), "address already in use") {
				return // another program took the port meanwhile: no verdict
			}
			runs++
			var outcome string
			switch {
			case !exited:
				stuck++
				reports = append(reports, fmt.Sprintf("SIGTERM %s: still running %v later; %s; its log:\n%s",
					how, exitBound, probe(port), indent(p.stderr.String())))
			case p.state.Sys().(syscall.WaitStatus).Signaled():
				if ws := p.state.Sys().(syscall.WaitStatus); ws.Signal() == syscall.SIGTERM && !strings.Contains(p.stderr.String(), "Got terminated") {
					early++
					outcome = "early"
				} else {
					reports = append(reports, fmt.Sprintf("SIGTERM %s: %v, want exit status 0; its log:\n%s", how, p.state, indent(p.stderr.String())))
				}
			case code != 0:
				handled++
				reports = append(reports, fmt.Sprintf("SIGTERM %s: exit status %d, want 0; its log:\n%s", how, code, indent(p.stderr.String())))
			default:
				handled++
				outcome = "handled"
			}
			if a.fromRun < 0 && a.slow == 0 {
				// Steps in proportion, so the delay finds the window
				// quickly whatever the machine's pace.
				switch outcome {
				case "early":
					delay = delay*5/4 + 10*time.Microsecond
				case "handled":
					delay = delay * 4 / 5
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d attempts: %d exited after the handler ran, %d were killed before any handler existed, %d never exited; last delay after the banner %v",
		runs, handled, early, stuck, delay)
	for _, r := range reports {
		t.Error(r)
	}
	if handled == 0 {
		t.Errorf("no attempt reached the proxy's signal handler: the start-up window was never tested")
	}
}

// slowWebRoot makes a directory whose path takes a while to resolve with
// filepath.EvalSymlinks: 20 chained symbolic links, each descending 400
// directories and climbing back before naming the next. The kernel follows
// it in well under a millisecond; a walk that checks every component does
// 20 * 400 lstat calls of paths up to 400 components deep, a few hundred
// milliseconds.
func slowWebRoot(t testing.TB) string {
	t.Helper()
	const links, depth = 20, 400
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, strings.Repeat("x/", depth)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	detour := strings.Repeat("x/", depth) + strings.Repeat("../", depth)
	for i := range links {
		next := fmt.Sprintf("l%d", i+1)
		if i == links-1 {
			next = "www"
		}
		if err := os.Symlink(detour+next, filepath.Join(dir, fmt.Sprintf("l%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if _, err := filepath.EvalSymlinks(filepath.Join(dir, "l0")); err != nil {
		t.Fatal(err)
	}
	t.Logf("the slow web root takes %v to resolve here", time.Since(start).Round(time.Millisecond))
	return filepath.Join(dir, "l0")
}

func indent(s string) string {
	return "\t" + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n\t")
}

// probe says what a client meets at a proxy that should have exited.
func probe(port int) string {
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
	if err != nil {
		return "it does not accept connections: " + err.Error()
	}
	defer conn.Close()
	if _, err := handshakeHyBi(conn, hybiReq{Protocol: modeBinary}, nil); err != nil {
		return "it accepts connections but refuses clients: " + err.Error()
	}
	return "it still serves clients"
}
