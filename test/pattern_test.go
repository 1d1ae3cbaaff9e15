package test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
)

// The counter stream: byte i of the stream is byte (i mod 8) of the
// little-endian uint64 i/8 mixed with a constant, so that any loss,
// duplication or reordering shows at the exact offset.

const patternMix = 0x9E3779B97F4A7C15

// fillPattern writes stream bytes [off, off+len(p)) into p.
func fillPattern(p []byte, off int64) {
	var w [8]byte
	for i := 0; i < len(p); {
		pos := off + int64(i)
		word := uint64(pos/8) * patternMix
		binary.LittleEndian.PutUint64(w[:], word)
		k := copy(p[i:], w[pos%8:])
		i += k
	}
}

// checkPattern reports the first offset where p differs from the stream.
func checkPattern(p []byte, off int64) error {
	var want [8192]byte
	for i := 0; i < len(p); i += len(want) {
		n := min(len(want), len(p)-i)
		fillPattern(want[:n], off+int64(i))
		if bytes.Equal(p[i:i+n], want[:n]) {
			continue
		}
		for j := 0; j < n; j++ {
			if p[i+j] != want[j] {
				return fmt.Errorf("stream byte %d is 0x%02x, want 0x%02x", off+int64(i+j), p[i+j], want[j])
			}
		}
	}
	return nil
}

// throttledReader reads from r at about rate bytes per second on average.
type throttledReader struct {
	r     io.Reader
	rate  float64
	start time.Time
	n     int64
}

func (t *throttledReader) Read(p []byte) (int, error) {
	if t.start.IsZero() {
		t.start = time.Now()
	}
	// Never take more than a tenth of a second's worth at once, so the
	// average holds over short windows too.
	if max := int(t.rate / 10); len(p) > max {
		p = p[:max]
	}
	n, err := t.r.Read(p)
	t.n += int64(n)
	due := t.start.Add(time.Duration(float64(t.n) / t.rate * float64(time.Second)))
	if d := time.Until(due); d > 0 {
		time.Sleep(d)
	}
	return n, err
}

// randomBytes returns n pseudo-random bytes from rng.
func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(rng.Uint32())
	}
	return b
}
