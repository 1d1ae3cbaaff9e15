package codec

// Differential fuzzers: the codec against references built from other code,
// gobwas/ws's frame reader and writer and encoding/base64. Where we are
// stricter than gobwas's low-level reader, or differ from stdlib on
// purpose, the reference applies our rule itself, with a comment saying
// which and why, so that the comparison can be exact.

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// FuzzDecoderAgainstGobwas compares the decoder, fed whole and in arbitrary
// splits, with refHyBi on the whole stream: payload for the target, pongs,
// bytes consumed and the verdict. flags bit 0 selects base64 mode; bit 1
// reads stream as a recipe of frames (see recipeFrames), bit 2 base64-encodes
// the recipe's payloads, and bit 3 cuts (flags>>4)+1 bytes off the recipe's
// end, for truncated frames.
func FuzzDecoderAgainstGobwas(f *testing.F) {
	seeds := []struct {
		flags  byte
		stream []byte
		splits []byte
	}{
		{0, clientFrame(finBinary, []byte("hello")), []byte{1, 2, 3}},
		{0, cat(clientFrame(0x02, []byte("a")), clientFrame(ping, []byte("p")), clientFrame(finCont, []byte("b"))), []byte{5}},
		{0, cat(clientFrame(finBinary, bytes.Repeat([]byte("m"), 300)), closeFrame(1000, "bye")), []byte{7, 200}},
		{0, cat(clientFrame(finText, []byte("x")), closeFrame(3000, "\xff")), nil},
		{0, cat(clientFrame(pong, []byte("x")), clientFrame(closeOp, []byte{3})), nil},
		{0, clientFrameMask(finBinary, []byte("x"), testMask, false), nil},
		{0, []byte{finBinary, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}, []byte{1}},
		{0, []byte{finBinary, 0xFF, 0, 0, 0, 0, 0, 0, 1, 0, 1, 2, 3, 4, 'a', 'b'}, nil},
		{0, []byte{ping, 0xFE, 0, 5}, nil},
		{0, []byte{0x83, 0x80}, nil},
		{0, clientFrame(finBinary|0x10, []byte("rsv3")), nil},
		{0, cat(clientFrame(finBinary, []byte("a")), clientFrame(finCont, []byte("b"))), nil},
		{0, clientFrame(finCont, []byte("c")), nil},
		{0, closeFrame(5000, ""), nil},
		{1, cat(clientFrame(text, []byte("aGVsbG8")), clientFrame(ping, nil), clientFrame(finCont, []byte("gd29ybGQ="))), []byte{3, 3}},
		{1, clientFrame(finText, []byte("QQ==QQ")), []byte{9}},
		{1, clientFrame(finText, []byte("QU!D")), nil},
		{1, clientFrame(finText, []byte("QUJDQQ=A")), []byte{6}},
		{1, cat(clientFrame(finBinary, []byte("QR==")), clientFrame(text, []byte("QUJDRA"))), nil},
		{1, cat(clientFrame(text, []byte("QUJD\n")), clientFrame(finCont, nil)), nil},
		// Recipes: first header byte, payload length, payload.
		{2, []byte{0x01, 3, 'a', 'b', 'c', 0x89, 1, 'p', 0x80, 2, 'd', 'e'}, []byte{4}},
		{3 | 4, []byte{0x02, 4, 1, 2, 3, 4, 0x00, 0, 0x80, 3, 5, 6, 7}, nil},
		{2 | 8 | 0x30, []byte{0x82, 200}, []byte{2}},
		{2, []byte{0x88, 3, 0x03, 0xE8, 'x', 0x82, 1, 'y'}, nil},
	}
	for _, s := range seeds {
		f.Add(s.flags, s.stream, s.splits)
	}
	f.Fuzz(func(t *testing.T, flags byte, stream, splits []byte) {
		if len(stream) > 1<<10 || len(splits) > 1<<8 {
			// Between calls the decoder keeps at most a header, a control
			// frame or a base64 quantum: longer inputs find nothing new,
			// and the fuzzer spends time square in an input's size
			// minimizing it (a minute at a time, all execs stalled).
			t.Skip()
		}
		m := Binary
		if flags&1 != 0 {
			m = Base64
		}
		if flags&2 != 0 {
			stream = recipeFrames(stream, flags&4 != 0)
			if cut := int(flags>>4) + 1; flags&8 != 0 && cut <= len(stream) {
				stream = stream[:len(stream)-cut]
			}
		}
		want := refHyBi(m, stream)
		for _, got := range []result{feedOnce(t, HyBi, m, stream), feedSplit(t, HyBi, m, stream, pieceSizes(splits))} {
			if !sameAsRef(got, want) {
				t.Fatalf("%v mode, stream %q:\ngot  %q %q %d %+v\nwant %q %q %d %+v", m, trunc(string(stream)),
					trunc(got.target), trunc(got.client), got.consumed, got.err,
					trunc(want.target), trunc(want.client), want.consumed, want.err)
			}
		}
	})
}

