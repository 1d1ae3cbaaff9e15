package test

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// One session, both directions busy at very different speeds: the target
// floods the client and reads slowly; the client uploads fast and reads
// fast. Nothing here is slow enough to justify ending the session, so the
// proxy must slow the upload down to the target's pace (backpressure) and
// keep going, losing nothing and holding little.
const (
	// asymDuration is how long both directions run. CI uses this value;
	// WEBSOCKIFY_ASYM_SECONDS overrides it for local runs.
	asymDuration = 60 * time.Second

	asymTargetReadRate = 0.5e6 // bytes per second the target reads
	asymClientRate     = 20e6  // bytes per second the client uploads and reads

	// asymRSSLimit bounds the proxy's VmRSS during the session. An idle
	// proxy sits at 8 to 9 MiB. A session should hold at most the pause
	// threshold plus one read per direction: under 1 MiB each way once
	// fixed, 2 MiB + 256 KiB with today's constants, plus crypto/tls's
	// buffers for wss (which stays near 11 MiB in all). 48 MiB leaves room
	// for the GC's slack on a loaded machine, while a backlog creeping
	// towards today's 16 MiB hard cap (counted in gnet's buffers, its
	// copies and the decoder's) took the plain session to 50-58 MiB here.
	asymRSSLimit = 48 << 20

	// asymStall bounds every wait on a single read or write: a direction
	// that makes no progress at all for this long has stalled, which no
	// loaded machine explains.
	asymStall = 30 * time.Second
	// asymMaxFrame is the largest upload frame; sizes are spread
	// logarithmically below it, so every length encoding occurs.
	asymMaxFrame = 256 << 10
)

// asymRunTime is asymDuration unless WEBSOCKIFY_ASYM_SECONDS says otherwise.
func asymRunTime(t *testing.T) time.Duration {
	if s := os.Getenv("WEBSOCKIFY_ASYM_SECONDS"); s != "" {
		n, err := strconv.ParseFloat(s, 64)
		if err != nil || n <= 0 {
			t.Fatalf("WEBSOCKIFY_ASYM_SECONDS=%q: want a positive number of seconds", s)
		}
		return time.Duration(n * float64(time.Second))
	}
	return asymDuration
}

// pacer spaces out a stream of bytes to an average rate since its first
// use; release makes it stop waiting (to drain at full speed at the end).
type pacer struct {
	rate  float64
	start time.Time
	n     int64
	free  atomic.Bool
}

// chunk is the most one step should take, so the average holds over short
// windows too.
func (p *pacer) chunk() int { return max(1, int(p.rate/20)) }

