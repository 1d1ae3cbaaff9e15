package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"time"

	"github.com/gobwas/ws"
)

// This file is the soak and slow modes' view of a WebSocket session: unlike
// session.readFull it reports how a session ended (close code and reason),
// and it speaks the base64 subprotocol too, because a soak must tell "closed
// cleanly by the proxy" from "cut off" and must cover both codecs.

// wsClosed is a close frame from the proxy.
type wsClosed struct {
	code   int // 1005 when the frame had no code
	reason string
}

func (e *wsClosed) Error() string {
	return fmt.Sprintf("close frame %d %q", e.code, e.reason)
}

// soakConn is one WebSocket session through the proxy.
type soakConn struct {
	s   *session // the socket, its reader and masking key
	b64 bool
	raw []byte // base64 text received but not yet decoded (not a multiple of 4)
	dec []byte // decoded base64 payload not yet handed out
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

// dialSoak opens a WebSocket session with subprotocol binary or base64.
func dialSoak(ctx context.Context, c *client, b64 bool) (*soakConn, error) {
	d := net.Dialer{Timeout: c.timeout}
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, &phaseError{"dial", err}
	}
	_ = conn.SetDeadline(time.Now().Add(c.timeout))
	proto := "binary"
	if b64 {
		proto = "base64"
	}
	wd := ws.Dialer{Protocols: []string{proto}}
	br, hs, err := wd.Upgrade(conn, c.url)
	if err != nil {
		conn.Close()
		return nil, &phaseError{"handshake", err}
	}
	if hs.Protocol != proto {
		conn.Close()
		return nil, &phaseError{"handshake", fmt.Errorf("asked for subprotocol %q, got %q", proto, hs.Protocol)}
	}
	if br == nil {
		br = bufio.NewReaderSize(conn, 64<<10)
	}
	sc := &soakConn{s: &session{conn: conn, br: br}, b64: b64}
	if _, err := rand.Read(sc.s.mask[:]); err != nil {
		conn.Close()
		return nil, err
	}
	return sc, nil
}

func (c *soakConn) deadline(d time.Duration) { _ = c.s.conn.SetDeadline(time.Now().Add(d)) }

// write sends p as one data frame (text holding base64 in base64 mode).
func (c *soakConn) write(p []byte) error {
	if c.b64 {
		enc := make([]byte, base64.StdEncoding.EncodedLen(len(p)))
		base64.StdEncoding.Encode(enc, p)
		return c.s.send(maskedFrame(ws.OpText, enc, c.s.mask))
	}
	return c.s.send(maskedFrame(ws.OpBinary, p, c.s.mask))
}

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

// nextFrame reads frame headers until a data frame with payload, answering
// pings. A close frame becomes *wsClosed.
func (c *soakConn) nextFrame() error {
	s := c.s
	for s.left == 0 {
		h, err := ws.ReadHeader(s.br)
		if err != nil {
			return err
		}
		if h.Masked {
			return errors.New("server sent a masked frame")
		}
		switch h.OpCode {
		case ws.OpClose, ws.OpPing, ws.OpPong:
			if h.Length > 125 {
				return fmt.Errorf("control frame of %d bytes", h.Length)
			}
			body := make([]byte, h.Length)
			if _, err := io.ReadFull(s.br, body); err != nil {
				return err
			}
			switch h.OpCode {
			case ws.OpClose:
				cl := &wsClosed{code: 1005}
				if len(body) >= 2 {
					cl.code = int(binary.BigEndian.Uint16(body))
					cl.reason = string(body[2:])
				}
				return cl
			case ws.OpPing:
				if err := s.send(maskedFrame(ws.OpPong, body, s.mask)); err != nil {
					return err
				}
			}
		default:
			s.left = h.Length
		}
	}
	return nil
}

// read returns up to len(p) payload bytes (decoded in base64 mode).
func (c *soakConn) read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s := c.s
	if !c.b64 {
		if err := c.nextFrame(); err != nil {
			return 0, err
		}
		n := int(min(int64(len(p)), s.left))
		n, err := s.br.Read(p[:n])
		s.left -= int64(n)
		return n, err
	}
	for len(c.dec) == 0 {
		if err := c.nextFrame(); err != nil {
			return 0, err
		}
		if s.left > 64<<20 {
			return 0, fmt.Errorf("base64 frame of %d bytes", s.left)
		}
		start := len(c.raw)
		c.raw = append(c.raw, make([]byte, s.left)...)
		if _, err := io.ReadFull(s.br, c.raw[start:]); err != nil {
			return 0, err
		}
		s.left = 0
		// Each frame should be whole base64, but decoding only complete
		// quads keeps a proxy that splits text differently correct.
		whole := len(c.raw) / 4 * 4
		if whole == 0 {
			continue
		}
		buf := make([]byte, base64.StdEncoding.DecodedLen(whole))
		n, err := base64.StdEncoding.Decode(buf, c.raw[:whole])
		if err != nil {
			return 0, fmt.Errorf("base64 from proxy: %w", err)
		}
		c.dec = buf[:n]
		c.raw = append(c.raw[:0], c.raw[whole:]...)
	}
	n := copy(p, c.dec)
	c.dec = c.dec[n:]
	return n, nil
}

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
func (c *soakConn) reset() {
	if tc, ok := c.s.conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.s.conn.Close()
}

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
	var cl *wsClosed
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