// recipeFrames builds masked client frames from a recipe, so that the
// fuzzer spends its time past the header checks: each record is a first
// header byte, a payload length and that many payload bytes (fewer at the
// recipe's end). With b64 each payload is sent base64-encoded.
func recipeFrames(recipe []byte, b64 bool) []byte {
	var out []byte
	for len(recipe) >= 2 {
		first, n := recipe[0], min(int(recipe[1]), len(recipe)-2)
		payload := recipe[2 : 2+n]
		recipe = recipe[2+n:]
		if b64 {
			payload = []byte(base64.StdEncoding.EncodeToString(payload))
		}
		out = append(out, clientFrame(first, payload)...)
	}
	return out
}

// sameAsRef compares a decoder result with the reference's. Bytes consumed
// are compared only without an error: on error our decoder counts up to the
// chunk at fault, which depends on the split. Target bytes are compared
// exactly even on error, since the reference works out which prefix our
// decoder has handed out (see refB64Progress). A CloseError's reason is ours
// to word, except when it echoes the client's.
func sameAsRef(got, want result) bool {
	switch {
	case got.target != want.target || got.client != want.client:
		return false
	case got.err == nil || want.err == nil:
		return got.err == nil && want.err == nil && got.consumed == want.consumed
	case got.err.Code != want.err.Code || got.err.Remote != want.err.Remote:
		return false
	}
	return !want.err.Remote || got.err.Reason == want.err.Reason
}