// account records n bytes and sleeps until they are due.
func (p *pacer) account(n int) {
	if p.start.IsZero() {
		p.start = time.Now()
	}
	p.n += int64(n)
	if p.free.Load() {
		return
	}
	due := p.start.Add(time.Duration(float64(p.n) / p.rate * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		time.Sleep(d)
	}
}

func (p *pacer) release() { p.free.Store(true) }

// pacedReader reads from r through a pacer.
type pacedReader struct {
	r io.Reader
	p *pacer
}

func (pr *pacedReader) Read(b []byte) (int, error) {
	if !pr.p.free.Load() && len(b) > pr.p.chunk() {
		b = b[:pr.p.chunk()]
	}
	n, err := pr.r.Read(b)
	pr.p.account(n)
	return n, err
}

// asymTarget is the target's half of the session.
type asymTarget struct {
	conn      chan net.Conn // the accepted connection, once
	wrote     atomic.Int64  // pattern bytes written to the proxy
	read      atomic.Int64  // pattern bytes read and checked
	readPace  pacer
	stopWrite atomic.Bool
	writeDone chan error  // the writer's end: nil once stopped on request
	expect    chan int64  // how many bytes the client uploaded in all
	readDone  chan error  // the reader's end: nil after exactly expect bytes and then EOF
	abort     func(error) // ends the whole run at the first fault
}

func (a *asymTarget) handle(c *tconn) {
	select {
	case a.conn <- c.Conn:
	default:
		a.abort(errors.New("a second connection reached the target"))
		return
	}
	go func() { a.writeDone <- a.write(c) }()
	a.readDone <- a.readAll(c)
}

// write sends the pattern as fast as the proxy takes it until told to stop.
func (a *asymTarget) write(c net.Conn) error {
	buf := make([]byte, 64<<10)
	var off int64
	for !a.stopWrite.Load() {
		fillPattern(buf, off)
		_ = c.SetWriteDeadline(time.Now().Add(asymStall))
		n, err := c.Write(buf)
		off += int64(n)
		a.wrote.Store(off)
		if err != nil {
			return fmt.Errorf("target write after %d bytes: %w", off, err)
		}
	}
	return nil
}

// readAll reads at the target's pace, checking every byte, until it has
// what the client uploaded and then sees the proxy close the connection.
func (a *asymTarget) readAll(c net.Conn) error {
	r := &pacedReader{r: c, p: &a.readPace}
	buf := make([]byte, 64<<10)
	var got int64
	want := int64(-1)
	for {
		if want < 0 {
			select {
			case want = <-a.expect:
			default:
			}
		}
		if want >= 0 && got > want {
			return fmt.Errorf("target got %d bytes, more than the %d the client sent", got, want)
		}
		_ = c.SetReadDeadline(time.Now().Add(asymStall))
		began := time.Now()
		n, err := r.Read(buf)
		if n > 0 {
			if perr := checkPattern(buf[:n], got); perr != nil {
				return fmt.Errorf("client-to-target stream: %w", perr)
			}
			got += int64(n)
			a.read.Store(got)
		}
		if err == nil {
			continue
		}
		if want < 0 {
			select {
			case want = <-a.expect:
			default:
			}
		}
		if errors.Is(err, io.EOF) && want >= 0 && got == want {
			return nil // everything, then the proxy closed: the client's close
		}
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("target connection closed by the proxy after %d bytes from the client (the client had not finished)", got)
		}
		return fmt.Errorf("target read after %d bytes (read began %s ago): %w", got, time.Since(began).Round(time.Millisecond), err)
	}
}

// asymClient is the client's half.
type asymClient struct {
	c        *wsClient
	sent     atomic.Int64 // payload bytes written
	got      atomic.Int64 // payload bytes read and checked
	sendPace pacer
	readPace pacer
	stopSend atomic.Bool
	closing  atomic.Bool              // the client sent its close frame
	closed   atomic.Pointer[closeErr] // the close frame that ended the download
}

// upload sends the pattern in masked binary frames of varied sizes at the
// client's pace until told to stop.
func (a *asymClient) upload(seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	payload := make([]byte, asymMaxFrame)
	var off int64
	for !a.stopSend.Load() {
		// 1 byte to 256 KiB, each power of two equally likely as a bound.
		n := 1 + rng.IntN(1<<rng.IntN(19))
		fillPattern(payload[:n], off)
		frame := masked(ws.OpBinary, payload[:n])
		_ = a.c.conn.SetWriteDeadline(time.Now().Add(asymStall))
		if _, err := a.c.conn.Write(frame); err != nil {
			return fmt.Errorf("client write after %d payload bytes: %w", off, err)
		}
		off += int64(n)
		a.sent.Store(off)
		a.sendPace.account(n)
	}
	return nil
}

// download reads frames at the client's pace, checking every payload byte,
// until a close frame. A close frame before the client sent its own is the
// proxy ending the session.
func (a *asymClient) download() error {
	c := a.c
	c.ws.WrapReader(func(r io.Reader) io.Reader { return &pacedReader{r: r, p: &a.readPace} })
	br := c.ws.Reader()
	var got int64
	for {
		_ = c.conn.SetReadDeadline(time.Now().Add(asymStall))
		f, err := readFrame(br)
		if err != nil {
			return fmt.Errorf("client read after %d bytes: %w", got, err)
		}
		switch {
		case f.op == ws.OpClose:
			code, reason := f.closeCode()
			a.closed.Store(&closeErr{code, reason})
			if a.closing.Load() {
				return nil
			}
			return fmt.Errorf("client got close %d %q after %d bytes", code, reason, got)
		case f.op != ws.OpBinary || !f.fin || f.masked || f.rsv != 0:
			return fmt.Errorf("client got op %v fin %v masked %v rsv %d after %d bytes; want unfragmented unmasked binary frames", f.op, f.fin, f.masked, f.rsv, got)
		}
		if err := checkPattern(f.payload, got); err != nil {
			return fmt.Errorf("target-to-client stream: %w", err)
		}
		got += int64(len(f.payload))
		a.got.Store(got)
	}
}

