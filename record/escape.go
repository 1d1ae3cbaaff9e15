package record

import (
	"encoding/binary"
	"slices"
	"strconv"
)

// The escaping is Python websockify's:
// buf.decode('latin1').encode('unicode_escape').decode('ascii').replace("'", "\\'").
// Every byte maps to a fixed string, so a table per byte reproduces it:
// printable ASCII stays, backslash, tab, newline and carriage return get
// their short escapes, the quote gets a backslash, and every other byte
// becomes \xNN in lowercase hex. The result is ASCII, and the playback page
// turns it back into a string whose char codes are the bytes.

// escapedLen[b] is how many bytes b becomes: 1, 2 or 4.
var escapedLen [256]uint8

// escapedWord[b] holds what b becomes, little-endian in its first
// escapedLen[b] bytes.
var escapedWord [256]uint32

func init() {
	const lowerHex = "0123456789abcdef"
	for b := range 256 {
		var escaped string
		switch {
		case b == '\\' || b == '\'':
			escaped = "\\" + string(rune(b))
		case b == '\t':
			escaped = `\t`
		case b == '\n':
			escaped = `\n`
		case b == '\r':
			escaped = `\r`
		case b >= 0x20 && b < 0x7f:
			escaped = string(rune(b))
		default:
			escaped = `\x` + lowerHex[b>>4:b>>4+1] + lowerHex[b&15:b&15+1]
		}
		escapedLen[b] = uint8(len(escaped))
		for k := range len(escaped) {
			escapedWord[b] |= uint32(escaped[k]) << (8 * k)
		}
	}
}

// escapedSize is len(appendEscaped(nil, p)).
func escapedSize(p []byte) int {
	n := 0
	for _, b := range p {
		n += int(escapedLen[b])
	}
	return n
}

// appendEscaped appends p escaped to dst, growing it as needed.
func appendEscaped(dst, p []byte) []byte {
	return appendEscapedInRoom(slices.Grow(dst, escapedSize(p)), p)
}

// appendEscapedInRoom appends p escaped to dst, which must have the room
// (escapedSize(p) bytes past its length).
func appendEscapedInRoom(dst, p []byte) []byte {
	out := dst[len(dst):cap(dst)]
	w := 0
	for i, b := range p {
		if len(out)-w < 4 {
			// Too near the end for a whole word: the rest a byte at a
			// time.
			for _, b := range p[i:] {
				n := int(escapedLen[b])
				word := escapedWord[b]
				for k := range n {
					out[w+k] = byte(word >> (8 * k))
				}
				w += n
			}
			break
		}
		// Store all four bytes and keep those of the escape: no branch
		// on the byte, which random data would mispredict half the
		// time.
		binary.LittleEndian.PutUint32(out[w:], escapedWord[b])
		w += int(escapedLen[b])
	}
	return dst[:len(dst)+w]
}

// Line framing: '{MS{DATA',\n for bytes to the client and '}MS}DATA',\n
// for bytes from it.
const (
	toClientMark   = '{'
	fromClientMark = '}'
	lineOverhead   = len("'") + 2 + len("',\n") // quote, two marks, end
	fileHeader     = "var VNC_frame_data = [\n"
	fileTrailer    = "'EOF'];\n"
)

// lineSize is the length of the line appendLine makes.
func lineSize(ms int64, p []byte) int {
	return lineOverhead + decimalLen(ms) + escapedSize(p)
}

// lineSizeAtMost is a bound on lineSize that does not read p.
func lineSizeAtMost(ms int64, p []byte) int {
	return lineOverhead + decimalLen(ms) + 4*len(p)
}

// appendLine appends one recording line for the chunk p. dst must have
// the room, lineSize(ms, p) bytes past its length.
func appendLine(dst []byte, mark byte, ms int64, p []byte) []byte {
	dst = append(dst, '\'', mark)
	dst = strconv.AppendInt(dst, ms, 10)
	dst = append(dst, mark)
	dst = appendEscapedInRoom(dst, p)
	return append(dst, '\'', ',', '\n')
}

// decimalLen is len(strconv.FormatInt(v, 10)).
func decimalLen(v int64) int {
	n := 1
	u := uint64(v)
	if v < 0 {
		n++
		u = -u
	}
	for u >= 10 {
		u /= 10
		n++
	}
	return n
}