// refHyBi decodes a whole client stream with gobwas's ReadHeader and
// CheckHeader, playing the decoder's part for everything they leave to the
// caller. Our decoder's deliberate differences from gobwas's reader, each
// applied here:
//
//   - What the first two bytes of a header tell (RSV bits, reserved opcodes,
//     mask bit, control frames fragmented or too long, continuation rules) is
//     judged as soon as they are in: a bad frame is refused before the rest
//     of its header arrives, where ReadHeader would wait. The rules are
//     gobwas's CheckHeader for a server (RFC 6455 5.1-5.5), with no
//     extension negotiated and "fragmented" while a message is open.
//   - A control frame's length is judged by its 7-bit field: 126 and 127
//     announce an extended length, which a control frame cannot have (RFC
//     6455 5.5), whatever the extended length holds. CheckHeader looks at the
//     decoded length, so it is given the 7-bit field.
//   - A control frame is acted on only once all of it is in; until then it
//     is left unconsumed. Data payload is handed out as it arrives.
//   - The 64-bit length's top bit (RFC 6455 5.2) is ReadHeader's
//     ErrHeaderLengthMSB, checked like ours once the whole header is in.
//   - A ping is answered with a pong carrying its payload, compiled by gobwas
//     (ws.CompileFrame); other pongs are ignored; a close frame ends the
//     stream with refClose's verdict.
//   - Text frames are not checked for UTF-8: in binary mode their bytes go
//     to the target as they are (as Python websockify passes them), and in
//     base64 mode the alphabet check covers them. Both data opcodes carry
//     base64 in base64 mode.
//   - In base64 mode a message's characters are decoded by refB64 once the
//     message ends, and checked with refB64Progress as each frame's payload
//     comes in, since ours refuses a character as soon as it arrives.
//
// Masks are removed byte by byte rather than with ws.Cipher, which our
// decoder uses, so that the comparison covers unmasking too.
func refHyBi(m Mode, stream []byte) (r result) {
	var (
		target    []byte
		msg       refB64Msg // base64 mode: the open message
		inMessage bool
		pos       int
	)
	defer func() {
		// However the stream stops, ours has handed out the whole quanta of
		// the open message (msg is reset once a fault has handed them).
		r.target = string(append(target, msg.progress()...))
	}()
	fail := func(code uint16) result {
		r.err = &CloseError{Code: code}
		return r
	}
	for pos < len(stream) {
		rest := stream[pos:]
		if len(rest) < 2 {
			break
		}
		early, err := ws.ReadHeader(io.MultiReader(bytes.NewReader(rest[:2]), bytes.NewReader(make([]byte, 12))))
		if err != nil {
			panic(err) // two bytes and zeros make a header, always
		}
		if early.OpCode.IsControl() {
			early.Length = int64(rest[1] & 0x7F)
		}
		state := ws.StateServerSide
		if inMessage {
			state = state.Set(ws.StateFragmented)
		}
		if ws.CheckHeader(early, state) != nil {
			return fail(1002)
		}

		rd := bytes.NewReader(rest)
		h, err := ws.ReadHeader(rd)
		if errors.Is(err, ws.ErrHeaderLengthMSB) {
			return fail(1002)
		}
		if err != nil {
			break // the header is not all in
		}
		headerLen := len(rest) - rd.Len()
		payload := rest[headerLen:]
		n := min(int64(len(payload)), h.Length)
		if h.OpCode.IsControl() && n < h.Length {
			break
		}
		p := bytes.Clone(payload[:n])
		for i := range p {
			p[i] ^= h.Mask[i%4]
		}
		pos += headerLen + int(n)

		switch h.OpCode {
		case ws.OpPing:
			pong, err := ws.CompileFrame(ws.NewPongFrame(p))
			if err != nil {
				panic(err)
			}
			r.client += string(pong)
			continue
		case ws.OpPong:
			continue
		case ws.OpClose:
			r.consumed = pos
			r.err = refClose(p)
			return r
		}

		inMessage = true
		if m == Binary {
			target = append(target, p...)
		} else if msg.add(p) {
			target, msg = append(target, msg.progress()...), refB64Msg{}
			return fail(1007)
		}
		if n < h.Length || !h.Fin {
			continue
		}
		inMessage = false
		if m == Base64 {
			out, ok := msg.end()
			target, msg = append(target, out...), refB64Msg{}
			if !ok {
				return fail(1007) // a quantum cut short: all else was checked as it came
			}
		}
	}
	r.consumed = pos
	return r
}

// refClose is the verdict on a client close frame's payload: gobwas's
// ParseCloseFrameData and CheckCloseFrameData, plus what they leave to the
// caller:
//
//   - No payload is a normal close, echoed as 1000 (the 1005 that RFC 6455
//     7.1.5 reports may not be sent back).
//   - One byte is refused (1002): a body starts with a two-byte code (RFC
//     6455 5.5.1); ParseCloseFrameData reads it as no code.
//   - Codes from 5000 up are refused (1002): RFC 6455 7.4.2 gives them no
//     meaning, and CheckCloseFrameData lets them through as no range of its
//     claims them.
//   - A reason that is not UTF-8 is invalid data, 1007 (RFC 6455 8.1); the
//     other CheckCloseFrameData errors are codes that may not be sent, 1002.
//     The code is judged before the reason, as CheckCloseFrameData does.
func refClose(p []byte) *CloseError {
	switch len(p) {
	case 0:
		return &CloseError{Code: 1000, Remote: true}
	case 1:
		return &CloseError{Code: 1002}
	}
	code, reason := ws.ParseCloseFrameData(p)
	if code >= 5000 {
		return &CloseError{Code: 1002}
	}
	switch err := ws.CheckCloseFrameData(code, reason); {
	case errors.Is(err, ws.ErrProtocolInvalidUTF8):
		return &CloseError{Code: 1007}
	case err != nil:
		return &CloseError{Code: 1002}
	}
	return &CloseError{Code: uint16(code), Reason: reason, Remote: true}
}

