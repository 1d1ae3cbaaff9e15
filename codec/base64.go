package codec

// The client's base64 is decoded in place as it streams in, quantum by
// quantum, so a message never has to be whole in memory. encoding/base64
// offers no streaming decode into its own input, hence this small decoder.
// It takes the standard alphabet with '=' padding, strictly: what Python's
// b64decode produces from a well-formed message, without its leniency for
// stray characters.

const (
	b64Invalid = 0xFF
	b64Pad     = 0xFE
)

// b64Values maps a character to its 6-bit value, b64Pad or b64Invalid.
var b64Values = func() (t [256]byte) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := range t {
		t[i] = b64Invalid
	}
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	t['='] = b64Pad
	return t
}()

// base64Stream is the decoding state of one message, kept across frames and
// Feed calls.
type base64Stream struct {
	quad  [4]byte // characters of an unfinished quantum
	n     uint8   // how many of quad are set
	done  bool    // a padded quantum has ended the data: only the message end may follow
	carry [3]byte // a finished carried quantum is decoded here: p has no room before it
}

// acceptChar reports whether c may come at position n of a quantum whose
// third character (when n is 3) is third.
func acceptChar(n uint8, third, c byte) bool {
	v := b64Values[c]
	switch n {
	case 0, 1:
		return v < 64
	case 2:
		return v != b64Invalid
	default:
		if third == '=' {
			return v == b64Pad
		}
		return v != b64Invalid
	}
}

// decodeQuad decodes four characters already known to be acceptable into dst
// and returns the count of bytes, 3 unless padded.
func decodeQuad(dst []byte, a, b, c, d byte) int {
	va, vb, vc, vd := b64Values[a], b64Values[b], b64Values[c], b64Values[d]
	switch {
	case vc == b64Pad:
		dst[0] = va<<2 | vb>>4
		return 1
	case vd == b64Pad:
		dst[0] = va<<2 | vb>>4
		dst[1] = vb<<4 | vc>>2
		return 2
	}
	dst[0] = va<<2 | vb>>4
	dst[1] = vb<<4 | vc>>2
	dst[2] = vc<<6 | vd
	return 3
}

// decode decodes p in place and hands the bytes to out.ToTarget. Characters
// are checked as they arrive, so the bytes handed out before an error do
// not depend on how the message was split.
func (s *base64Stream) decode(p []byte, out Output) error {
	if len(p) == 0 {
		return nil
	}
	if s.done {
		return invalidData("Data after base64 padding")
	}
	i := 0
	if s.n > 0 {
		for ; s.n < 4 && i < len(p); i++ {
			if !acceptChar(s.n, s.quad[2], p[i]) {
				return invalidData("Invalid base64")
			}
			s.quad[s.n] = p[i]
			s.n++
		}
		if s.n < 4 {
			return nil
		}
		s.n = 0
		k := decodeQuad(s.carry[:], s.quad[0], s.quad[1], s.quad[2], s.quad[3])
		out.ToTarget(s.carry[:k])
		if k < 3 {
			s.done = true
			if i < len(p) {
				return invalidData("Data after base64 padding")
			}
			return nil
		}
	}

	// Whole quanta: four characters read before three bytes are written, and
	// the write index o never passes the read index i.
	o := 0
	var err error
	for ; len(p)-i >= 4; i += 4 {
		a, b, c, d := p[i], p[i+1], p[i+2], p[i+3]
		va, vb, vc, vd := b64Values[a], b64Values[b], b64Values[c], b64Values[d]
		if va|vb|vc|vd < 64 {
			v := uint(va)<<18 | uint(vb)<<12 | uint(vc)<<6 | uint(vd)
			p[o], p[o+1], p[o+2] = byte(v>>16), byte(v>>8), byte(v)
			o += 3
			continue
		}
		if !acceptChar(0, 0, a) || !acceptChar(1, 0, b) || !acceptChar(2, 0, c) || !acceptChar(3, c, d) {
			err = invalidData("Invalid base64")
			break
		}
		o += decodeQuad(p[o:], a, b, c, d)
		s.done = true
		if i+4 < len(p) {
			err = invalidData("Data after base64 padding")
		}
		i = len(p)
		break
	}
	// A short tail is carried to the next call, checked now.
	for ; err == nil && i < len(p); i++ {
		if !acceptChar(s.n, s.quad[2], p[i]) {
			err = invalidData("Invalid base64")
			break
		}
		s.quad[s.n] = p[i]
		s.n++
	}
	if o > 0 {
		out.ToTarget(p[:o])
	}
	return err
}

// end closes the message: a quantum left unfinished is an error.
func (s *base64Stream) end() error {
	n := s.n
	*s = base64Stream{}
	if n != 0 {
		return invalidData("Truncated base64")
	}
	return nil
}
