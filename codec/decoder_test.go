package codec

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"
)

// sink records what a decoder hands out.
type sink struct {
	target []byte
	client []byte
}

func (s *sink) ToTarget(p []byte) { s.target = append(s.target, p...) }
func (s *sink) ToClient(p []byte) { s.client = append(s.client, p...) }

// discard is a sink that keeps nothing, for allocation counts.
type discard struct{ n int }

func (d *discard) ToTarget(p []byte) { d.n += len(p) }
func (d *discard) ToClient(p []byte) { d.n += len(p) }

var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// clientFrame builds a masked client frame. first is the first header byte
// (FIN, RSV, opcode).
func clientFrame(first byte, payload []byte) []byte {
	return clientFrameMask(first, payload, testMask, true)
}

func clientFrameMask(first byte, payload []byte, mask [4]byte, masked bool) []byte {
	f := []byte{first, 0}
	n := len(payload)
	switch {
	case n <= 125:
		f[1] = byte(n)
	case n <= 0xFFFF:
		f[1] = 126
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	default:
		f[1] = 127
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	if !masked {
		return append(f, payload...)
	}
	f[1] |= 0x80
	f = append(f, mask[:]...)
	for i, c := range payload {
		f = append(f, c^mask[i%4])
	}
	return f
}

const (
	finText   = 0x81
	finBinary = 0x82
	text      = 0x01
	cont      = 0x00
	finCont   = 0x80
	ping      = 0x89
	pong      = 0x8A
	closeOp   = 0x88
)

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// result is everything a decoder did with a stream.
type result struct {
	target   string
	client   string
	consumed int
	err      *CloseError
}

// feedSplit feeds stream in chunks of the given sizes (the rest in one last
// chunk), re-offering what each call leaves, the way the event loop does.
func feedSplit(t testing.TB, v Version, m Mode, stream []byte, sizes []int) result {
	stream = bytes.Clone(stream)
	d := NewDecoder(v, m)
	var out sink
	var pending []byte
	var r result
	feed := func(chunk []byte) bool {
		buf := append(bytes.Clone(pending), chunk...)
		n, err := d.Feed(buf, &out)
		if n < 0 || n > len(buf) {
			t.Fatalf("Feed consumed %d of %d", n, len(buf))
		}
		r.consumed += n
		pending = buf[n:]
		if err != nil {
			var ce *CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *CloseError", err)
			}
			r.err = ce
			return false
		}
		return true
	}
	ok := true
	for _, size := range sizes {
		if !ok || len(stream) == 0 {
			break
		}
		size = min(size, len(stream))
		ok = feed(stream[:size])
		stream = stream[size:]
	}
	if ok {
		ok = feed(stream)
	}
	if ok && len(pending) > 0 {
		// Whatever is left must be a header waiting for its end.
		if n, err := d.Feed(bytes.Clone(pending), &out); n != 0 || err != nil {
			t.Fatalf("Feed made progress on a re-offer: %d, %v", n, err)
		}
	}
	r.target, r.client = string(out.target), string(out.client)
	return r
}

func feedOnce(t testing.TB, v Version, m Mode, stream []byte) result {
	return feedSplit(t, v, m, stream, nil)
}

func ones(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = 1
	}
	return s
}

func randomSizes(r *rand.Rand, n int) []int {
	var s []int
	for total := 0; total < n; {
		k := 1 + r.IntN(20)
		s = append(s, k)
		total += k
	}
	return s
}

func sameResult(a, b result) bool {
	if a.target != b.target || a.client != b.client || (a.err == nil) != (b.err == nil) {
		return false
	}
	if a.err == nil {
		return a.consumed == b.consumed
	}
	return *a.err == *b.err
}

func pongFrame(payload string) string {
	return string(append([]byte{0x8A, byte(len(payload))}, payload...))
}

func closeFrame(code uint16, reason string) []byte {
	return clientFrame(closeOp, append(binary.BigEndian.AppendUint16(nil, code), reason...))
}

