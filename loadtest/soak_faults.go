package main

import (
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"time"

	"github.com/gobwas/ws"

	"github.com/gowebsockify/websockify/wsclient"
)

// The soak's faults: the client-side misbehaviour injected in turn (resets,
// half-open sessions, stalled handshakes, garbage, bad frames), target
// restarts, and the probes that check the proxy still serves after each.

// Fault kinds, injected in turn by faultLoop; target restarts have their own
// schedule.
var faultKinds = []string{"client_reset", "halfopen_silent", "halfopen_partial", "stalled_handshake", "garbage", "bad_frame"}

const faultRestart = "target_restart"

func (r *soakRun) faultLoop() {
	rng := mrand.New(mrand.NewPCG(r.cfg.seed, 400))
	// Half-open probes wait for the proxy's timeouts (up to ~30 s); the
	// semaphore bounds how many sockets they hold.
	sem := make(chan struct{}, 32)
	for i := 0; r.pause(r.cfg.faultEvery); i++ {
		kind := faultKinds[i%len(faultKinds)]
		seed := rng.Uint64()
		select {
		case sem <- struct{}{}:
		default:
			continue
		}
		r.st.fault(kind)
		r.spawn(func() {
			defer func() { <-sem }()
			r.injectFault(kind, seed)
		})
	}
}

