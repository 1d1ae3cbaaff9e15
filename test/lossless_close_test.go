package test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// Every close is lossless (SPEC section 4): whatever ended the session, the
// client gets the bytes queued for it and the close frame (or the whole
// HTTP error response), and then a FIN. A socket closed while the peer's
// bytes are still unread makes the kernel answer with a reset, which
// throws away what was still queued towards the client; a client that is
// still sending when the session ends is the usual case (a VNC client's
// input never stops), so these clients keep sending until they learn the
// session is over, and then stop, as a browser does.
//
// A reset is looked for on both halves of the client: while one goroutine
// writes and another reads, whichever touches the socket first takes the
// ECONNRESET and the other sees a plain EOF. The proxy is expected to read
// and discard what still arrives for a while after it closed its side (the
// SPEC's "short bound"); these clients stop within milliseconds, so a reset
// on their writer means the proxy closed with their bytes unread.
const (
	lcTargetBytes = 4 << 20 // what the target sends before it ends
	lcUploadRate  = 5e6     // bytes per second the clients send meanwhile
	lcRounds      = 20      // sessions per transport and case
	lcGroup       = 4       // rounds run at once
	lcWait        = 10 * time.Second
)

// lcTransport dials a session over ws:// or wss://.
type lcTransport struct {
	name string
	dial func() (*wsClient, error)
	raw  func() (net.Conn, error) // a connection before any HTTP
}

func lcTransports(p *proxy, pk *testPKI) []lcTransport {
	return []lcTransport{
		{"ws", func() (*wsClient, error) { return dialWSE(p, modeBinary, nil) }, p.dial},
		{"wss", func() (*wsClient, error) { return dialWSS(p, pk.clientTLS(nil), modeBinary) },
			func() (net.Conn, error) { return dialTLS(p, pk.clientTLS(nil)) }},
	}
}

