package record

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

const python = "/usr/bin/python3"

// pythonEscape is Python websockify's escaping, run by python3, of each
// buffer.
const pythonEscape = `
import sys
for line in sys.stdin:
    buf = bytes.fromhex(line.strip())
    print(buf.decode('latin1').encode('unicode_escape').decode('ascii').replace("'", "\\'"))
`

func escapeWithPython(t *testing.T, bufs [][]byte) []string {
	t.Helper()
	if _, err := exec.LookPath(python); err != nil {
		t.Skipf("no %s: %v", python, err)
	}
	var in strings.Builder
	for _, b := range bufs {
		in.WriteString(hex.EncodeToString(b))
		in.WriteByte('\n')
	}
	cmd := exec.Command(python, "-c", pythonEscape)
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	// The escaped text has no newline of its own, so lines separate it.
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(bufs) {
		t.Fatalf("python3 gave %d lines for %d buffers", len(lines), len(bufs))
	}
	return lines
}

func checkEscapingMatchesPython(t *testing.T, bufs [][]byte) {
	t.Helper()
	want := escapeWithPython(t, bufs)
	for i, b := range bufs {
		got := appendEscaped(nil, b)
		if string(got) != want[i] {
			t.Errorf("escaping %x: got %q, python3 %q", b, got, want[i])
		}
		if n := escapedSize(b); n != len(got) {
			t.Errorf("escapedSize(%x) = %d, escaped is %d bytes", b, n, len(got))
		}
	}
}

func TestEscapingOfEveryByteMatchesPython(t *testing.T) {
	bufs := make([][]byte, 0, 258)
	all := make([]byte, 256)
	for b := range 256 {
		bufs = append(bufs, []byte{byte(b)})
		all[b] = byte(b)
	}
	bufs = append(bufs, all, nil)
	checkEscapingMatchesPython(t, bufs)
}

func TestEscapingOfRandomBuffersMatchesPython(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	bufs := make([][]byte, 300)
	for i := range bufs {
		bufs[i] = randomChunk(rng, rng.IntN(2000))
	}
	checkEscapingMatchesPython(t, bufs)
}

// randomChunk is n random bytes, a third of the time from a small
// alphabet heavy in what gets escaped, so that runs of it occur.
func randomChunk(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	const tricky = "\\'\"\n\r\t\x00\x7f\x80\xffab{}"
	textual := rng.IntN(3) == 0
	for i := range b {
		if textual {
			b[i] = tricky[rng.IntN(len(tricky))]
		} else {
			b[i] = byte(rng.Uint32())
		}
	}
	return b
}

func TestLineFraming(t *testing.T) {
	for _, tc := range []struct {
		mark byte
		ms   int64
		p    string
		want string
	}{
		{toClientMark, 0, "RFB 003.008\n", `'{0{RFB 003.008\n',` + "\n"},
		{fromClientMark, 1234, "\x01it's", `'}1234}\x01it\'s',` + "\n"},
		{toClientMark, -7, "", `'{-7{',` + "\n"},
	} {
		got := appendLine(make([]byte, 0, lineSize(tc.ms, []byte(tc.p))), tc.mark, tc.ms, []byte(tc.p))
		if string(got) != tc.want {
			t.Errorf("appendLine(%q, %d, %q) = %q, want %q", tc.mark, tc.ms, tc.p, got, tc.want)
		}
		if n := lineSize(tc.ms, []byte(tc.p)); n != len(got) {
			t.Errorf("lineSize(%d, %q) = %d, line is %d bytes", tc.ms, tc.p, n, len(got))
		}
		if n := lineSizeAtMost(tc.ms, []byte(tc.p)); n < len(got) {
			t.Errorf("lineSizeAtMost(%d, %q) = %d, line is %d bytes", tc.ms, tc.p, n, len(got))
		}
	}
}

func TestDecimalLen(t *testing.T) {
	for _, v := range []int64{0, 9, 10, 99, 100, -1, -10, 1<<63 - 1, -1 << 63} {
		if got, want := decimalLen(v), len(strconv.FormatInt(v, 10)); got != want {
			t.Errorf("decimalLen(%d) = %d, want %d", v, got, want)
		}
	}
}

func BenchmarkAppendEscaped(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, kind := range []string{"binary", "text"} {
		p := make([]byte, 64<<10)
		for i := range p {
			if kind == "text" {
				p[i] = byte(' ' + rng.IntN(95))
			} else {
				p[i] = byte(rng.Uint32())
			}
		}
		b.Run(kind, func(b *testing.B) {
			dst := make([]byte, 0, 4*len(p))
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			for b.Loop() {
				dst = appendEscaped(dst[:0], p)
			}
			if !bytes.HasPrefix(dst, appendEscaped(nil, p[:10])) {
				b.Fatal("escaped wrong")
			}
		})
	}
}
