package codec

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

// readServerFrame parses one unmasked frame with gobwas, as a client would.
func readServerFrame(t *testing.T, frame []byte) ws.Frame {
	t.Helper()
	r := bytes.NewReader(frame)
	h, err := ws.ReadHeader(r)
	if err != nil || h.Length > int64(r.Len()) {
		t.Fatalf("ReadHeader(%q): %+v, %v", frame[:min(len(frame), 20)], h, err)
	}
	f := ws.Frame{Header: h, Payload: frame[len(frame)-r.Len():][:h.Length]}
	if f.Header.Masked || !f.Header.Fin || f.Header.Rsv != 0 {
		t.Errorf("header %+v: want FIN, unmasked, no RSV", f.Header)
	}
	if got := ws.HeaderSize(f.Header) + len(f.Payload); got != len(frame) {
		t.Errorf("frame of %d bytes, %d used", len(frame), got)
	}
	return f
}

func TestEncodeHyBi(t *testing.T) {
	for _, size := range []int{0, 1, 125, 126, 1000, 0xFFFF, 0x10000, 200000} {
		payload := bytes.Repeat([]byte{0xA5}, size)
		for _, m := range []Mode{Binary, Base64} {
			e := Encoder{Version: HyBi, Mode: m}
			scratch := make([]byte, e.MaxFrameLen(size))
			head, body := e.Encode(payload, scratch)
			f := readServerFrame(t, append(bytes.Clone(head), body...))
			switch m {
			case Binary:
				if f.Header.OpCode != ws.OpBinary || !bytes.Equal(f.Payload, payload) {
					t.Errorf("binary %d: opcode %v, %d bytes", size, f.Header.OpCode, len(f.Payload))
				}
				if size > 0 && &body[0] != &payload[0] {
					t.Errorf("binary %d: payload copied", size)
				}
			case Base64:
				got, err := base64.StdEncoding.DecodeString(string(f.Payload))
				if f.Header.OpCode != ws.OpText || err != nil || !bytes.Equal(got, payload) || body != nil {
					t.Errorf("base64 %d: opcode %v, %v", size, f.Header.OpCode, err)
				}
			}
		}
	}
}

func TestEncodeHixie(t *testing.T) {
	for _, v := range []Version{Hixie75, Hixie76} {
		e := Encoder{Version: v, Mode: Binary} // Hixie is base64 whatever the mode
		scratch := make([]byte, e.MaxFrameLen(5))
		head, body := e.Encode([]byte("hello"), scratch)
		if string(head) != "\x00aGVsbG8=\xff" || body != nil {
			t.Errorf("%v: %q, %q", v, head, body)
		}
		if got := e.Close(1000, "x"); string(got) != "\xff\x00" {
			t.Errorf("%v close: %q", v, got)
		}
		if got := e.Ping([]byte("x")); got != nil {
			t.Errorf("%v ping: %q", v, got)
		}
	}
}

func TestEncoderClose(t *testing.T) {
	e := Encoder{Version: HyBi, Mode: Binary}
	tests := []struct {
		name   string
		code   uint16
		reason string
		want   string
	}{
		{name: "plain", code: 1000, reason: "Target closed", want: "Target closed"},
		{name: "empty reason", code: 1011, reason: "", want: ""},
		{name: "long reason cut", code: 1002, reason: strings.Repeat("r", 300), want: strings.Repeat("r", 123)},
		{name: "cut on a rune boundary", code: 1002, reason: strings.Repeat("r", 122) + "é", want: strings.Repeat("r", 122)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := readServerFrame(t, e.Close(tt.code, tt.reason))
			code, reason := ws.ParseCloseFrameData(f.Payload)
			if f.Header.OpCode != ws.OpClose || uint16(code) != tt.code || reason != tt.want {
				t.Errorf("got %v %d %q", f.Header.OpCode, code, reason)
			}
		})
	}
	if f := readServerFrame(t, e.Close(0, "ignored")); f.Header.OpCode != ws.OpClose || len(f.Payload) != 0 {
		t.Errorf("code 0: %+v", f)
	}
}

func TestEncoderPing(t *testing.T) {
	e := Encoder{Version: HyBi, Mode: Base64}
	f := readServerFrame(t, e.Ping([]byte("heartbeat")))
	if f.Header.OpCode != ws.OpPing || string(f.Payload) != "heartbeat" {
		t.Errorf("got %v %q", f.Header.OpCode, f.Payload)
	}
	f = readServerFrame(t, e.Ping(bytes.Repeat([]byte("p"), 200)))
	if len(f.Payload) != 125 {
		t.Errorf("ping payload of %d bytes", len(f.Payload))
	}
}

func TestEncodeAllocs(t *testing.T) {
	payload := bytes.Repeat([]byte("z"), 70000)
	for _, e := range []Encoder{{HyBi, Binary}, {HyBi, Base64}, {Hixie76, Base64}} {
		scratch := make([]byte, e.MaxFrameLen(len(payload)))
		allocs := testing.AllocsPerRun(100, func() {
			e.Encode(payload, scratch)
			e.Encode(payload[:10], scratch)
		})
		if allocs != 0 {
			t.Errorf("%v %v: Encode allocates %v per run", e.Version, e.Mode, allocs)
		}
	}
}

func BenchmarkEncodeBase64(b *testing.B) {
	e := Encoder{Version: HyBi, Mode: Base64}
	payload := bytes.Repeat([]byte("z"), 16<<10)
	scratch := make([]byte, e.MaxFrameLen(len(payload)))
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		e.Encode(payload, scratch)
	}
}