func b64(s string) []byte { return []byte(base64.StdEncoding.EncodeToString([]byte(s))) }

func TestDecoder(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 5000) // 80000 bytes: 64-bit length
	mid := bytes.Repeat([]byte("xyz"), 100)               // 300 bytes: 16-bit length
	tests := []struct {
		name     string
		v        Version
		m        Mode
		stream   []byte
		target   string
		client   string
		leftover int // bytes of stream not consumed
		code     uint16
		remote   bool
	}{
		{
			name:   "binary frame",
			v:      HyBi,
			m:      Binary,
			stream: clientFrame(finBinary, []byte("hello")),
			target: "hello",
		},
		{
			name:   "text frame passes raw in binary mode",
			v:      HyBi,
			m:      Binary,
			stream: clientFrame(finText, []byte("h\xffi")),
			target: "h\xffi",
		},
		{
			name:   "16- and 64-bit lengths",
			v:      HyBi,
			m:      Binary,
			stream: cat(clientFrame(finBinary, mid), clientFrame(finBinary, big)),
			target: string(mid) + string(big),
		},
		{
			name:   "empty frames",
			v:      HyBi,
			m:      Binary,
			stream: cat(clientFrame(finBinary, nil), clientFrame(finBinary, []byte("a")), clientFrame(finText, nil)),
			target: "a",
		},
		{
			name: "fragmented with a ping between fragments",
			v:    HyBi,
			m:    Binary,
			stream: cat(
				clientFrame(0x02, []byte("one ")),
				clientFrame(ping, []byte("are you there")),
				clientFrame(cont, []byte("two ")),
				clientFrame(pong, []byte("ignored")),
				clientFrame(finCont, []byte("three")),
				clientFrame(finBinary, []byte("!")),
			),
			target: "one two three!",
			client: pongFrame("are you there"),
		},
		{
			name:   "empty ping",
			v:      HyBi,
			m:      Binary,
			stream: clientFrame(ping, nil),
			client: pongFrame(""),
		},
		{
			name:     "incomplete header left over",
			v:        HyBi,
			m:        Binary,
			stream:   cat(clientFrame(finBinary, []byte("ab")), clientFrame(finBinary, big)[:13]),
			target:   "ab",
			leftover: 13,
		},
		{
			name:   "partial payload is passed on",
			v:      HyBi,
			m:      Binary,
			stream: clientFrame(finBinary, []byte("hello world"))[:6+5],
			target: "hello",
		},
		{
			name:   "close with code and reason",
			v:      HyBi,
			m:      Binary,
			stream: cat(clientFrame(finBinary, []byte("x")), closeFrame(4000, "bye"), clientFrame(finBinary, []byte("y"))),
			target: "x",
			code:   4000,
			remote: true,
		},
		{
			name:   "close without code",
			v:      HyBi,
			m:      Binary,
			stream: clientFrame(closeOp, nil),
			code:   1000,
			remote: true,
		},
		{
			name:   "base64 across frames and fragments",
			v:      HyBi,
			m:      Base64,
			stream: cat(clientFrame(text, []byte("aGVsbG8")), clientFrame(cont, []byte("gd2")), clientFrame(finCont, []byte("9ybGQ=")), clientFrame(finText, b64("!!"))),
			target: "hello world!!",
		},
		{
			name:   "base64 in binary frames",
			v:      HyBi,
			m:      Base64,
			stream: clientFrame(finBinary, b64("\x00\x01\xff")),
			target: "\x00\x01\xff",
		},
		{
			name:   "base64 padding ends a fragmented message",
			v:      HyBi,
			m:      Base64,
			stream: cat(clientFrame(text, []byte("QQ==")), clientFrame(finCont, nil), clientFrame(finText, []byte("QUI="))),
			target: "AAB",
		},
		{
			name:   "invalid base64",
			v:      HyBi,
			m:      Base64,
			stream: clientFrame(finText, []byte("QUJD!EFG")),
			target: "ABC",
			code:   1007,
		},
		{
			name:   "base64 cut short at the end of a message",
			v:      HyBi,
			m:      Base64,
			stream: clientFrame(finText, []byte("QUJDRA")),
			target: "ABC",
			code:   1007,
		},
		{
			name:   "base64 after padding",
			v:      HyBi,
			m:      Base64,
			stream: clientFrame(finText, []byte("QQ==QUJD")),
			target: "A",
			code:   1007,
		},
		{
			name:   "base64 after padding in a later fragment",
			v:      HyBi,
			m:      Base64,
			stream: cat(clientFrame(text, []byte("QQ==")), clientFrame(finCont, []byte("QUJD"))),
			target: "A",
			code:   1007,
		},
		{
			name:   "base64 bad padding",
			v:      HyBi,
			m:      Base64,
			stream: clientFrame(finText, []byte("Q===")),
			code:   1007,
		},
		{
			name:   "hixie frames",
			v:      Hixie76,
			m:      Base64,
			stream: cat([]byte("\x00"), b64("hello"), []byte("\xff\x00\xff\x00"), b64(" world"), []byte("\xff")),
			target: "hello world",
		},
		{
			name:   "hixie mode is always base64",
			v:      Hixie75,
			m:      Binary,
			stream: []byte("\x00QUJD\xff"),
			target: "ABC",
		},
		{
			name:   "hixie close",
			v:      Hixie75,
			m:      Base64,
			stream: []byte("\x00QUJD\xff\xff\x00\x00QUJD\xff"),
			target: "ABC",
			code:   1000,
			remote: true,
		},
		{
			name:     "hixie half a close",
			v:        Hixie76,
			m:        Base64,
			stream:   []byte("\x00QUJD\xff\xff"),
			target:   "ABC",
			leftover: 1,
		},
		{
			name:   "hixie base64 cut short",
			v:      Hixie76,
			m:      Base64,
			stream: []byte("\x00QUJDR\xff"),
			target: "ABC",
			code:   1007,
		},
		{
			name:   "hixie non-ascii",
			v:      Hixie76,
			m:      Base64,
			stream: []byte("\x00QU\xc3\xa9\xff"),
			code:   1007,
		},
		{
			name:   "hixie length-prefixed frame",
			v:      Hixie76,
			m:      Base64,
			stream: []byte("\x80\x01a"),
			code:   1002,
		},
		{
			name:   "hixie bad close",
			v:      Hixie76,
			m:      Base64,
			stream: []byte("\xff\x01"),
			code:   1002,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			once := feedOnce(t, tt.v, tt.m, tt.stream)
			if once.target != tt.target {
				t.Errorf("target %q, want %q", trunc(once.target), trunc(tt.target))
			}
			if once.client != tt.client {
				t.Errorf("client %q, want %q", once.client, tt.client)
			}
			switch {
			case tt.code == 0 && once.err != nil:
				t.Errorf("unexpected error %+v", once.err)
			case tt.code != 0 && once.err == nil:
				t.Errorf("no error, want %d", tt.code)
			case tt.code != 0 && (once.err.Code != tt.code || once.err.Remote != tt.remote):
				t.Errorf("error %+v, want code %d remote %v", once.err, tt.code, tt.remote)
			}
			if tt.code == 0 && once.consumed != len(tt.stream)-tt.leftover {
				t.Errorf("consumed %d of %d, want %d left", once.consumed, len(tt.stream), tt.leftover)
			}

			byByte := feedSplit(t, tt.v, tt.m, tt.stream, ones(len(tt.stream)))
			if !sameResult(once, byByte) {
				t.Errorf("byte by byte differs: %+v", byByte.err)
			}
			r := rand.New(rand.NewPCG(1, uint64(len(tt.stream))))
			for range 20 {
				split := feedSplit(t, tt.v, tt.m, tt.stream, randomSizes(r, len(tt.stream)))
				if !sameResult(once, split) {
					t.Fatalf("random split differs: %+v", split.err)
				}
			}
		})
	}
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func TestDecoderCloseFrames(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		code    uint16
		reason  string
		remote  bool
	}{
		{name: "normal", payload: []byte{0x03, 0xE8}, code: 1000, remote: true},
		{name: "going away with reason", payload: []byte("\x03\xe9gone"), code: 1001, reason: "gone", remote: true},
		{name: "application code", payload: []byte("\x0f\xa0x"), code: 4000, reason: "x", remote: true},
		{name: "one byte", payload: []byte{0x03}, code: 1002},
		{name: "code 999", payload: []byte{0x03, 0xE7}, code: 1002},
		{name: "code 1005 on the wire", payload: []byte{0x03, 0xED}, code: 1002},
		{name: "code 1006 on the wire", payload: []byte{0x03, 0xEE}, code: 1002},
		{name: "code 5000", payload: []byte{0x13, 0x88}, code: 1002},
		{name: "reason not UTF-8", payload: []byte("\x03\xe8\xff"), code: 1007},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := feedOnce(t, HyBi, Binary, clientFrame(closeOp, tt.payload))
			want := CloseError{Code: tt.code, Reason: tt.reason, Remote: tt.remote}
			if got.err == nil {
				t.Fatal("no error")
			}
			if got.err.Code != want.Code || got.err.Remote != want.Remote || (want.Remote && got.err.Reason != want.Reason) {
				t.Errorf("got %+v, want %+v", *got.err, want)
			}
		})
	}
}