// sessionEnd is what a client saw at the end of its session.
type sessionEnd struct {
	got      int64  // payload bytes that arrived, checked against the pattern
	corrupt  error  // the first byte that was not the pattern's
	code     int    // close code; -1 when no close frame came
	reason   string // close reason
	readErr  error  // what ended the reading before a close frame
	after    string // after the close frame: "eof", "reset", "open", "data" or an error
	writeErr error  // the client's writer failed before the end
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// writeReset tells whether a write failed because the peer reset the
// connection: ECONNRESET, or EPIPE once the reset has been seen. Reading
// and writing at once, the writer may take the reset and leave the reader
// a plain EOF, so both are looked at.
func writeReset(err error) bool { return isReset(err) || errors.Is(err, syscall.EPIPE) }

// connEnd classifies how a connection ends once nothing more is expected.
func connEnd(conn net.Conn, r io.Reader) string {
	_ = conn.SetReadDeadline(time.Now().Add(lcWait))
	var buf [512]byte
	n, err := r.Read(buf[:])
	switch {
	case n > 0:
		return fmt.Sprintf("data (%d more bytes)", n)
	case errors.Is(err, io.EOF):
		return "eof"
	case isReset(err):
		return "reset"
	case isTimeout(err):
		return "open"
	case err == nil:
		return "no error and no data"
	}
	return err.Error()
}

// readToEnd reads data frames, checked against the pattern from offset 0,
// until a close frame; then it has stop silence the client's writer,
// answers the close as a browser does and sees how the connection ends.
func readToEnd(c *wsClient, stop func() error) sessionEnd {
	e := sessionEnd{code: -1}
	for {
		_ = c.conn.SetReadDeadline(time.Now().Add(lcWait))
		f, err := readFrame(c.br)
		if err != nil {
			e.readErr = err
			e.writeErr = stop()
			return e
		}
		switch f.op {
		case ws.OpBinary:
			if e.corrupt == nil {
				e.corrupt = checkPattern(f.payload, e.got)
			}
			e.got += int64(len(f.payload))
		case ws.OpClose:
			code, reason := f.closeCode()
			e.code, e.reason = int(code), reason
			e.writeErr = stop()
			_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = c.conn.Write(masked(ws.OpClose, f.payload[:min(2, len(f.payload))])) // may meet a closed socket: not the point
			e.after = connEnd(c.conn, c.br)
			return e
		default:
			if e.corrupt == nil {
				e.corrupt = fmt.Errorf("unexpected frame op %v after %d bytes", f.op, e.got)
			}
		}
	}
}

// faults lists what is wrong with e; want < 0 skips the byte count.
func (e sessionEnd) faults(want int64, wantCode int) []string {
	var k []string
	if isReset(e.readErr) || writeReset(e.writeErr) || e.after == "reset" {
		k = append(k, "reset")
	}
	if e.readErr != nil && !isReset(e.readErr) && !errors.Is(e.readErr, io.EOF) && !errors.Is(e.readErr, io.ErrUnexpectedEOF) {
		k = append(k, "read error: "+e.readErr.Error())
	}
	if want >= 0 && e.got < want {
		k = append(k, "short data")
	}
	if want >= 0 && e.got > want {
		k = append(k, "extra data")
	}
	if e.corrupt != nil {
		k = append(k, "corrupt data")
	}
	switch {
	case e.code < 0:
		k = append(k, "no close frame")
	case e.code != wantCode:
		k = append(k, fmt.Sprintf("close code %d", e.code))
	}
	if e.code >= 0 && e.after != "eof" && e.after != "reset" {
		k = append(k, "after the close frame: "+e.after)
	}
	return k
}

func (e sessionEnd) String() string {
	s := fmt.Sprintf("%d bytes", e.got)
	if e.corrupt != nil {
		s += fmt.Sprintf(" (%v)", e.corrupt)
	}
	if e.code >= 0 {
		s += fmt.Sprintf(", close %d %q, then %s", e.code, e.reason, e.after)
	} else {
		s += ", no close frame"
	}
	if e.readErr != nil {
		s += fmt.Sprintf(", read: %v", e.readErr)
	}
	if e.writeErr != nil {
		s += fmt.Sprintf(", client write: %v", e.writeErr)
	}
	return s
}

// tally counts failed rounds (or sessions) by kind and reports them.
type tally struct {
	mu     sync.Mutex
	unit   string // what is counted: "rounds" when empty
	rounds int
	failed int
	kinds  map[string]int
	first  []string // a few failed rounds in detail
}

func (ta *tally) add(round int, faults []string, detail string) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	ta.rounds++
	if len(faults) == 0 {
		return
	}
	ta.failed++
	if ta.kinds == nil {
		ta.kinds = map[string]int{}
	}
	for _, k := range faults {
		ta.kinds[k]++
	}
	if len(ta.first) < 5 {
		ta.first = append(ta.first, fmt.Sprintf("#%d: %s: %s", round, strings.Join(faults, ", "), detail))
	}
}

func (ta *tally) report(t *testing.T, what string) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	unit := ta.unit
	if unit == "" {
		unit = "rounds"
	}
	if ta.failed == 0 {
		t.Logf("%s: all %d %s clean", what, ta.rounds, unit)
		return
	}
	var kinds []string
	for k, n := range ta.kinds {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(kinds)
	t.Errorf("%s: %d of %d %s lost something (%s); for example:\n\t%s",
		what, ta.failed, ta.rounds, unit, strings.Join(kinds, ", "), strings.Join(ta.first, "\n\t"))
}

// inGroups runs round(0..n-1), lcGroup at a time.
func inGroups(n int, round func(i int)) {
	for i := 0; i < n; i += lcGroup {
		var wg sync.WaitGroup
		for j := i; j < min(n, i+lcGroup); j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				round(j)
			}()
		}
		wg.Wait()
	}
}

// pacedWriter calls write with chunks from next at rate bytes per second
// until stopped; stop returns the first write error seen before stopping.
type pacedWriter struct {
	quit chan struct{}
	done chan error
}

func startWriter(rate float64, next func(rng *rand.Rand) []byte, write func([]byte) error) *pacedWriter {
	w := &pacedWriter{quit: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
		pace := pacer{rate: rate}
		for {
			select {
			case <-w.quit:
				w.done <- nil
				return
			default:
			}
			b := next(rng)
			if err := write(b); err != nil {
				w.done <- err
				return
			}
			pace.account(len(b))
		}
	}()
	return w
}

