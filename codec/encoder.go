package codec

import (
	"encoding/base64"
	"encoding/binary"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Encoder frames target bytes for the client. Hixie connections are always
// base64, whatever Mode says.
type Encoder struct {
	Version Version
	Mode    Mode
}

// hybiHeaderLen is the size of an unmasked HyBi header for a payload of n bytes.
func hybiHeaderLen(n int) int {
	switch {
	case n <= ws.MaxControlFramePayloadSize:
		return 2
	case n <= 0xFFFF:
		return 4
	}
	return 10
}

// putHyBiHeader writes a final, unmasked header for op and a payload of n
// bytes at the start of dst and returns its size.
func putHyBiHeader(dst []byte, op ws.OpCode, n int) int {
	dst[0] = 0x80 | byte(op)
	switch {
	case n <= ws.MaxControlFramePayloadSize:
		dst[1] = byte(n)
		return 2
	case n <= 0xFFFF:
		dst[1] = 126
		binary.BigEndian.PutUint16(dst[2:4], uint16(n))
		return 4
	}
	dst[1] = 127
	binary.BigEndian.PutUint64(dst[2:10], uint64(n))
	return 10
}

// MaxFrameLen is the scratch size Encode needs for a payload of n bytes.
func (e Encoder) MaxFrameLen(n int) int {
	switch {
	case e.Version != HyBi:
		return 2 + base64.StdEncoding.EncodedLen(n)
	case e.Mode == Base64:
		m := base64.StdEncoding.EncodedLen(n)
		return hybiHeaderLen(m) + m
	}
	return hybiHeaderLen(n)
}

// Encode frames payload. For binary HyBi it writes only the header into
// scratch and returns head = header, body = payload (no copy); otherwise the
// whole frame is built in scratch and body is nil. scratch must hold
// MaxFrameLen(len(payload)) bytes. Each call makes one whole frame: target
// data is never split into fragments.
func (e Encoder) Encode(payload, scratch []byte) (head, body []byte) {
	switch {
	case e.Version != HyBi:
		m := base64.StdEncoding.EncodedLen(len(payload))
		scratch[0] = 0x00
		base64.StdEncoding.Encode(scratch[1:1+m], payload)
		scratch[1+m] = 0xFF
		return scratch[:2+m], nil
	case e.Mode == Base64:
		m := base64.StdEncoding.EncodedLen(len(payload))
		h := putHyBiHeader(scratch, ws.OpText, m)
		base64.StdEncoding.Encode(scratch[h:h+m], payload)
		return scratch[:h+m], nil
	}
	h := putHyBiHeader(scratch, ws.OpBinary, len(payload))
	return scratch[:h], payload
}

// Close returns the close frame for code and reason (Hixie: 0xFF 0x00).
// The reason is cut to fit a control frame, on a UTF-8 boundary. Code 0
// gives a close frame without a payload.
func (e Encoder) Close(code uint16, reason string) []byte {
	if e.Version != HyBi {
		return []byte{0xFF, 0x00}
	}
	if code == 0 {
		return []byte{0x80 | byte(ws.OpClose), 0}
	}
	reason = truncateUTF8(reason, ws.MaxControlFramePayloadSize-2)
	f := make([]byte, 4+len(reason))
	putHyBiHeader(f, ws.OpClose, 2+len(reason))
	binary.BigEndian.PutUint16(f[2:4], code)
	copy(f[4:], reason)
	return f
}

// Ping returns a ping frame carrying payload (cut to 125 bytes), for the
// heartbeat. Hixie has no ping: nil.
func (e Encoder) Ping(payload []byte) []byte {
	if e.Version != HyBi {
		return nil
	}
	payload = payload[:min(len(payload), ws.MaxControlFramePayloadSize)]
	f := make([]byte, 2+len(payload))
	putHyBiHeader(f, ws.OpPing, len(payload))
	copy(f[2:], payload)
	return f
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
