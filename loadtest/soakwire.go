package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"time"

	"github.com/gowebsockify/websockify/wsclient"
)

// This file is the soak and slow modes' view of a WebSocket session: unlike
// session.readFull it reports how a session ended (close code and reason),
// and it speaks the base64 subprotocol too, because a soak must tell "closed
// cleanly by the proxy" from "cut off" and must cover both codecs.

// soakConn is one WebSocket session through the proxy.
type soakConn struct {
	s   *session
	tls bool // over wss://
}

// kind names a checked stream for the tallies, marking wss:// sessions.
func (c *soakConn) kind(base string) string {
	if c.tls {
		return base + "/wss"
	}
	return base
}

// Target protocol of the soak target (first payload byte of a session):
//
//	'E'                     echo everything after this byte
//	'D' seed:8 n:8          the target sends n bytes of the stream of seed
//	'U' seed:8 n:8          the client sends n bytes of the stream of seed; the
//	                        target answers 8 bytes: how many of them differed
const (
	opEcho = 'E'
	opDown = 'D'
	opUp   = 'U'
)

// dialSoak opens a WebSocket session with subprotocol binary or base64,
// which the proxy must choose.
func dialSoak(ctx context.Context, c *client, b64 bool) (*soakConn, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	proto := "binary"
	if b64 {
		proto = "base64"
	}
	wc, err := c.handshake(conn, proto)
	if err != nil {
		return nil, err
	}
	if wc.Protocol() != proto {
		conn.Close()
		return nil, &phaseError{"handshake", fmt.Errorf("asked for subprotocol %q, got %q", proto, wc.Protocol())}
	}
	return &soakConn{s: &session{conn: conn, ws: wc}, tls: c.tls}, nil
}

func (c *soakConn) deadline(d time.Duration) { _ = c.s.conn.SetDeadline(time.Now().Add(d)) }

// write sends p as one data frame (text holding base64 in base64 mode).
func (c *soakConn) write(p []byte) error { return c.s.ws.Send(p) }

// writeSplit sends p as one to three frames, so frame boundaries inside a
// message of the target stream vary.
func (c *soakConn) writeSplit(p []byte, cuts int, pick func(int) int) error {
	for cuts > 0 && len(p) > 1 {
		n := 1 + pick(len(p)-1)
		if err := c.write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
		cuts--
	}
	return c.write(p)
}

// read returns up to len(p) payload bytes (decoded in base64 mode); a close
// frame is a *wsclient.CloseError.
func (c *soakConn) read(p []byte) (int, error) { return c.s.ws.Read(p) }

// readFull reads exactly len(p) bytes, or fewer and an error; n says how
// many arrived, so even a cut-off session's bytes get verified.
func (c *soakConn) readFull(p []byte) (int, error) {
	got := 0
	for got < len(p) {
		n, err := c.read(p[got:])
		got += n
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// close sends a normal close frame and closes the socket.
func (c *soakConn) close() { c.s.close() }

// reset closes with SO_LINGER 0: the peer gets a RST, not a FIN.
func (c *soakConn) reset() { _ = c.s.ws.Reset() }

// opHeader is the first payload of a 'D' or 'U' session.
func opHeader(op byte, seed, n uint64) []byte {
	b := []byte{op}
	b = binary.BigEndian.AppendUint64(b, seed)
	return binary.BigEndian.AppendUint64(b, n)
}

// stream is the pseudo-random byte sequence of a seed, known to both ends.
func stream(seed uint64) io.Reader {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	binary.LittleEndian.PutUint64(key[8:], 0x736f616b) // "soak": keeps seeds apart from other users of ChaCha8
	return mrand.NewChaCha8(key)
}

// diffCount is the number of positions where a and b differ (a and b have
// the same length).
func diffCount(a, b []byte) int64 {
	if string(a) == string(b) {
		return 0
	}
	var n int64
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

// logUniform picks a size in [lo, hi] with every power of two equally
// likely, so both tiny and large messages are common.
func logUniform(f float64, lo, hi int) int {
	v := int(math.Exp(math.Log(float64(lo)) + f*(math.Log(float64(hi))-math.Log(float64(lo)))))
	return max(lo, min(hi, v))
}

// cause explains a failed write: when the proxy sent a close frame and then
// closed, our write may fail with a reset before we read the frame, which is
// still in the receive buffer. The frame is the real cause.
func (c *soakConn) cause(err error) error {
	var cl *wsclient.CloseError
	if err == nil || errors.As(err, &cl) {
		return err
	}
	_ = c.s.conn.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 64<<10)
	for {
		if _, rerr := c.read(buf); rerr != nil {
			if errors.As(rerr, &cl) {
				return cl
			}
			return err
		}
	}
}