// stop ends the writer (waiting at most lcWait for a write in progress).
func (w *pacedWriter) stop() error {
	select {
	case <-w.quit:
	default:
		close(w.quit)
	}
	select {
	case err := <-w.done:
		return err
	case <-time.After(lcWait):
		return fmt.Errorf("a write still blocked %v after the session ended", lcWait)
	}
}

// uploadFrames is what a VNC client sends: masked binary messages of a few
// bytes to a few KiB.
func uploadFrames(rng *rand.Rand) []byte {
	return masked(ws.OpBinary, randomBytes(rng, 1+rng.IntN(8<<10)))
}

// TestCloseAfterTargetEnds: the target sends exactly 4 MiB and then
// closes, while its client keeps sending at 5 MB/s and reads as fast as it
// can. The client must read all 4 MiB in order, then a close frame 1000,
// and only then see the connection end, with a FIN.
func TestCloseAfterTargetEnds(t *testing.T) {
	t.Parallel()
	pk := newPKI(t)
	tg := startTarget(t, "tcp", "127.0.0.1:0", func(c *tconn) {
		sendPatternAndDrain(c, func() { _ = c.Conn.(*net.TCPConn).CloseWrite() })
	})
	p := startProxy(t, tg.addr, "--cert", pk.bundleFile)
	for _, tr := range lcTransports(p, pk) {
		t.Run(tr.name, func(t *testing.T) {
			t.Parallel()
			var ta tally
			inGroups(lcRounds, func(i int) {
				c, err := tr.dial()
				if err != nil {
					ta.add(i, []string{"handshake failed"}, err.Error())
					return
				}
				defer c.conn.Close()
				w := startWriter(lcUploadRate, uploadFrames, c.write)
				e := readToEnd(c, w.stop)
				ta.add(i, e.faults(lcTargetBytes, 1000), e.String())
			})
			ta.report(t, tr.name+": the target sent 4 MiB and closed")
		})
	}
}

// TestCloseLosesNothingOnErrors: sessions and requests the proxy ends
// itself, while the client is still sending.
func TestCloseLosesNothingOnErrors(t *testing.T) {
	t.Parallel()
	pk := newPKI(t)

	// (a) A protocol violation (an unmasked frame) arrives while 4 MiB from
	// the target wait to be read, and the client goes on sending. Which of
	// those bytes the proxy still sends is a race; what is not: a close
	// frame 1002 comes, after nothing but the target's bytes in order, and
	// then the connection ends with a FIN, not a reset.
	t.Run("protocol-error", func(t *testing.T) {
		t.Parallel()
		written := make(chan struct{}, lcRounds*2)
		tg := startTarget(t, "tcp", "127.0.0.1:0", func(c *tconn) {
			sendPatternAndDrain(c, func() { written <- struct{}{} })
		})
		p := startProxy(t, tg.addr, "--cert", pk.bundleFile)
		for _, tr := range lcTransports(p, pk) {
			t.Run(tr.name, func(t *testing.T) {
				// Rounds one at a time: each waits for its own target to
				// have written everything.
				var ta tally
				queued := 0
				for i := range lcRounds {
					c, err := tr.dial()
					if err != nil {
						ta.add(i, []string{"handshake failed"}, err.Error())
						continue
					}
					select {
					case <-written:
						queued++
					case <-time.After(5 * time.Second):
						// Not all of it fitted in the buffers on the way;
						// the round still tests the close.
					}
					bad := encodeFrame(true, 0, ws.OpBinary, nil, []byte("unmasked"))
					if err := c.write(bad); err != nil {
						ta.add(i, []string{"could not send the violation"}, err.Error())
						c.conn.Close()
						continue
					}
					w := startWriter(lcUploadRate, func(rng *rand.Rand) []byte { return randomBytes(rng, 4<<10) }, c.write)
					e := readToEnd(c, w.stop)
					ta.add(i, e.faults(-1, 1002), e.String())
					c.conn.Close()
				}
				t.Logf("%s: in %d of %d rounds the target's 4 MiB were all queued before the violation", tr.name, queued, lcRounds)
				ta.report(t, tr.name+": protocol violation with 4 MiB queued")
			})
		}
	})

	// (b) A request the proxy refuses (no --web: 405) that carries a body
	// the client is still sending: the client gets the whole response, then
	// a FIN.
	t.Run("refused-request-with-body", func(t *testing.T) {
		t.Parallel()
		const bodyLen = 1000000
		p := startProxy(t, closedPort(t), "--cert", pk.bundleFile)
		for _, tr := range lcTransports(p, pk) {
			t.Run(tr.name, func(t *testing.T) {
				t.Parallel()
				var ta tally
				inGroups(lcRounds, func(i int) {
					faults, detail := refusedPost(tr.raw, bodyLen)
					ta.add(i, faults, detail)
				})
				ta.report(t, tr.name+": POST with a 1 MB body refused with 405")
			})
		}
	})
}