const b64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// refB64 decodes one whole message's characters the way our decoder is
// documented to: encoding/base64's StdEncoding.Strict(), with two
// deliberate differences.
//
//   - CR and LF are refused. Stdlib skips them anywhere, even in strict
//     mode; ours takes the alphabet strictly (Python's lenient b64decode
//     would drop them, and any other stray character; clients send none).
//   - The pad bits of a padded quantum are ignored ("QR==" is "A"), as
//     Python's b64decode and stdlib's non-strict mode do. The reference
//     clears them and then decodes strictly, so that all the rest Strict()
//     checks (padding placement, data after padding, length) still applies.
func refB64(text []byte) ([]byte, bool) {
	if bytes.ContainsAny(text, "\r\n") {
		return nil, false
	}
	text = bytes.Clone(text)
	for q := 0; q+4 <= len(text); q += 4 {
		switch {
		case text[q+2] == '=' && text[q+3] == '=':
			clearLowBits(&text[q+1], 0xF)
		case text[q+3] == '=':
			clearLowBits(&text[q+2], 0x3)
		}
	}
	out, err := base64.StdEncoding.Strict().DecodeString(string(text))
	return out, err == nil
}

func clearLowBits(c *byte, bits int) {
	if i := strings.IndexByte(b64Alphabet, *c); i >= 0 {
		*c = b64Alphabet[i&^bits]
	}
}

// refB64Prefix reports whether some valid message starts with text. Any
// that does can also be finished within its last quantum using only 'A' and
// '=', so trying those few endings with refB64 is enough.
func refB64Prefix(text []byte) bool {
	need := (4 - len(text)%4) % 4
	for ends := 0; ends < 1<<need; ends++ {
		t := bytes.Clone(text)
		for i := range need {
			c := byte('A')
			if ends>>i&1 != 0 {
				c = '='
			}
			t = append(t, c)
		}
		if _, ok := refB64(t); ok {
			return true
		}
	}
	return false
}

