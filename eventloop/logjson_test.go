package eventloop

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// TestJSONStringEscaping: whatever bytes a line holds, its JSON string
// decodes (with encoding/json) to the same text, invalid UTF-8 as U+FFFD.
func TestJSONStringEscaping(t *testing.T) {
	cases := []string{
		"", "plain", `quote " and \ backslash`, "new\nline\r\ttab", "\x00\x01\x1f\x7f",
		"caf\xc3\xa9", "bad \xff\xfe utf-8", "cut \xe2\x82", "\u2028 line sep \u2029", "emoji \U0001F600",
		"</script>&",
	}
	rng := rand.New(rand.NewSource(1))
	for range 2000 {
		b := make([]byte, rng.Intn(40))
		for i := range b {
			b[i] = byte(rng.Intn(256))
		}
		cases = append(cases, string(b))
	}
	for _, s := range cases {
		enc := appendJSONString(nil, []byte(s))
		var got string
		if err := json.Unmarshal(enc, &got); err != nil {
			t.Fatalf("%q encoded as %s: %v", s, enc, err)
		}
		// Each invalid byte becomes one U+FFFD, as in encoding/json.
		if want := bytewiseValid(s); got != want {
			t.Errorf("%q decoded as %q, want %q", s, got, want)
		}
		if bytes.ContainsAny(enc, "\n\r\u2028\u2029") {
			t.Errorf("%q: raw line break in %s", s, enc)
		}
	}
}

func bytewiseValid(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r) // RuneError for each invalid byte
		i += size
	}
	return b.String()
}

// TestJSONLogLines: the logger's lines in JSON, parsed back with
// encoding/json: one object per line, the fixed fields, and the values of
// the lines that carry them.
func TestJSONLogLines(t *testing.T) {
	var out recordingWriter
	l := NewLogger(&out, true)
	l.json = true
	before := time.Now().UTC().Truncate(time.Millisecond)
	l.Connf("192.0.2.1", `"GET /websockify?token=a%%22b HTTP/1.1" 101 -`)
	l.Connf("192.0.2.1", "connecting to: [::1]:5900 (using SSL)")
	l.Connf("192.0.2.1", "connecting to unix socket: /run/vnc.sock")
	l.Connf("192.0.2.1", "192.0.2.1: Closing connection: 1000 Target closed")
	l.Connf("2001:db8::1", "2001:db8::1: Client closed connection (code 1001)")
	l.Connf("192.0.2.1", "192.0.2.1: code 403, message Forbidden")
	l.ConnDebugf("192.0.2.1", "debug \"quoted\"\n")
	l.Infof("status: sessions=3 goroutines=20 fds=31 pid=1234")
	l.Warnf("warning: tab\there")
	l.Errorf("error %d", 5)
	l.Flush()
	after := time.Now().UTC()

	want := []map[string]any{
		{"level": "info", "client": "192.0.2.1", "msg": `"GET /websockify?token=a%22b HTTP/1.1" 101 -`,
			"method": "GET", "path": "/websockify?token=a%22b", "protocol": "HTTP/1.1", "status": 101.0},
		{"level": "info", "client": "192.0.2.1", "msg": "connecting to: [::1]:5900 (using SSL)", "target": "[::1]:5900"},
		{"level": "info", "client": "192.0.2.1", "msg": "connecting to unix socket: /run/vnc.sock", "target": "/run/vnc.sock"},
		{"level": "info", "client": "192.0.2.1", "msg": "192.0.2.1: Closing connection: 1000 Target closed", "close_code": 1000.0},
		{"level": "info", "client": "2001:db8::1", "msg": "2001:db8::1: Client closed connection (code 1001)", "close_code": 1001.0},
		{"level": "info", "client": "192.0.2.1", "msg": "192.0.2.1: code 403, message Forbidden", "status": 403.0},
		{"level": "debug", "client": "192.0.2.1", "msg": "debug \"quoted\"\n"},
		{"level": "info", "msg": "status: sessions=3 goroutines=20 fds=31 pid=1234",
			"sessions": 3.0, "goroutines": 20.0, "fds": 31.0, "pid": 1234.0},
		{"level": "warning", "msg": "warning: tab\there"},
		{"level": "error", "msg": "error 5"},
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i, line := range lines {
		var got map[string]any
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("line %d %q: %v", i, line, err)
		}
		ts, _ := got["time"].(string)
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || !strings.HasSuffix(ts, "Z") || len(ts) != len("2006-01-02T15:04:05.000Z") {
			t.Errorf("line %d: time %q, want RFC 3339 UTC with milliseconds", i, ts)
		} else if at.Before(before) || at.After(after) {
			t.Errorf("line %d: time %v outside [%v, %v]", i, at, before, after)
		}
		delete(got, "time")
		if len(got) != len(want[i]) {
			t.Errorf("line %d: fields %v, want %v", i, got, want[i])
		}
		for k, v := range want[i] {
			if got[k] != v {
				t.Errorf("line %d: %s = %#v, want %#v (%s)", i, k, got[k], v, line)
			}
		}
	}
}

// TestJSONDroppedReport: the writer's own line (dropped lines) is JSON too.
func TestJSONDroppedReport(t *testing.T) {
	var out recordingWriter
	l := NewLogger(&out, false)
	l.json = true
	l.mu.Lock()
	l.dropped = 7
	l.mu.Unlock()
	l.Infof("after")
	l.Flush()
	for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		var got map[string]any
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
	}
	if !strings.Contains(out.String(), `"level":"warning","msg":"websockify: 7 log lines dropped`) {
		t.Errorf("no dropped report in\n%s", out.String())
	}
}

// TestTextFormatUnchanged: text lines carry nothing of JSON's.
func TestTextFormatUnchanged(t *testing.T) {
	var out recordingWriter
	l := NewLogger(&out, false)
	l.Infof("status: sessions=1")
	l.Flush()
	if got := out.String(); got != "status: sessions=1\n" {
		t.Errorf("text line %q", got)
	}
}

func BenchmarkJSONLine(b *testing.B) {
	line := []byte(`192.0.2.1 - - [27/Nov/2026 12:00:00] "GET /websockify HTTP/1.1" 101 -`)
	e := lineEnd{clientLen: 9, msgStart: int32(len("192.0.2.1 - - [27/Nov/2026 12:00:00] "))}
	var buf []byte
	b.ReportAllocs()
	for range b.N {
		buf = appendJSONLine(buf[:0], line, e, 1)
	}
}
