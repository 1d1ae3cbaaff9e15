package wsclient

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/gobwas/ws"
)

// Conn is the client end of one WebSocket connection, after the handshake.
type Conn struct {
	nc      net.Conn
	br      *bufio.Reader  // everything is read through it: the handshake may have buffered frames
	resp    *http.Response // nil with Options.DropResponse
	proto   string         // the subprotocol the server chose
	timeout time.Duration  // per read or write; 0: the caller sets deadlines
	mask    [4]byte        // this connection's masking key, used for every frame it sends
	base64  bool           // base64 subprotocol (always for Hixie)
	hixie   int            // 0 for HyBi, else 75 or 76

	left int64  // Read: payload bytes still to come in the current frame
	b64  []byte // Read, base64 mode: text received, not yet decoded (less than a quad)
	dec  []byte // Read, base64 mode: decoded bytes not yet handed out
}

// NetConn is the connection under the WebSocket.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Reader is the buffered reader frames are read from; the handshake's
// reply may have left frames in it.
func (c *Conn) Reader() *bufio.Reader { return c.br }

// Response is the server's handshake reply (its body is empty), or nil if
// Options.DropResponse said not to keep it.
func (c *Conn) Response() *http.Response { return c.resp }

// Protocol is the subprotocol the server chose ("" for none; "base64" for
// Hixie, which has no other).
func (c *Conn) Protocol() string { return c.proto }

// Base64 says whether data travels as base64 text (subprotocol base64, or
// any Hixie connection).
func (c *Conn) Base64() bool { return c.base64 }

// Hixie is 75 or 76 for a Hixie connection, 0 for HyBi.
func (c *Conn) Hixie() int { return c.hixie }

// WrapReader makes further reads come from wrap(the connection), after what
// is already buffered: to throttle the client's reading, for instance.
func (c *Conn) WrapReader(wrap func(io.Reader) io.Reader) {
	pending, _ := c.br.Peek(c.br.Buffered())
	pre := bytes.NewReader(append([]byte(nil), pending...))
	c.br = bufio.NewReaderSize(io.MultiReader(pre, wrap(c.nc)), c.br.Size())
}

func (c *Conn) readDeadline() {
	if c.timeout > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(c.timeout))
	}
}

// ---- writing ----

// WriteRaw writes b as it is: frames built by the caller, or garbage.
func (c *Conn) WriteRaw(b []byte) error {
	if c.timeout > 0 {
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.timeout))
	}
	_, err := c.nc.Write(b)
	return err
}

// Encode is the wire form of f masked with the connection's key. Building
// a frame once and writing it many times keeps masking out of a load
// generator's per-byte cost.
func (c *Conn) Encode(f Frame) []byte { return AppendFrame(nil, f, &c.mask) }

// WriteFrame writes f, masked.
func (c *Conn) WriteFrame(f Frame) error { return c.WriteRaw(c.Encode(f)) }

// DataFrame is the wire form of p as one whole data message in the
// connection's mode: a binary frame, a text frame of base64, or a Hixie
// 0x00 ... 0xFF frame.
func (c *Conn) DataFrame(p []byte) []byte {
	switch {
	case c.hixie != 0:
		s := base64.StdEncoding.EncodeToString(p)
		return append(append([]byte{0x00}, s...), 0xFF)
	case c.base64:
		enc := make([]byte, base64.StdEncoding.EncodedLen(len(p)))
		base64.StdEncoding.Encode(enc, p)
		return c.Encode(Frame{Fin: true, Op: ws.OpText, Payload: enc})
	}
	return c.Encode(Frame{Fin: true, Op: ws.OpBinary, Payload: p})
}

// Send writes p as one message.
func (c *Conn) Send(p []byte) error { return c.WriteRaw(c.DataFrame(p)) }

// SendClose writes a close frame with code and reason (Hixie: 0xFF 0x00).
func (c *Conn) SendClose(code uint16, reason string) error {
	if c.hixie != 0 {
		return c.WriteRaw([]byte{0xFF, 0x00})
	}
	return c.WriteFrame(Frame{Fin: true, Op: ws.OpClose, Payload: ClosePayload(code, reason)})
}

// Close sends a normal close frame (waiting at most a second to write it)
// and closes the socket without waiting for the answer.
func (c *Conn) Close() error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_ = c.SendClose(1000, "")
	return c.nc.Close()
}

// Reset closes the socket with SO_LINGER 0: the server gets a RST, not a FIN.
func (c *Conn) Reset() error {
	if tc, ok := c.nc.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	return c.nc.Close()
}

// ---- reading frames and messages ----

// ReadFrame reads one HyBi frame, refusing masked frames and RSV bits (a
// server sends neither without an extension).
func (c *Conn) ReadFrame() (Frame, error) {
	c.readDeadline()
	f, err := ReadFrame(c.br)
	if err != nil {
		return f, err
	}
	if f.Masked {
		return f, errors.New("server frame is masked")
	}
	if f.Rsv != 0 {
		return f, errors.New("server frame has RSV bits set")
	}
	return f, nil
}

// closeError is the *CloseError a close frame's payload stands for.
func closeError(payload []byte) *CloseError {
	if len(payload) < 2 {
		return &CloseError{Code: CloseNoStatus}
	}
	return &CloseError{Code: binary.BigEndian.Uint16(payload), Reason: string(payload[2:])}
}