// refB64Start returns the length of the longest start of text that some
// valid message could begin with. Being a valid start is kept by every
// shorter prefix, so a binary search finds it.
func refB64Start(text []byte) int {
	if refB64Prefix(text) {
		return len(text) // the common case, spared the search
	}
	lo, hi := 0, len(text)-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if refB64Prefix(text[:mid]) {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// refB64Progress is what our decoder has handed out of a message whose
// characters so far are text, and whether it has refused one of them yet.
// It checks each character as it arrives and decodes each quantum once its
// four characters are in, so it has handed out the whole quanta before the
// first character that no valid message could have at its place: the
// comparison on error is exact, not only "a prefix".
func refB64Progress(text []byte) (out []byte, fault bool) {
	n := refB64Start(text)
	out, ok := refB64(text[:n&^3])
	if !ok {
		panic("whole quanta of a valid start do not decode")
	}
	return out, n < len(text)
}

// refB64Msg is a message's characters so far, for refHyBi. Unpadded whole
// quanta at its start that are known good are decoded and dropped as it
// grows: such quanta decode independently of what follows, so the answers
// stay the same, and checking a frame costs that frame only, not the whole
// message again.
type refB64Msg struct {
	out  []byte // decoded from the dropped quanta
	text []byte // the characters after them
}

// add appends a frame's characters and reports whether ours refuses one.
func (m *refB64Msg) add(p []byte) (fault bool) {
	m.text = append(m.text, p...)
	n := refB64Start(m.text)
	if k := n &^ 3; bytes.IndexByte(m.text[:k], '=') < 0 {
		out, _ := refB64(m.text[:k])
		m.out = append(m.out, out...)
		m.text = m.text[k:]
		n -= k
	}
	return n < len(m.text)
}

// progress is what ours has handed out of the message so far.
func (m *refB64Msg) progress() []byte {
	out, _ := refB64Progress(m.text)
	return append(bytes.Clone(m.out), out...)
}

// end decodes the whole message; on error it returns the progress.
func (m *refB64Msg) end() ([]byte, bool) {
	if out, ok := refB64(m.text); ok {
		return append(bytes.Clone(m.out), out...), true
	}
	return m.progress(), false
}

// FuzzBase64AgainstStdlib compares our streaming base64 decoding with refB64
// (encoding/base64's strict decoder, with the documented differences) on one
// message split arbitrarily: fed to base64Stream directly, sent as HyBi
// fragments, and as a Hixie frame fed in pieces. The low two bits of flags
// pick the text: as given, base64 of it (valid), or each byte mapped to the
// alphabet and '=' (padding anywhere), or to those and CR, LF.
func FuzzBase64AgainstStdlib(f *testing.F) {
	for _, s := range []struct {
		text   string
		splits []byte
		flags  byte
	}{
		{"aGVsbG8gd29ybGQ=", []byte{3, 5}, 0},
		{"QQ==", []byte{2}, 0},
		{"QR==", nil, 0},
		{"QUI=", []byte{1, 1, 1}, 0},
		{"QUJ=", nil, 0},
		{"QQ==QQ==", []byte{4}, 0},
		{"QQ=", nil, 0},
		{"Q===", nil, 0},
		{"QUJDQQ=A", []byte{6}, 0},
		{"QUJD\nREVG", []byte{4}, 0},
		{"QUJD\r\n", nil, 0},
		{"QUJDRA", []byte{0, 0, 3}, 0},
		{"QU-_", nil, 0},
		{"", []byte{0}, 0},
		{"any bytes at all \x00\xff", []byte{7}, 1},
		{"\x00\x01\x02\x40\x41", []byte{2, 2}, 2},
		{"\x00\x01\x02\x40\x41\x42\x43", []byte{1}, 3},
	} {
		f.Add([]byte(s.text), s.splits, s.flags)
	}
	f.Fuzz(func(t *testing.T, text, splits []byte, flags byte) {
		if len(text) > 1<<10 || len(splits) > 1<<8 {
			t.Skip() // as in FuzzDecoderAgainstGobwas
		}
		text = bytes.Clone(text) // the fuzzer's own, not to be written
		switch flags & 3 {
		case 1:
			text = []byte(base64.StdEncoding.EncodeToString(text))
		case 2:
			for i, c := range text {
				text[i] = (b64Alphabet + "=")[int(c)%65]
			}
		case 3:
			for i, c := range text {
				text[i] = (b64Alphabet + "=\r\n")[int(c)%67]
			}
		}
		pieces := splitPieces(text, splits)

		want, ok := refB64(text)
		if !ok {
			want, _ = refB64Progress(text)
		}
		check := func(how string, got []byte, err error) {
			t.Helper()
			var ce *CloseError
			switch {
			case ok && err != nil:
				t.Fatalf("%s %q: error %v, stdlib decodes it", how, text, err)
			case !ok && (!errors.As(err, &ce) || ce.Code != 1007 || ce.Remote):
				t.Fatalf("%s %q: error %+v, want a 1007", how, text, err)
			case !bytes.Equal(got, want):
				t.Fatalf("%s %q: got %q, want %q", how, text, got, want)
			}
		}

		var s base64Stream
		var out sink
		var err error
		for _, p := range pieces {
			if err = s.decode(bytes.Clone(p), &out); err != nil {
				break
			}
		}
		if err == nil {
			err = s.end()
		}
		check("base64Stream", out.target, err)

		var frames []byte
		for i, p := range pieces {
			first := byte(cont)
			if i == 0 {
				first = 0x01 // a text frame
			}
			if i == len(pieces)-1 {
				first |= 0x80
			}
			frames = append(frames, clientFrame(first, p)...)
		}
		r := feedSplit(t, HyBi, Base64, frames, pieceSizes(splits))
		check("HyBi fragments", []byte(r.target), errOf(r))
		if r.err == nil && r.consumed != len(frames) {
			t.Fatalf("HyBi fragments %q: consumed %d of %d", text, r.consumed, len(frames))
		}

		if bytes.IndexByte(text, 0xFF) < 0 {
			frame := cat([]byte{0x00}, text, []byte{0xFF})
			r := feedSplit(t, Hixie76, Base64, frame, pieceSizes(splits))
			check("Hixie", []byte(r.target), errOf(r))
		}
	})
}

// splitPieces cuts text into pieces of the sizes in splits (zero allowed),
// the rest in a last piece.
func splitPieces(text, splits []byte) [][]byte {
	var pieces [][]byte
	for _, s := range splits {
		n := min(int(s), len(text))
		pieces = append(pieces, text[:n])
		text = text[n:]
	}
	return append(pieces, text)
}

// pieceSizes turns splits into feed sizes, each at least one byte.
func pieceSizes(splits []byte) []int {
	sizes := make([]int, len(splits))
	for i, s := range splits {
		sizes[i] = int(s) + 1
	}
	return sizes
}

func errOf(r result) error {
	if r.err == nil {
		return nil
	}
	return r.err
}

// FuzzEncoder parses Encode's frames back: with gobwas's ReadHeader for
// HyBi, by hand for Hixie (0x00, base64, 0xFF). The payload must come back
// whole (base64-decoded by stdlib's strict decoder where base64), in one
// final unmasked frame of the mode's opcode with the shortest header, in
// MaxFrameLen bytes of scratch. flags picks the version (low two bits, mod
// 3) and base64 mode (bit 2); bits 3 and 4 lengthen the payload by grow and
// by 64 KiB, for the 16- and 64-bit lengths.
func FuzzEncoder(f *testing.F) {
	for _, s := range []struct {
		payload []byte
		flags   byte
		grow    uint16
	}{
		{[]byte("hello"), 0, 0},
		{nil, 0, 0},
		{nil, 4, 0},
		{[]byte{0xFF, 0x00}, 1, 0},
		{[]byte("x"), 2, 0},
		{[]byte("125"), 8, 122},
		{[]byte("126"), 8, 123},
		{[]byte("big"), 8 | 4, 200},
		{[]byte("16-bit max"), 8, 0xFFFF - 10},
		{[]byte("64-bit"), 16, 0},
		{[]byte("64-bit base64"), 16 | 4, 0},
	} {
		f.Add(s.payload, s.flags, s.grow)
	}
	f.Fuzz(func(t *testing.T, payload []byte, flags byte, grow uint16) {
		e := Encoder{Version: Version(flags & 3 % 3)}
		if flags&4 != 0 {
			e.Mode = Base64
		}
		extra := 0
		if flags&8 != 0 {
			extra += int(grow)
		}
		if flags&16 != 0 {
			extra += 1 << 16
		}
		payload = bytes.Clone(payload) // the fuzzer's own, not to be appended to
		for i := range extra {
			payload = append(payload, byte(i*7))
		}
		orig := bytes.Clone(payload)

		size := e.MaxFrameLen(len(payload))
		scratch := make([]byte, size)
		head, body := e.Encode(payload, scratch[:size:size])
		if !bytes.Equal(payload, orig) {
			t.Fatal("Encode modified the payload")
		}
		frame := cat(head, body)

		if e.Version != HyBi {
			if body != nil || len(frame) < 2 || frame[0] != 0x00 || frame[len(frame)-1] != 0xFF {
				t.Fatalf("%v: frame %q, body %q", e.Version, trunc(string(frame)), trunc(string(body)))
			}
			text := frame[1 : len(frame)-1]
			if bytes.IndexByte(text, 0xFF) >= 0 {
				t.Fatalf("%v: 0xFF inside the frame", e.Version)
			}
			got, err := base64.StdEncoding.Strict().DecodeString(string(text))
			if err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("%v: payload back %q, %v", e.Version, trunc(string(got)), err)
			}
			return
		}

		r := bytes.NewReader(frame)
		h, err := ws.ReadHeader(r)
		if err != nil {
			t.Fatalf("ReadHeader: %v", err)
		}
		headerLen := len(frame) - r.Len()
		back := frame[headerLen:]
		wantOp := ws.OpBinary
		if e.Mode == Base64 {
			wantOp = ws.OpText
		}
		switch {
		case !h.Fin || h.Rsv != 0 || h.Masked || h.OpCode != wantOp:
			t.Fatalf("header %+v, want final unmasked %v", h, wantOp)
		case h.Length != int64(len(back)):
			t.Fatalf("length %d, %d bytes follow", h.Length, len(back))
		case headerLen != ws.HeaderSize(h):
			t.Fatalf("header of %d bytes for length %d", headerLen, h.Length)
		}
		if e.Mode == Base64 {
			if body != nil {
				t.Fatal("base64 frame with a separate body")
			}
			if back, err = base64.StdEncoding.Strict().DecodeString(string(back)); err != nil {
				t.Fatalf("payload is not base64: %v", err)
			}
		} else if len(payload) > 0 && &body[0] != &payload[0] {
			t.Fatal("binary payload copied")
		}
		if !bytes.Equal(back, payload) {
			t.Fatalf("payload back %q, want %q", trunc(string(back)), trunc(string(payload)))
		}
	})
}

// mayBeSent is RFC 6455 7.4's list of the close codes an endpoint may put on
// the wire: 1000-1003 and 1007-1011 (1004 is reserved; 1005, 1006 and 1015
// are for reporting only), and 3000-4999 for libraries and applications.
// IANA has since registered 1012-1014; like gobwas, we do not accept them.
func mayBeSent(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1011:
		return true
	}
	return code >= 3000 && code <= 4999
}