func TestDecoderProtocolErrors(t *testing.T) {
	dataThenCont := cat(clientFrame(finBinary, []byte("ok")), clientFrame(finCont, []byte("x")))
	tests := []struct {
		name   string
		stream []byte
		target string
	}{
		{name: "unmasked", stream: clientFrameMask(finBinary, []byte("x"), testMask, false)},
		{name: "rsv1", stream: clientFrame(finBinary|0x40, []byte("x"))},
		{name: "rsv2", stream: clientFrame(finBinary|0x20, []byte("x"))},
		{name: "rsv3", stream: clientFrame(finBinary|0x10, []byte("x"))},
		{name: "opcode 3", stream: clientFrame(0x83, []byte("x"))},
		{name: "opcode 7", stream: clientFrame(0x87, []byte("x"))},
		{name: "opcode 0xB", stream: clientFrame(0x8B, []byte("x"))},
		{name: "opcode 0xF", stream: clientFrame(0x8F, []byte("x"))},
		{name: "ping over 125", stream: clientFrame(ping, bytes.Repeat([]byte("p"), 126))},
		{name: "close over 125", stream: clientFrame(closeOp, bytes.Repeat([]byte("p"), 200))},
		{name: "fragmented ping", stream: clientFrame(0x09, []byte("p"))},
		{name: "continuation without a message", stream: clientFrame(finCont, []byte("x"))},
		{name: "continuation after a finished message", stream: dataThenCont, target: "ok"},
		{
			name:   "new message inside a fragmented one",
			stream: cat(clientFrame(0x02, []byte("a")), clientFrame(finBinary, []byte("b"))),
			target: "a",
		},
		{
			name:   "text inside a fragmented binary message",
			stream: cat(clientFrame(0x02, []byte("a")), clientFrame(finText, []byte("b"))),
			target: "a",
		},
		{
			name:   "64-bit length with its top bit set",
			stream: []byte{finBinary, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 'x'},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, sizes := range [][]int{nil, ones(len(tt.stream))} {
				got := feedSplit(t, HyBi, Binary, tt.stream, sizes)
				if got.err == nil || got.err.Code != 1002 || got.err.Remote {
					t.Fatalf("error %+v, want a 1002", got.err)
				}
				if got.target != tt.target {
					t.Errorf("target %q, want %q", got.target, tt.target)
				}
			}
		})
	}
}

