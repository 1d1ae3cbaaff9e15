package codec

import (
	"bytes"
	"encoding/binary"

	"github.com/gobwas/ws"
)

// CloseError ends a session: the client sent a close frame (Remote), or broke
// the protocol. The owner sends Encoder.Close(Code, Reason), flushes, closes.
type CloseError struct {
	Code   uint16
	Reason string
	Remote bool // the client closed; Code echoes its code
}

func (e *CloseError) Error() string { return e.Reason }

func protocolError(reason string) *CloseError {
	return &CloseError{Code: uint16(ws.StatusProtocolError), Reason: reason}
}

func invalidData(reason string) *CloseError {
	return &CloseError{Code: uint16(ws.StatusInvalidFramePayloadData), Reason: reason}
}

// errFrameTooBig ends a session whose client sent a data frame larger than
// the cap (--max-frame-size): 1009, or for Hixie the close frame.
var errFrameTooBig = &CloseError{Code: uint16(ws.StatusMessageTooBig), Reason: "Message too big"}

// What the decoder expects next.
const (
	atHeader uint8 = iota // HyBi: a frame header; Hixie: a frame type byte
	inData                // payload of a data frame (Hixie: text up to 0xFF)
)

// Decoder turns the client's byte stream into target payload, streaming:
// it never holds a whole message, only up to three base64 characters. A
// control frame is answered only once all of it is in (it is at most 131
// bytes), straight from the caller's buffer, so an idle session carries no
// buffer for it. Its zero value is not usable; see NewDecoder.
type Decoder struct {
	v         Version
	m         Mode
	state     uint8
	op        ws.OpCode // opcode of the current frame
	fin       bool      // the current frame ends its message
	inMessage bool      // a data message has started and not ended
	maskPos   uint8     // payload bytes of the current frame so far, mod 4
	mask      [4]byte
	remain    uint64 // payload bytes of the current frame still to come (Hixie: so far)
	maxFrame  uint64 // the most payload a data frame may carry; 0: no cap
	b64       base64Stream
}

// NewDecoder returns a decoder for a connection of version v in mode m.
// Hixie connections are always base64, whatever m says.
func NewDecoder(v Version, m Mode) Decoder {
	if v != HyBi {
		m = Base64
	}
	return Decoder{v: v, m: m}
}

// Feed consumes a prefix of in (possibly all of it), unmasking and base64
// decoding in place, so in is clobbered. Payload goes to out.ToTarget in
// order, pongs to out.ToClient. It returns how many bytes it consumed; bytes
// it did not consume must be offered again with more appended. A non-nil
// error is a *CloseError.
//
// Only an incomplete frame header (at most 13 bytes) or an incomplete
// control frame (at most 131) is left unconsumed for HyBi, and one byte (a
// lone 0xFF) for Hixie. Bytes left unconsumed are not modified. Payload is passed on as soon as it is
// in, however much of the frame is still to come.
//
// On error, n counts the bytes consumed before the frame header or payload
// chunk at fault (a close frame counts as consumed), and the session is over:
// the decoder must not be fed again.
func (d *Decoder) Feed(in []byte, out Output) (n int, err error) {
	if d.v == HyBi {
		return d.feedHyBi(in, out)
	}
	return d.feedHixie(in, out)
}

func (d *Decoder) feedHyBi(in []byte, out Output) (n int, err error) {
	for {
		switch d.state {
		case atHeader:
			if n == len(in) {
				return n, nil
			}
			size, err := d.readHeader(in[n:])
			if err != nil || size == 0 {
				return n, err
			}
			if d.op.IsControl() {
				frame := in[n : n+size+int(d.remain)]
				n += len(frame)
				if err := d.control(frame, size, out); err != nil {
					return n, err
				}
				continue
			}
			n += size
			if d.remain == 0 {
				if err := d.endFrame(); err != nil {
					return n, err
				}
			}

		case inData:
			p := d.nextPayload(in[n:])
			if len(p) == 0 {
				return n, nil
			}
			ws.Cipher(p, d.mask, int(d.maskPos))
			d.maskPos = uint8((int(d.maskPos) + len(p)) & 3)
			if d.m == Base64 {
				if err := d.b64.decode(p, out); err != nil {
					return n, err
				}
			} else {
				out.ToTarget(p)
			}
			n += len(p)
			if d.remain == 0 {
				if err := d.endFrame(); err != nil {
					return n, err
				}
			}
		}
	}
}

// nextPayload takes what in holds of the current frame's payload.
func (d *Decoder) nextPayload(in []byte) []byte {
	k := uint64(len(in))
	if k > d.remain {
		k = d.remain
	}
	d.remain -= k
	return in[:k]
}