// FuzzCloseFrame checks close frames both ways. Encoder.Close must make a
// close frame gobwas reads back, with the code and the reason cut to fit 125
// bytes on a UTF-8 boundary, valid by CheckCloseFrameData when the code may
// be sent. A client close frame carrying payload (masked with mask) must get
// the verdict RFC 6455 5.5 and 7.4 require: 1000 for no payload, 1002 for one
// byte, a code that may not be sent or more than 125 bytes, 1007 for a
// reason that is not UTF-8, and otherwise the code and reason echoed.
func FuzzCloseFrame(f *testing.F) {
	for _, s := range []struct {
		code    uint16
		reason  string
		payload []byte
	}{
		{1000, "Target closed", []byte{0x03, 0xE8}},
		{0, "ignored", nil},
		{1002, strings.Repeat("r", 300), []byte{0x03}},
		{1002, strings.Repeat("r", 122) + "é", []byte("\x03\xe9gone")},
		{1011, strings.Repeat("€", 50), []byte("\x0f\xa0\xe2\x82")},
		{4999, "\xff\xfe", []byte{0x13, 0x88}},
		{1005, "", []byte{0x03, 0xED}},
		{1012, "", []byte{0x03, 0xF4}},
		{999, "x", []byte("\x0b\xb8" + strings.Repeat("a", 123))},
		{3000, strings.Repeat("\x80", 130), []byte("\x0b\xb8" + strings.Repeat("a", 124))},
	} {
		f.Add(s.code, s.reason, s.payload, uint32(0x37fa213d))
	}
	f.Fuzz(func(t *testing.T, code uint16, reason string, payload []byte, mask uint32) {
		if len(reason) > 1<<9 || len(payload) > 1<<8 {
			t.Skip() // past 125 bytes, more changes nothing; see FuzzDecoderAgainstGobwas
		}
		checkEncoderClose(t, code, reason)
		checkClientClose(t, payload, mask)
	})
}