// A frame far larger than anything buffered streams through: the decoder
// hands out each chunk as it arrives.
func TestDecoderStreamsHugeFrame(t *testing.T) {
	const size = 2 << 30 // announced, never materialised
	head := []byte{finBinary, 0xFF, 0, 0, 0, 0, 0x80, 0, 0, 0}
	head = append(head, testMask[:]...)
	d := NewDecoder(HyBi, Binary)
	var out discard
	n, err := d.Feed(bytes.Clone(head), &out)
	if n != len(head) || err != nil {
		t.Fatalf("header: %d, %v", n, err)
	}
	chunk := make([]byte, 64<<10)
	for sent := 0; sent < 64<<20; sent += len(chunk) {
		if n, err := d.Feed(chunk, &out); n != len(chunk) || err != nil {
			t.Fatalf("chunk: %d, %v", n, err)
		}
	}
	if out.n != 64<<20 {
		t.Errorf("handed out %d bytes", out.n)
	}
	if d.remain != size-64<<20 {
		t.Errorf("remain %d", d.remain)
	}
}

func TestDecoderUnmasksAcrossCalls(t *testing.T) {
	payload := []byte(strings.Repeat("The quick brown fox jumps over the lazy dog. ", 10))
	frame := clientFrameMask(finBinary, payload, [4]byte{1, 2, 3, 4}, true)
	for cut := 1; cut < len(frame); cut++ {
		got := feedSplit(t, HyBi, Binary, frame, []int{cut, 3, 17})
		if got.target != string(payload) {
			t.Fatalf("cut %d: %q", cut, trunc(got.target))
		}
	}
}

