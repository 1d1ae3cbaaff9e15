package main

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"time"

	"github.com/gobwas/ws"

	"github.com/gowebsockify/websockify/wsclient"
)

// The soak's traffic kinds beyond plain echo, bulk and churn: slow readers,
// half-closing clients and fragmented messages, every byte checked.

// slowReader downloads again and again, reading each download slowly first.
func (r *soakRun) slowReader(id uint64, b64 bool) {
	rng := mrand.New(mrand.NewPCG(r.cfg.seed, 500+id))
	for !r.stopping() {
		if err := r.slowDownload(rng, b64, r.wantWSS(rng)); err != nil {
			r.pause(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		}
	}
}

// slowDownload asks for 8 MiB .. 32 MiB (at most -bulk-max) of a seeded
// stream and reads it for 2-6 s in reads of 256 B .. 4 KiB with 5-20 ms
// pauses (at most ~800 KB/s, far below what loopback carries), so the
// socket buffers fill and the proxy has to stop reading its target; then it
// reads the rest at full speed. Every byte is checked.
func (r *soakRun) slowDownload(rng *mrand.Rand, b64, wss bool) error {
	hi := int(min(32<<20, r.cfg.bulkMax))
	n := int64(logUniform(rng.Float64(), min(8<<20, hi), hi))
	seed := rng.Uint64()
	c, e, err := r.dial(b64, wss)
	if err != nil {
		r.ended("slow-reader-open", err, e)
		return err
	}
	r.st.open.Add(1)
	defer r.st.open.Add(-1)
	defer c.close()
	kind := c.kind("slow-reader")
	c.deadline(r.cfg.opTimeout)
	if err := c.write(opHeader(opDown, seed, uint64(n))); err != nil {
		r.ended(kind, c.cause(err), e)
		return err
	}
	want := stream(seed)
	got, exp := make([]byte, 64<<10), make([]byte, 64<<10)
	slowUntil := time.Now().Add(2*time.Second + time.Duration(rng.Int64N(int64(4*time.Second))))
	var read int64
	for read < n {
		if r.stopping() {
			return nil
		}
		size := int64(len(got))
		slow := time.Now().Before(slowUntil)
		if slow {
			size = int64(256 << rng.IntN(5))
		}
		c.deadline(r.cfg.opTimeout)
		k, err := c.read(got[:min(size, n-read)])
		if k > 0 {
			_, _ = want.Read(exp[:k])
			r.st.check(kind, got[:k], exp[:k])
			read += int64(k)
		}
		if err != nil {
			r.ended(kind, err, e)
			return err
		}
		if slow {
			time.Sleep(time.Duration(5+rng.IntN(16)) * time.Millisecond)
		}
	}
	r.st.slowDone.Add(1)
	return nil
}

// Half-close outcomes, as documented in BENCHMARKS.md ("## Soak"): our
// proxy treats a client's FIN (or TLS close_notify) as the client gone, like
// Python's websockify: the session ends at once, the echoes not yet relayed
// are dropped, and the client gets what was already sent, then EOF, with no
// close frame and no reset. A client's close frame is answered with a close
// frame of the same code after whatever was already queued, then EOF. In
// both cases every byte that does arrive must be the right one.
const (
	halfCloseTCP   = "tcp-halfclose"
	halfCloseFrame = "close-frame"
)

// halfCloser opens echo sessions that each do a few round trips and then
// end, in turn, by a TCP half-close or by a close frame, with one more
// message's echo still due.
func (r *soakRun) halfCloser(id uint64) {
	rng := mrand.New(mrand.NewPCG(r.cfg.seed, 600+id))
	for i := 0; !r.stopping(); i++ {
		how := halfCloseTCP
		if i%2 == 1 {
			how = halfCloseFrame
		}
		if err := r.halfCloseSession(rng, how, r.wantWSS(rng)); err != nil {
			r.pause(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		}
		r.pause(time.Duration(rng.IntN(50)) * time.Millisecond)
	}
}

func (r *soakRun) halfCloseSession(rng *mrand.Rand, how string, wss bool) error {
	c, e, err := r.dial(false, wss)
	if err != nil {
		r.ended("halfclose-open", err, e)
		return err
	}
	r.st.open.Add(1)
	defer r.st.open.Add(-1)
	defer c.reset()
	kind := c.kind("halfclose")
	c.deadline(r.cfg.opTimeout)
	if err := c.write([]byte{opEcho}); err != nil {
		r.ended(kind, c.cause(err), e)
		return err
	}
	src := stream(rng.Uint64())
	for i := rng.IntN(3); i >= 0; i-- {
		msg := make([]byte, 1+rng.IntN(4<<10))
		_, _ = src.Read(msg)
		c.deadline(r.cfg.opTimeout)
		if err := c.write(msg); err != nil {
			r.ended(kind, c.cause(err), e)
			return err
		}
		got := make([]byte, len(msg))
		k, err := c.readFull(got)
		r.st.check(kind, got[:k], msg[:k])
		if err != nil {
			r.ended(kind, err, e)
			return err
		}
	}
	last := make([]byte, logUniform(rng.Float64(), 1, 256<<10))
	_, _ = src.Read(last)
	c.deadline(r.cfg.opTimeout)
	err = c.write(last)
	if err == nil {
		if how == halfCloseTCP {
			err = c.closeWrite()
		} else {
			err = c.s.ws.SendClose(1000, "")
		}
	}
	if err != nil {
		r.ended(kind, c.cause(err), e)
		return err
	}
	// What comes back: part or all of last's echo, then the end. More
	// than that is a fault too, counted as corrupted bytes.
	got := make([]byte, len(last)+1)
	k, end := c.readFull(got)
	extra := max(0, k-len(last))
	r.st.check(kind, got[:k-extra], last[:k-extra])
	if extra > 0 {
		r.st.counted(kind, int64(extra), int64(extra), func() string {
			return fmt.Sprintf("%s: %d bytes more than the echo due", kind, extra)
		})
	}
	outcome := endOutcome(end)
	var cl *wsclient.CloseError
	if errors.As(end, &cl) {
		outcome += " then " + c.drained()
	}
	share := "no echo"
	switch {
	case k >= len(last):
		share = "whole echo"
	case k > 0:
		share = "part of the echo"
	}
	r.st.endedAs(fmt.Sprintf("%s: %s (%s)", how, outcome, share))
	wantEnd := map[string]string{halfCloseTCP: "eof", halfCloseFrame: "close-1000 then eof"}[how]
	if outcome != wantEnd && !r.affected(e) {
		r.st.fail(kind+" "+how, fmt.Errorf("ended by %s, want %s: %w", outcome, wantEnd, end))
	}
	return nil
}

// closeWrite shuts down the sending side: close_notify for wss, then FIN.
func (c *soakConn) closeWrite() error {
	nc := c.s.conn
	if tc, ok := nc.(*tls.Conn); ok {
		if err := tc.CloseWrite(); err != nil {
			return err
		}
		nc = tc.NetConn()
	}
	return nc.(*net.TCPConn).CloseWrite()
}

// endOutcome names how reading a session ended.
func endOutcome(err error) string {
	var cl *wsclient.CloseError
	switch {
	case err == nil:
		return "open"
	case errors.As(err, &cl):
		return fmt.Sprintf("close-%d", cl.Code)
	case isOurDeadline(err):
		return "timeout"
	}
	if c := causeOf(err); c != "other" {
		return c
	}
	return err.Error()
}

// drained reads the socket after a close frame: "eof" for a clean end,
// "data" when more came, "open" when nothing came within 2 s.
func (c *soakConn) drained() string {
	_ = c.s.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	var p [1]byte
	n, err := c.s.conn.Read(p[:])
	switch {
	case n > 0:
		return "data"
	case err == nil:
		return "open"
	}
	return endOutcome(err)
}

// fragmenter keeps echo sessions sending fragmented messages.
func (r *soakRun) fragmenter(id uint64, b64 bool) {
	rng := mrand.New(mrand.NewPCG(r.cfg.seed, 700+id))
	for !r.stopping() {
		life := r.cfg.lifeMin + time.Duration(rng.Int64N(int64(r.cfg.lifeMax-r.cfg.lifeMin)+1))
		if err := r.fragmentedSession(rng, b64, r.wantWSS(rng), time.Now().Add(life)); err != nil {
			r.pause(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		}
	}
}

// fragmentedSession sends messages of 2 B .. 64 KiB, each as a first data
// frame and 1-5 continuation frames with pings between fragments (RFC 6455
// allows control frames there), and checks the echo of the whole message.
// In base64 sessions the text is cut anywhere, mid-quad too.
func (r *soakRun) fragmentedSession(rng *mrand.Rand, b64, wss bool, until time.Time) error {
	c, e, err := r.dial(b64, wss)
	if err != nil {
		r.ended("fragmented-open", err, e)
		return err
	}
	r.st.open.Add(1)
	defer r.st.open.Add(-1)
	defer c.close()
	kind := c.kind("fragmented")
	c.deadline(r.cfg.opTimeout)
	if err := c.write([]byte{opEcho}); err != nil {
		r.ended(kind, c.cause(err), e)
		return err
	}
	src := stream(rng.Uint64())
	for !r.stopping() && time.Now().Before(until) {
		msg := make([]byte, logUniform(rng.Float64(), 2, 64<<10))
		_, _ = src.Read(msg)
		payload, op := msg, ws.OpBinary
		if b64 {
			payload, op = []byte(base64.StdEncoding.EncodeToString(msg)), ws.OpText
		}
		var wire []byte
		for frag, left := 0, payload; len(left) > 0; frag++ {
			n := len(left)
			if frag < 5 && n > 1 {
				n = 1 + rng.IntN(n-1) // leaves at least one byte for a later fragment
				if frag > 0 && rng.IntN(3) == 0 {
					n = len(left) // sometimes fewer fragments
				}
			}
			f := wsclient.Frame{Fin: n == len(left), Op: ws.OpContinuation, Payload: left[:n]}
			if frag == 0 {
				f.Op = op
			}
			wire = append(wire, c.s.ws.Encode(f)...)
			left = left[n:]
			if len(left) > 0 && rng.IntN(2) == 0 {
				wire = append(wire, c.s.ws.Encode(wsclient.Frame{Fin: true, Op: ws.OpPing, Payload: []byte("between")})...)
			}
		}
		c.deadline(r.cfg.opTimeout)
		if err := c.s.ws.WriteRaw(wire); err != nil {
			r.ended(kind, c.cause(err), e)
			return err
		}
		got := make([]byte, len(msg))
		k, err := c.readFull(got)
		r.st.sent.Add(int64(len(msg)))
		r.st.check(kind, got[:k], msg[:k])
		if err != nil {
			r.ended(kind, err, e)
			return err
		}
		r.st.fragmented.Add(1)
		if r.cfg.think > 0 && !r.pause(time.Duration(rng.Int64N(2*int64(r.cfg.think)+1))) {
			break
		}
	}
	return nil
}