func checkEncoderClose(t *testing.T, code uint16, reason string) {
	for _, v := range []Version{Hixie75, Hixie76} {
		if got := (Encoder{Version: v}).Close(code, reason); string(got) != "\xff\x00" {
			t.Fatalf("%v close: %q", v, got)
		}
	}
	frame := Encoder{Version: HyBi}.Close(code, reason)
	r := bytes.NewReader(frame)
	h, err := ws.ReadHeader(r)
	if err != nil {
		t.Fatalf("ReadHeader(%q): %v", frame, err)
	}
	p := frame[len(frame)-r.Len():]
	switch {
	case !h.Fin || h.Rsv != 0 || h.Masked || h.OpCode != ws.OpClose:
		t.Fatalf("header %+v, want a final unmasked close", h)
	case h.Length != int64(len(p)) || len(p) > ws.MaxControlFramePayloadSize || ws.HeaderSize(h) != 2:
		t.Fatalf("length %d, %d bytes follow", h.Length, len(p))
	case code == 0:
		if len(p) != 0 {
			t.Fatalf("code 0: payload %q", p)
		}
		return
	}
	gotCode, gotReason := ws.ParseCloseFrameData(p)
	if uint16(gotCode) != code || !strings.HasPrefix(reason, gotReason) || len(gotReason) > 123 {
		t.Fatalf("close(%d, %q) sent %d %q", code, trunc(reason), gotCode, gotReason)
	}
	if len(reason) <= 123 && gotReason != reason {
		t.Fatalf("close(%d, %q): reason cut to %q", code, reason, gotReason)
	}
	if !utf8.ValidString(reason) {
		return // no character boundaries to keep
	}
	want := reason[:min(len(reason), 123)]
	for !utf8.ValidString(want) {
		want = want[:len(want)-1]
	}
	if gotReason != want {
		t.Fatalf("close(%d, %q): reason %q, want %q", code, trunc(reason), gotReason, want)
	}
	if mayBeSent(code) {
		if err := ws.CheckCloseFrameData(gotCode, gotReason); err != nil {
			t.Fatalf("close(%d, %q): gobwas refuses it: %v", code, trunc(reason), err)
		}
	}
}

