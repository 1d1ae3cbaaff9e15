// Package wsclient is the project's one WebSocket client: the integration
// tests (test/), the load tool (loadtest/) and the demo (cmd/websockify-demo)
// all speak to websockify through it. It owns the client side of the wire:
// the HyBi (RFC 6455) opening handshake with a subprotocol ("binary" or
// "base64") and extra header lines, the old Hixie-75/76 handshakes the tests
// still exercise, masked frame writing (including fragments, and unmasked,
// reserved-bit or otherwise malformed frames for fault tests), frame reading
// with close codes, and reading the data as messages or as a byte stream.
// Frame headers are parsed and written by github.com/gobwas/ws.
//
// A Conn is small on purpose (the load tool holds ten thousand of them, with
// no goroutine each) and is not safe for concurrent use except that one
// goroutine may write while another reads.
package wsclient

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/gobwas/ws"
)

// CloseNoStatus is the code a close frame without a payload stands for
// (RFC 6455 section 7.1.5); the Hixie close frame reports it too.
const CloseNoStatus = 1005

// maxFramePayload bounds what ReadFrame will allocate for one frame.
const maxFramePayload = 1 << 30

// Frame is one WebSocket frame as it is on the wire, payload unmasked.
type Frame struct {
	Fin     bool
	Rsv     byte // the three RSV bits, RSV1 = 4
	Op      ws.OpCode
	Masked  bool // set by ReadFrame; AppendFrame masks when given a key
	Payload []byte
}

// CloseCode returns the status code and reason of a close frame's payload;
// code 0 when the payload is empty.
func (f Frame) CloseCode() (uint16, string) {
	if len(f.Payload) < 2 {
		return 0, ""
	}
	return binary.BigEndian.Uint16(f.Payload), string(f.Payload[2:])
}

// AppendFrame appends the wire form of f to dst. With mask nil the frame goes
// unmasked (a protocol violation from a client, which fault tests want); f's
// payload is not modified. Any opcode, RSV bits and FIN are written as given.
func AppendFrame(dst []byte, f Frame, mask *[4]byte) []byte {
	h := ws.Header{Fin: f.Fin, Rsv: f.Rsv & 7, OpCode: f.Op & 0x0F, Length: int64(len(f.Payload))}
	if mask != nil {
		h.Masked, h.Mask = true, *mask
	}
	if cap(dst)-len(dst) < ws.MaxHeaderSize+len(f.Payload) {
		dst = append(make([]byte, 0, len(dst)+ws.MaxHeaderSize+len(f.Payload)), dst...)
	}
	buf := bytes.NewBuffer(dst)
	_ = ws.WriteHeader(buf, h) // writing to a bytes.Buffer does not fail
	start := buf.Len()
	buf.Write(f.Payload)
	out := buf.Bytes()
	if mask != nil {
		ws.Cipher(out[start:], *mask, 0)
	}
	return out
}

// MaskedFrame is a final frame of op with payload, masked with a fresh
// random key: what a well-behaved client sends.
func MaskedFrame(op ws.OpCode, payload []byte) []byte {
	m := ws.NewMask()
	return AppendFrame(nil, Frame{Fin: true, Op: op, Payload: payload}, &m)
}

// ClosePayload is the payload of a close frame with code and reason.
func ClosePayload(code uint16, reason string) []byte {
	p := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reason)), code)
	return append(p, reason...)
}

// ReadFrame reads one frame from r, unmasking its payload if it came masked.
// It checks nothing else: callers that talk to a server decide what a masked
// frame or RSV bits mean (Conn.ReadFrame rejects them).
func ReadFrame(r io.Reader) (Frame, error) {
	h, err := ws.ReadHeader(r)
	if err != nil {
		return Frame{}, err
	}
	f := Frame{Fin: h.Fin, Rsv: h.Rsv, Op: h.OpCode, Masked: h.Masked}
	if h.Length > maxFramePayload {
		return f, fmt.Errorf("frame of %d bytes", h.Length)
	}
	f.Payload = make([]byte, h.Length)
	if _, err := io.ReadFull(r, f.Payload); err != nil {
		return f, err
	}
	if h.Masked {
		ws.Cipher(f.Payload, h.Mask, 0)
	}
	return f, nil
}

// CloseError is what the readers return when the server's close frame
// arrives.
type CloseError struct {
	Code   uint16 // CloseNoStatus when the frame had no payload
	Reason string
}

func (e *CloseError) Error() string { return fmt.Sprintf("close frame %d %q", e.Code, e.Reason) }