// readHeader parses the frame header at the start of p and returns its size,
// or 0 when p does not hold all of it yet (for a control frame: all of the
// frame). Whatever the first two bytes can
// tell is checked before the rest arrives.
func (d *Decoder) readHeader(p []byte) (int, error) {
	if len(p) < 2 {
		return 0, nil
	}
	h := ws.Header{
		Fin:    p[0]&0x80 != 0,
		Rsv:    (p[0] >> 4) & 0x7,
		OpCode: ws.OpCode(p[0] & 0xF),
		Masked: p[1]&0x80 != 0,
	}
	len7 := int(p[1] & 0x7F)
	switch {
	case h.Rsv != 0:
		return 0, protocolError("Reserved bits set")
	case h.OpCode.IsReserved():
		return 0, protocolError("Reserved opcode")
	case !h.Masked:
		return 0, protocolError("Unmasked client frame")
	case h.OpCode.IsControl() && !h.Fin:
		return 0, protocolError("Fragmented control frame")
	case h.OpCode.IsControl() && len7 > ws.MaxControlFramePayloadSize:
		return 0, protocolError("Control frame too long")
	case h.OpCode == ws.OpContinuation && !d.inMessage:
		return 0, protocolError("Continuation frame without a message")
	case h.OpCode.IsData() && h.OpCode != ws.OpContinuation && d.inMessage:
		return 0, protocolError("New data frame inside a fragmented message")
	}

	size := 2
	switch len7 {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	if len(p) < size+4 || (h.OpCode.IsControl() && len(p) < size+4+len7) {
		return 0, nil
	}
	switch len7 {
	case 126:
		h.Length = int64(binary.BigEndian.Uint16(p[2:4]))
	case 127:
		l := binary.BigEndian.Uint64(p[2:10])
		if l>>63 != 0 {
			return 0, protocolError("Frame length with its top bit set")
		}
		h.Length = int64(l)
	default:
		h.Length = int64(len7)
	}
	if d.maxFrame != 0 && !h.OpCode.IsControl() && uint64(h.Length) > d.maxFrame {
		return 0, errFrameTooBig
	}
	copy(h.Mask[:], p[size:size+4])

	d.op, d.fin, d.mask = h.OpCode, h.Fin, h.Mask
	d.remain = uint64(h.Length)
	d.maskPos = 0
	if !h.OpCode.IsControl() {
		d.state = inData
		d.inMessage = true
	}
	return size + 4, nil
}

// control answers a complete control frame, header and payload, in place.
func (d *Decoder) control(frame []byte, headerSize int, out Output) error {
	payload := frame[headerSize:]
	ws.Cipher(payload, d.mask, 0)
	d.remain = 0
	switch d.op {
	case ws.OpPing:
		// A client frame's header is at least six bytes (it is masked):
		// room for the pong's two right before the payload.
		pong := frame[headerSize-2:]
		pong[0] = 0x80 | byte(ws.OpPong)
		pong[1] = byte(len(payload))
		out.ToClient(pong)
	case ws.OpClose:
		return d.closeFrame(payload)
	}
	return nil // a pong is ignored
}

// endFrame acts on a data frame whose payload is all in.
func (d *Decoder) endFrame() error {
	d.state = atHeader
	if !d.fin {
		return nil
	}
	d.inMessage = false
	if d.m == Base64 {
		return d.b64.end()
	}
	return nil
}

// closeFrame turns the client's close payload into the CloseError that
// echoes it. No code at all is answered with 1000; a code that may not be
// sent is a protocol error and a reason that is not UTF-8 invalid data,
// as RFC 6455 section 7.4 and 8.1 have it.
func (d *Decoder) closeFrame(p []byte) error {
	switch len(p) {
	case 0:
		return &CloseError{Code: uint16(ws.StatusNormalClosure), Remote: true}
	case 1:
		return protocolError("Close frame payload of one byte")
	}
	code := ws.StatusCode(binary.BigEndian.Uint16(p))
	reason := string(p[2:])
	switch err := ws.CheckCloseFrameData(code, reason); {
	case code > ws.StatusRangePrivate.Max:
		return protocolError("Invalid close code")
	case err == nil:
		return &CloseError{Code: uint16(code), Reason: reason, Remote: true}
	case err == ws.ErrProtocolInvalidUTF8:
		return invalidData("Close reason is not UTF-8")
	default:
		return protocolError("Invalid close code")
	}
}

// feedHixie reads draft-75/76 frames: 0x00, base64 text, 0xFF; and the close
// frame 0xFF 0x00.
func (d *Decoder) feedHixie(in []byte, out Output) (n int, err error) {
	for n < len(in) {
		if d.state == atHeader {
			switch in[n] {
			case 0x00:
				d.state = inData
				d.remain = 0
				n++
				continue
			case 0xFF:
				if n+1 == len(in) {
					return n, nil
				}
				if in[n+1] != 0x00 {
					return n, protocolError("Bad Hixie close frame")
				}
				return n + 2, &CloseError{Code: uint16(ws.StatusNormalClosure), Remote: true}
			default:
				return n, protocolError("Unsupported Hixie frame type")
			}
		}
		text := in[n:]
		end := bytes.IndexByte(text, 0xFF)
		if end >= 0 {
			text = text[:end]
		}
		if d.remain += uint64(len(text)); d.maxFrame != 0 && d.remain > d.maxFrame {
			return n, errFrameTooBig
		}
		if err := d.b64.decode(text, out); err != nil {
			return n, err
		}
		if end < 0 {
			return len(in), nil
		}
		if err := d.b64.end(); err != nil {
			return n, err
		}
		n += end + 1
		d.state = atHeader
	}
	return n, nil
}