func (r *soakRun) injectFault(kind string, seed uint64) {
	rng := mrand.New(mrand.NewPCG(seed, 401))
	switch kind {
	case "client_reset":
		// Mid-download, or mid-echo of a large message.
		if rng.IntN(2) == 0 {
			_ = r.bulkDown(seed, 64<<20, false, false, int64(rng.IntN(1<<20)))
		} else {
			r.resetMidEcho(rng)
		}
	case "halfopen_silent":
		r.expectDropped(kind, nil, 0)
	case "halfopen_partial":
		r.expectDropped(kind, []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"), 0)
	case "stalled_handshake":
		// One byte every 500 ms: the request head never completes in time.
		r.expectDropped(kind, []byte(handshakeHead()), 500*time.Millisecond)
	case "garbage":
		g := make([]byte, 1+rng.IntN(2048))
		_, _ = stream(seed).Read(g)
		// Not a TLS ClientHello nor anything else a proxy could wait on
		// for more: the head ends, and it is nonsense.
		g[0] = 'X'
		g = append(g, "\r\n\r\n"...)
		r.expectDropped(kind, g, 0)
	case "bad_frame":
		r.badFrame(rng)
	}
}

func handshakeHead() string {
	return "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n\r\n"
}

// resetMidEcho sends half of a large echo message and resets.
func (r *soakRun) resetMidEcho(rng *mrand.Rand) {
	c, e, err := r.dial(false, false)
	if err != nil {
		r.ended("client-reset-open", err, e)
		return
	}
	c.deadline(r.cfg.opTimeout)
	msg := make([]byte, 1+(256<<10))
	msg[0] = opEcho
	wire := c.s.frame(msg)
	if _, err := c.s.conn.Write(wire[:len(wire)/2+rng.IntN(len(wire)/4)]); err != nil {
		r.ended("client-reset", err, e)
	}
	c.reset()
}

// expectDropped connects without a WebSocket handshake, sends prefix (one
// byte per drip if drip > 0), and then waits for the proxy to close the
// connection. Anything the proxy sends meanwhile (an HTTP error) is fine;
// still being open after halfOpenLimit is not.
func (r *soakRun) expectDropped(kind string, prefix []byte, drip time.Duration) {
	conn, err := net.DialTimeout("tcp", r.env.client.addr, r.cfg.opTimeout)
	if err != nil {
		r.st.fail(kind, &phaseError{"dial", err})
		return
	}
	defer conn.Close()
	start := time.Now()
	limit := start.Add(r.cfg.halfOpenLimit)
	closed := make(chan error, 1)
	go func() {
		_ = conn.SetReadDeadline(limit)
		_, err := io.Copy(io.Discard, conn)
		closed <- err
	}()
	finish := func(err error) {
		if isOurDeadline(err) {
			r.st.fail(kind, fmt.Errorf("the proxy kept the connection open for %v", r.cfg.halfOpenLimit))
			return
		}
		// EOF (nil from io.Copy) or a reset: the proxy let go.
		r.st.dropped(kind, time.Since(start), true)
	}
	if drip == 0 && len(prefix) > 0 {
		_ = conn.SetWriteDeadline(time.Now().Add(r.cfg.opTimeout))
		_, _ = conn.Write(prefix)
	}
	for i := 0; ; i++ {
		step := time.Second
		if drip > 0 {
			step = drip
		}
		select {
		case err := <-closed:
			finish(err)
			return
		case <-r.done:
			// The run ended before the proxy's timeout: not a verdict.
			r.st.dropped(kind, 0, false)
			return
		case <-time.After(step):
		}
		if drip > 0 && i < len(prefix) {
			_ = conn.SetWriteDeadline(time.Now().Add(r.cfg.opTimeout))
			_, _ = conn.Write(prefix[i : i+1])
		}
	}
}

// badFrame completes a handshake and one echo, then sends a frame that breaks
// RFC 6455. The proxy must answer close 1002 or drop the connection, and
// must not pass anything on.
func (r *soakRun) badFrame(rng *mrand.Rand) {
	c, e, err := r.dial(false, false)
	if err != nil {
		r.ended("bad_frame-open", err, e)
		return
	}
	defer c.reset()
	c.deadline(r.cfg.opTimeout)
	if err := c.write([]byte{opEcho, 'o', 'k'}); err != nil {
		r.ended("bad_frame", err, e)
		return
	}
	got := make([]byte, 2)
	k, err := c.readFull(got)
	r.st.check("bad_frame", got[:k], []byte("ok")[:k])
	if err != nil {
		r.ended("bad_frame", err, e)
		return
	}
	var wire []byte
	var what string
	bad := []byte("bad")
	switch rng.IntN(5) {
	case 0:
		what, wire = "unmasked client frame", wsclient.AppendFrame(nil, wsclient.Frame{Fin: true, Op: ws.OpBinary, Payload: bad}, nil)
	case 1:
		what, wire = "reserved opcode 3", c.s.ws.Encode(wsclient.Frame{Fin: true, Op: 0x3, Payload: bad})
	case 2:
		what, wire = "RSV1 without an extension", c.s.ws.Encode(wsclient.Frame{Fin: true, Rsv: 4, Op: ws.OpBinary, Payload: bad})
	case 3:
		what, wire = "continuation with no message", c.s.ws.Encode(wsclient.Frame{Fin: true, Op: ws.OpContinuation, Payload: bad})
	default:
		what, wire = "fragmented ping", c.s.ws.Encode(wsclient.Frame{Op: ws.OpPing, Payload: bad})
	}
	if _, err := c.s.conn.Write(wire); err != nil {
		return // already dropped
	}
	for {
		var p [64]byte
		n, err := c.read(p[:])
		if n > 0 {
			r.st.fail("bad_frame", fmt.Errorf("%s: the proxy passed %d bytes on", what, n))
			return
		}
		var cl *wsclient.CloseError
		switch {
		case err == nil:
			continue
		case errors.As(err, &cl) && cl.Code != 1002:
			if r.affected(e) {
				r.st.affected.Add(1)
				return
			}
			r.st.fail("bad_frame", fmt.Errorf("%s: want close 1002, got %v", what, err))
			return
		case isOurDeadline(err):
			r.st.fail("bad_frame", fmt.Errorf("%s: no close", what))
			return
		default:
			return // 1002, EOF or reset: all fine
		}
	}
}

// restartLoop kills the target child now and then, and starts it again on
// the same port while sessions are live.
func (r *soakRun) restartLoop() {
	for r.pause(r.cfg.restartEvery) {
		r.st.fault(faultRestart)
		if err := r.restartTarget(); err != nil {
			// Every later session would look fault-affected; say so loudly.
			r.st.fail(faultRestart, err)
			r.restartBroken.Store(true)
			return
		}
	}
}

func (r *soakRun) restartTarget() error {
	r.env.tmu.Lock()
	old := r.env.tgt
	r.env.tmu.Unlock()
	r.epoch.Add(1) // odd: down
	old.stop()
	// During the gap the proxy must still complete the handshake and then
	// say 1011: it cannot reach the target.
	gapEnd := time.Now().Add(r.cfg.restartGap)
	r.gapProbe()
	time.Sleep(time.Until(gapEnd))
	var tgt *targetProc
	var err error
	for try := 0; try < 20; try++ {
		if tgt, err = startTarget(targetSoak, old.addr, 0, false); err == nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("restart on %s: %w", old.addr, err)
	}
	r.env.tmu.Lock()
	r.env.tgt = tgt
	r.env.tmu.Unlock()
	r.epoch.Add(1) // even: up
	// And afterwards sessions work again.
	return r.probeWorks()
}

func (r *soakRun) gapProbe() {
	c, err := dialSoak(background, r.env.client, false)
	if err != nil {
		r.st.fail("restart-gap", err)
		return
	}
	defer c.reset()
	c.deadline(r.cfg.opTimeout)
	_ = c.write([]byte{opEcho, 'x'})
	var p [1]byte
	_, err = c.readFull(p[:])
	var cl *wsclient.CloseError
	if !errors.As(err, &cl) || cl.Code != 1011 {
		r.st.fail("restart-gap", fmt.Errorf("want close 1011 while the target is down, got %v", err))
	}
}

func (r *soakRun) probeWorks() error {
	c, err := dialSoak(background, r.env.client, false)
	if err != nil {
		return fmt.Errorf("after restart: %w", err)
	}
	defer c.close()
	c.deadline(r.cfg.opTimeout)
	if err := c.write([]byte{opEcho, 'u', 'p'}); err != nil {
		return fmt.Errorf("after restart: %w", err)
	}
	got := make([]byte, 2)
	k, err := c.readFull(got)
	r.st.check("restart-probe", got[:k], []byte("up")[:k])
	if err != nil {
		r.st.fail("after-restart", err)
	}
	return nil
}