// TestAsymmetricSession runs one session for asymDuration with the target
// flooding and reading at 0.5 MB/s and the client uploading and reading at
// 20 MB/s, over ws:// and wss:// at once. The speeds only load the session:
// on a slow machine everything goes slower and the test still holds; it
// checks that the session survives, that every byte arrives in order both
// ways, and that the proxy's memory stays bounded.
func TestAsymmetricSession(t *testing.T) {
	t.Parallel()
	d := asymRunTime(t)
	pk := newPKI(t)
	for _, tr := range []string{"ws", "wss"} {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			runAsymmetric(t, d, tr == "wss", pk)
		})
	}
}

func runAsymmetric(t *testing.T, d time.Duration, useTLS bool, pk *testPKI) {
	var (
		mu      sync.Mutex
		aborted = make(chan struct{})
		faults  []string // every fault, with when it happened
	)
	start := time.Now()
	abort := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		faults = append(faults, fmt.Sprintf("after %v: %v", time.Since(start).Round(100*time.Millisecond), err))
		if len(faults) == 1 {
			close(aborted)
		}
	}
	tgt := &asymTarget{
		conn:      make(chan net.Conn, 1),
		readPace:  pacer{rate: asymTargetReadRate},
		writeDone: make(chan error, 1),
		expect:    make(chan int64, 1),
		readDone:  make(chan error, 1),
		abort:     abort,
	}
	tg := startTarget(t, "tcp", "127.0.0.1:0", tgt.handle)
	var p *proxy
	if useTLS {
		p = startProxy(t, tg.addr, "--cert", pk.bundleFile)
	} else {
		p = startProxy(t, tg.addr)
	}
	mon := watchRSS(p.pid())
	defer mon.finish()
	idle, _ := vmRSS(p.pid())

	var c *wsClient
	var err error
	if useTLS {
		c, err = dialWSS(p, pk.clientTLS(nil), modeBinary)
	} else {
		c, err = dialWSE(p, modeBinary, nil)
	}
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer c.conn.Close()
	var tconn net.Conn
	select {
	case tconn = <-tgt.conn:
	case <-time.After(10 * time.Second):
		t.Fatal("no connection reached the target within 10s")
	}
	defer tconn.Close()
	cl := &asymClient{c: c, sendPace: pacer{rate: asymClientRate}, readPace: pacer{rate: asymClientRate}}

	seed := uint64(time.Now().UnixNano())
	sendDone := make(chan error, 1)
	go func() { sendDone <- cl.upload(seed) }()
	downDone := make(chan error, 1)
	go func() { downDone <- cl.download() }()

	// Any direction that ends before it is told to is a fault; the first
	// one stops the run.
	watch := func(ch chan error, what string) chan error {
		out := make(chan error, 1)
		go func() {
			err := <-ch
			if err != nil {
				abort(fmt.Errorf("%s: %w", what, err))
			}
			out <- err
		}()
		return out
	}
	sendDone = watch(sendDone, "upload")
	downDone = watch(downDone, "download")
	tWriteDone := watch(tgt.writeDone, "target writer")
	tReadDone := watch(tgt.readDone, "target reader")

	status := func() string {
		return fmt.Sprintf("client sent %d bytes, the target read %d; the target wrote %d, the client read %d",
			cl.sent.Load(), tgt.read.Load(), tgt.wrote.Load(), cl.got.Load())
	}
	progress := time.NewTicker(10 * time.Second)
	defer progress.Stop()
	end := time.After(d)