// ReadMessage reads the next data message, checking that the server keeps
// to the protocol (data opcode matching the subprotocol, fragments in
// order), and returns its payload decoded from base64 in base64 mode. Pings
// are answered, pongs skipped; a close frame is a *CloseError.
func (c *Conn) ReadMessage() ([]byte, error) {
	if c.hixie != 0 {
		return c.readHixieMessage()
	}
	var msg []byte
	started := false
	for {
		f, err := c.ReadFrame()
		if err != nil {
			return nil, err
		}
		switch f.Op {
		case ws.OpPing:
			if err := c.WriteFrame(Frame{Fin: true, Op: ws.OpPong, Payload: f.Payload}); err != nil {
				return nil, err
			}
			continue
		case ws.OpPong:
			continue
		case ws.OpClose:
			return nil, closeError(f.Payload)
		case ws.OpContinuation:
			if !started {
				return nil, errors.New("continuation frame without a message")
			}
		case ws.OpBinary, ws.OpText:
			if started {
				return nil, errors.New("new message inside a fragmented one")
			}
			if (f.Op == ws.OpText) != c.base64 {
				return nil, fmt.Errorf("%v frame with subprotocol %q", f.Op, c.Protocol())
			}
			started = true
		default:
			return nil, fmt.Errorf("unexpected opcode %v", f.Op)
		}
		msg = append(msg, f.Payload...)
		if f.Fin {
			break
		}
	}
	if c.base64 {
		return base64.StdEncoding.DecodeString(string(msg))
	}
	return msg, nil
}

func (c *Conn) readHixieMessage() ([]byte, error) {
	c.readDeadline()
	t, err := c.br.ReadByte()
	if err != nil {
		return nil, err
	}
	switch t {
	case 0x00:
		text, err := c.br.ReadBytes(0xFF)
		if err != nil {
			return nil, err
		}
		return base64.StdEncoding.DecodeString(string(text[:len(text)-1]))
	case 0xFF:
		b, err := c.br.ReadByte()
		if err != nil {
			return nil, err
		}
		if b != 0x00 {
			return nil, fmt.Errorf("Hixie frame 0xFF 0x%02x", b)
		}
		return nil, &CloseError{Code: CloseNoStatus}
	}
	return nil, fmt.Errorf("Hixie frame type 0x%02x", t)
}

// ---- reading the data as a stream ----

// nextData reads frame headers until one with payload left, answering pings
// and skipping pongs. Frame boundaries are not checked: a proxy may split or
// merge what its target wrote. A close frame is a *CloseError.
func (c *Conn) nextData() error {
	for c.left == 0 {
		h, err := ws.ReadHeader(c.br)
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
			if _, err := io.ReadFull(c.br, body); err != nil {
				return err
			}
			switch h.OpCode {
			case ws.OpClose:
				return closeError(body)
			case ws.OpPing:
				if err := c.WriteFrame(Frame{Fin: true, Op: ws.OpPong, Payload: body}); err != nil {
					return err
				}
			}
		default:
			c.left = h.Length
		}
	}
	return nil
}

// Read reads up to len(p) bytes of the data stream, across frame and
// message boundaries, decoded from base64 in base64 mode (HyBi only). A
// close frame is a *CloseError.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.hixie != 0 {
		return 0, errors.New("wsclient: Read on a Hixie connection")
	}
	c.readDeadline()
	if !c.base64 {
		if err := c.nextData(); err != nil {
			return 0, err
		}
		n, err := c.br.Read(p[:min(int64(len(p)), c.left)])
		c.left -= int64(n)
		return n, err
	}
	for len(c.dec) == 0 {
		if err := c.nextData(); err != nil {
			return 0, err
		}
		if c.left > 64<<20 {
			return 0, fmt.Errorf("base64 frame of %d bytes", c.left)
		}
		start := len(c.b64)
		c.b64 = append(c.b64, make([]byte, c.left)...)
		if _, err := io.ReadFull(c.br, c.b64[start:]); err != nil {
			return 0, err
		}
		c.left = 0
		// Each frame should be whole base64, but decoding only complete
		// quads keeps a proxy that splits text differently correct.
		whole := len(c.b64) / 4 * 4
		if whole == 0 {
			continue
		}
		buf := make([]byte, base64.StdEncoding.DecodedLen(whole))
		n, err := base64.StdEncoding.Decode(buf, c.b64[:whole])
		if err != nil {
			return 0, fmt.Errorf("base64 from server: %w", err)
		}
		c.dec = buf[:n]
		c.b64 = append(c.b64[:0], c.b64[whole:]...)
	}
	n := copy(p, c.dec)
	c.dec = c.dec[n:]
	return n, nil
}

// Discard reads and drops n bytes of the data stream (binary mode), without
// copying them anywhere; running out early is io.ErrUnexpectedEOF.
func (c *Conn) Discard(n int64) error {
	if c.base64 || c.hixie != 0 {
		return errors.New("wsclient: Discard needs a binary connection")
	}
	for n > 0 {
		c.readDeadline()
		if err := c.nextData(); err != nil {
			var ce *CloseError
			if errors.As(err, &ce) || err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		d, err := c.br.Discard(int(min(c.left, n, 1<<30)))
		c.left -= int64(d)
		n -= int64(d)
		if err != nil {
			return err
		}
	}
	return nil
}