func TestDecoderSize(t *testing.T) {
	// It lives in every session: a small fixed size, no pointers to buffers.
	if size := unsafe.Sizeof(Decoder{}); size > 200 {
		t.Errorf("decoder bigger than expected: %d", size)
	}
}

func TestFeedAllocs(t *testing.T) {
	binaryStream := cat(
		clientFrame(0x02, bytes.Repeat([]byte("a"), 1000)),
		clientFrame(ping, []byte("hb")),
		clientFrame(finCont, bytes.Repeat([]byte("b"), 70000)),
	)
	base64Stream := cat(
		clientFrame(text, b64(strings.Repeat("c", 3000))[:1001]),
		clientFrame(finCont, b64(strings.Repeat("c", 3000))[1001:]),
	)
	hixieStream := cat([]byte{0}, b64(strings.Repeat("d", 3000)), []byte{0xFF})
	tests := []struct {
		name   string
		v      Version
		m      Mode
		stream []byte
	}{
		{name: "hybi binary", v: HyBi, m: Binary, stream: binaryStream},
		{name: "hybi base64", v: HyBi, m: Base64, stream: base64Stream},
		{name: "hixie", v: Hixie76, m: Base64, stream: hixieStream},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := make([]byte, len(tt.stream))
			d := NewDecoder(tt.v, tt.m)
			out := &discard{}
			allocs := testing.AllocsPerRun(50, func() {
				copy(buf, tt.stream)
				d = NewDecoder(tt.v, tt.m)
				// Odd chunks, so that headers and base64 quanta get split.
				for off := 0; off < len(buf); {
					end := min(off+777, len(buf))
					n, err := d.Feed(buf[off:end], out)
					if err != nil {
						panic(err)
					}
					if n == 0 {
						end = min(off+1555, len(buf))
						n, _ = d.Feed(buf[off:end], out)
					}
					off += n
				}
			})
			if allocs != 0 {
				t.Errorf("Feed allocates: %v per run", allocs)
			}
		})
	}
}

func BenchmarkFeedBinary(b *testing.B) {
	frame := clientFrame(finBinary, bytes.Repeat([]byte("x"), 16<<10))
	buf := make([]byte, len(frame))
	d := NewDecoder(HyBi, Binary)
	out := &discard{}
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, frame)
		if _, err := d.Feed(buf, out); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFeedBase64(b *testing.B) {
	frame := clientFrame(finText, b64(strings.Repeat("x", 12<<10)))
	buf := make([]byte, len(frame))
	d := NewDecoder(HyBi, Base64)
	out := &discard{}
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, frame)
		if _, err := d.Feed(buf, out); err != nil {
			b.Fatal(err)
		}
	}
}