func checkClientClose(t *testing.T, payload []byte, mask uint32) {
	var m [4]byte
	binary.BigEndian.PutUint32(m[:], mask)
	frame := clientFrameMask(closeOp, payload, m, true)

	var want CloseError
	switch {
	case len(payload) > 125:
		want = CloseError{Code: 1002}
	case len(payload) == 0:
		want = CloseError{Code: 1000, Remote: true}
	case len(payload) == 1:
		want = CloseError{Code: 1002}
	case !mayBeSent(binary.BigEndian.Uint16(payload)):
		want = CloseError{Code: 1002}
	case !utf8.Valid(payload[2:]):
		want = CloseError{Code: 1007}
	default:
		want = CloseError{Code: binary.BigEndian.Uint16(payload), Reason: string(payload[2:]), Remote: true}
	}
	for _, sizes := range [][]int{nil, ones(len(frame))} {
		got := feedSplit(t, HyBi, Binary, frame, sizes)
		switch {
		case got.err == nil:
			t.Fatalf("close payload %q: no verdict", payload)
		case got.err.Code != want.Code || got.err.Remote != want.Remote || (want.Remote && got.err.Reason != want.Reason):
			t.Fatalf("close payload %q: got %+v, want %+v", payload, *got.err, want)
		case got.target != "" || got.client != "":
			t.Fatalf("close payload %q: handed out %q, %q", payload, got.target, got.client)
		case len(payload) <= 125 && got.consumed != len(frame): // a close frame counts as consumed
			t.Fatalf("close payload %q: consumed %d of %d", payload, got.consumed, len(frame))
		}
	}
}