// refusedPost sends a POST whose body is still being written while the
// response is read; it returns what went wrong.
func refusedPost(dial func() (net.Conn, error), bodyLen int) ([]string, string) {
	conn, err := dial()
	if err != nil {
		return []string{"dial failed"}, err.Error()
	}
	defer conn.Close()
	// The head goes out with the start of the body and the rest follows as
	// fast as the socket takes it, as an upload does: the proxy's answer
	// comes while most of the body is still on its way.
	head := fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", bodyLen)
	left := bodyLen
	w := startWriter(1e12, func(rng *rand.Rand) []byte {
		n := min(left, 64<<10)
		left -= n
		b := randomBytes(rng, n)
		if head != "" {
			b, head = append([]byte(head), b...), ""
		}
		return b
	}, func(b []byte) error {
		if len(b) == 0 {
			time.Sleep(time.Millisecond) // the whole body is out
			return nil
		}
		_ = conn.SetWriteDeadline(time.Now().Add(lcWait))
		_, err := conn.Write(b)
		return err
	})

	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(lcWait))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		werr := w.stop()
		k := []string{"no response"}
		if isReset(err) || writeReset(werr) {
			k = append(k, "reset")
		}
		return k, fmt.Sprintf("reading the response head: %v (client write: %v)", err, werr)
	}
	body, err := io.ReadAll(resp.Body)
	werr := w.stop()
	var k []string
	if isReset(err) || writeReset(werr) {
		k = append(k, "reset")
	}
	if resp.StatusCode != 405 {
		k = append(k, fmt.Sprintf("status %d", resp.StatusCode))
	}
	if err != nil || int64(len(body)) != resp.ContentLength {
		k = append(k, "short response body")
		return k, fmt.Sprintf("status %d, %d of %d body bytes: %v (client write: %v)", resp.StatusCode, len(body), resp.ContentLength, err, werr)
	}
	after := connEnd(conn, br)
	switch after {
	case "eof":
	case "reset":
		if len(k) == 0 || k[0] != "reset" {
			k = append(k, "reset")
		}
	default:
		k = append(k, "after the response: "+after)
	}
	return k, fmt.Sprintf("status %d with all %d body bytes, then %s (client write: %v)", resp.StatusCode, len(body), after, werr)
}

// sendPatternAndDrain is a target that writes lcTargetBytes of the pattern,
// calls sent, and reads everything the proxy sends until it closes (or
// 2 × lcWait): a target that closes with unread input would reset the
// connection itself, and its kernel could throw away its own unsent bytes.
func sendPatternAndDrain(c *tconn, sent func()) {
	drained := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, c); close(drained) }()
	buf := make([]byte, 64<<10)
	for off := 0; off < lcTargetBytes; off += len(buf) {
		fillPattern(buf, int64(off))
		_ = c.SetWriteDeadline(time.Now().Add(lcWait))
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
	sent()
	select { // stays open until the proxy closes it
	case <-drained:
	case <-time.After(2 * lcWait):
	}
}