run:
	for {
		select {
		case <-end:
			break run
		case <-aborted:
			break run
		case <-progress.C:
			t.Logf("%v: %s; RSS max %.1f MiB", time.Since(start).Round(time.Second), status(), float64(mon.max.Load())/(1<<20))
		}
	}

	report := func() {
		mon.finish()
		el := time.Since(start).Seconds()
		t.Logf("after %.1fs: %s (upload %.2f MB/s, download %.1f MB/s)", el, status(),
			float64(tgt.read.Load())/el/1e6, float64(cl.got.Load())/el/1e6)
		t.Logf("websockify VmRSS: %.1f MiB idle, max %.1f MiB over %d samples (limit %d MiB)",
			float64(idle)/(1<<20), float64(mon.max.Load())/(1<<20), mon.samples.Load(), asymRSSLimit>>20)
		if mon.samples.Load() == 0 {
			t.Errorf("could not read VmRSS of pid %d", p.pid())
		}
		if m := mon.max.Load(); m >= asymRSSLimit {
			t.Errorf("websockify VmRSS reached %.1f MiB, want < %d MiB: the session's buffers grow instead of its reads pausing", float64(m)/(1<<20), asymRSSLimit>>20)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(faults) == 0 {
			return
		}
		var why []string
		for _, line := range strings.Split(p.stderr.String(), "\n") {
			if strings.Contains(line, "Closing connection") || strings.Contains(line, "backlog") || strings.Contains(line, "closed connection") || strings.Contains(line, "disconnected") {
				why = append(why, line)
			}
		}
		msg := fmt.Sprintf("the %v session failed %s", d, faults[0])
		if ce := cl.closed.Load(); ce != nil && !cl.closing.Load() {
			msg += fmt.Sprintf("; the proxy closed it with %d %q: a slow target must slow the upload down, never end the session", ce.code, ce.reason)
		}
		if len(why) > 0 {
			msg += "; websockify logged:\n\t" + strings.Join(why, "\n\t")
		}
		t.Error(msg)
		for _, f := range faults[1:] {
			t.Errorf("then: %s", f)
		}
	}

	select {
	case <-aborted:
		// Unblock everything, then tell what each part saw.
		c.conn.Close()
		tconn.Close()
		for _, r := range []struct {
			ch   chan error
			what string
		}{{sendDone, "upload"}, {downDone, "download"}, {tWriteDone, "target writer"}, {tReadDone, "target reader"}} {
			select {
			case err := <-r.ch:
				t.Logf("%s ended: %v", r.what, err)
			case <-time.After(2 * time.Second):
				t.Logf("%s still running", r.what)
			}
		}
		report()
		return
	default:
	}

	// Time is up. Stop both writers and let both readers drain what is in
	// flight at full speed: every byte written must arrive.
	cl.stopSend.Store(true)
	tgt.stopWrite.Store(true)
	tgt.readPace.release()
	cl.readPace.release()
	drain := asymStall + 10*time.Second
	wait := func(ch chan error, what string) bool {
		select {
		case err := <-ch:
			return err == nil
		case <-time.After(drain):
			abort(fmt.Errorf("%s did not finish within %v of the end", what, drain))
			return false
		}
	}
	if wait(sendDone, "upload") {
		tgt.expect <- cl.sent.Load() // before the close, which ends the target's reading
	}
	if wait(tWriteDone, "target writer") {
		want := tgt.wrote.Load()
		for by := time.Now().Add(drain); cl.got.Load() < want; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(by) {
				abort(fmt.Errorf("the client read %d of the %d bytes the target wrote, then nothing for %v", cl.got.Load(), want, drain))
				break
			}
			if len(downDone) > 0 {
				break // the download ended early; its fault is recorded
			}
		}
		if got := cl.got.Load(); got > want {
			abort(fmt.Errorf("the client read %d bytes, more than the %d the target wrote", got, want))
		}
	}

	// The session is still up: a normal close ends it, echoed with 1000,
	// and the proxy then closes the target.
	cl.closing.Store(true)
	if err := c.sendClose(1000, "done"); err != nil {
		abort(fmt.Errorf("sending the close frame: %w", err))
	}
	if wait(downDone, "download") {
		if ce := cl.closed.Load(); ce == nil || ce.code != 1000 {
			abort(fmt.Errorf("close reply %+v, want code 1000", ce))
		}
	}
	wait(tReadDone, "target reader")
	report()
	if !p.running() {
		t.Errorf("websockify exited (%v)", p.state)
	}
}
