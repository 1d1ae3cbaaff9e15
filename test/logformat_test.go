package test

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// --log-format json through the real binary: every line on stderr, in
// --log-file and in --syslog's message bodies is one JSON object, with the
// same events the text format logs.

// jsonLine is one parsed line, its raw text kept for messages.
type jsonLine struct {
	raw    string
	fields map[string]any
}

func (l jsonLine) str(k string) string { s, _ := l.fields[k].(string); return s }

// parseJSONLines parses text line by line with encoding/json; every line
// must be an object with a time (RFC 3339, UTC, milliseconds), a level and
// a msg.
func parseJSONLines(t *testing.T, where, text string) []jsonLine {
	t.Helper()
	var lines []jsonLine
	for _, raw := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		var fields map[string]any
		dec := json.NewDecoder(strings.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&fields); err != nil || dec.More() {
			t.Errorf("%s: not one JSON object: %q (%v)", where, raw, err)
			continue
		}
		l := jsonLine{raw: raw, fields: fields}
		ts := l.str("time")
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || len(ts) != len("2006-01-02T15:04:05.000Z") || !strings.HasSuffix(ts, "Z") {
			t.Errorf("%s: time %q is not RFC 3339 UTC with milliseconds: %s", where, ts, raw)
		}
		switch l.str("level") {
		case "debug", "info", "warning", "error":
		default:
			t.Errorf("%s: level %q: %s", where, l.str("level"), raw)
		}
		if _, ok := fields["msg"].(string); !ok {
			t.Errorf("%s: no msg: %s", where, raw)
		}
		lines = append(lines, l)
	}
	return lines
}

// findLine returns the first line for which match holds.
func findLine(lines []jsonLine, match func(jsonLine) bool) (jsonLine, bool) {
	for _, l := range lines {
		if match(l) {
			return l, true
		}
	}
	return jsonLine{}, false
}

func TestLogFormatJSON(t *testing.T) {
	echo := startEcho(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "websockify.log")
	tokens := filepath.Join(dir, "tokens")
	writeFile(t, tokens, "a: "+echo.addr+"\n")

	// A syslog "daemon" of our own: a unix datagram socket.
	sockPath := filepath.Join(dir, "log.sock")
	sysl, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sysl.Close()
	datagrams := make(chan string, 1000)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := sysl.Read(buf)
			if err != nil {
				close(datagrams)
				return
			}
			datagrams <- string(buf[:n])
		}
	}()

	p := launchProxy(t, proxyConfig{Args: []string{"--log-format", "json", "-v", "--log-file", logPath,
		"--syslog", sockPath, "--token-plugin", "TokenFile", "--token-source", tokens}})

	// A session's life: upgrade, relay, the client closes.
	r, err := upgradeTo(p, nil, "/websockify?token=a")
	if err != nil || r.status != 101 {
		t.Fatalf("upgrade: %v, status %d", err, r.status)
	}
	mustEcho(t, r.c, []byte("json"))
	if err := r.c.sendClose(1000, "bye"); err != nil {
		t.Fatal(err)
	}
	if code, _, _, err := r.c.expectClose(); err != nil || code != 1000 {
		t.Errorf("close: %d %v", code, err)
	}
	r.c.conn.Close()
	// A refusal, with a quote and a control character escaped in the path.
	expectRefused(t, p, nil, `/?token=no%22pe%01`, 403, "")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !waitLog(p, "SIGHUP: reloaded TokenFile", 5*time.Second) {
		t.Errorf("no reload line after SIGHUP")
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, ok := p.waitExit(10 * time.Second); !ok || code != 0 {
		t.Fatalf("exit %d, exited %v", code, ok)
	}

	stderr := p.stderr.String()
	lines := parseJSONLines(t, "stderr", stderr)
	file, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	// The file gets the very same lines.
	if string(file) != stderr {
		t.Errorf("--log-file differs from stderr:\n%s\n---\n%s", file, stderr)
	}
	parseJSONLines(t, "log file", string(file))

	want := []struct {
		what  string
		match func(jsonLine) bool
	}{
		{"the banner", func(l jsonLine) bool {
			return l.str("msg") == "WebSocket server settings:" && l.fields["client"] == nil
		}},
		{"the 101 request line", func(l jsonLine) bool {
			return l.str("client") == "127.0.0.1" && l.str("method") == "GET" && l.str("path") == "/websockify?token=a" &&
				l.str("protocol") == "HTTP/1.1" && l.fields["status"] == json.Number("101") &&
				l.str("msg") == `"GET /websockify?token=a HTTP/1.1" 101 -`
		}},
		{"the ws:// line", func(l jsonLine) bool {
			return l.str("client") == "127.0.0.1" && l.str("msg") == "127.0.0.1: Plain non-SSL (ws://) WebSocket connection"
		}},
		{"the dial line", func(l jsonLine) bool { return l.str("target") == echo.addr && l.str("level") == "info" }},
		{"the client's close", func(l jsonLine) bool {
			return l.fields["close_code"] == json.Number("1000") && strings.Contains(l.str("msg"), "Client closed connection (code 1000)")
		}},
		{"a -v debug line", func(l jsonLine) bool {
			return l.str("level") == "debug" && l.str("client") == "127.0.0.1" && strings.HasSuffix(l.str("msg"), ": Closed target")
		}},
		{"the 403 request line", func(l jsonLine) bool {
			return l.fields["status"] == json.Number("403") && l.str("path") == "/?token=no%22pe%01"
		}},
		{"the refusal's reason", func(l jsonLine) bool {
			return l.str("client") == "127.0.0.1" && strings.Contains(l.str("msg"), "not found")
		}},
		{"the reload line", func(l jsonLine) bool { return strings.HasPrefix(l.str("msg"), "SIGHUP: reloaded TokenFile "+tokens) }},
		{"the signal line", func(l jsonLine) bool { return strings.HasPrefix(l.str("msg"), "Got terminated") }},
	}
	for _, w := range want {
		if _, ok := findLine(lines, w.match); !ok {
			t.Errorf("no JSON line for %s in:\n%s", w.what, stderr)
		}
	}

	// Syslog: each message's body is the same JSON object.
	var bodies []string
	for len(bodies) < len(lines) {
		select {
		case d := <-datagrams:
			i := strings.IndexByte(d, '{')
			if i < 0 || !strings.HasPrefix(d, "<") {
				t.Fatalf("syslog message without a JSON body: %q", d)
			}
			bodies = append(bodies, d[i:])
		case <-time.After(5 * time.Second):
			t.Fatalf("%d syslog messages, want %d", len(bodies), len(lines))
		}
	}
	got := parseJSONLines(t, "syslog", strings.Join(bodies, "\n"))
	for i := range got {
		if got[i].raw != lines[i].raw {
			t.Errorf("syslog message %d %q, stderr line %q", i, got[i].raw, lines[i].raw)
		}
	}
}

// TestLogFormatText: text stays the default, and it is the original's.
func TestLogFormatText(t *testing.T) {
	echo := startEcho(t)
	for _, args := range [][]string{nil, {"--log-format", "text"}} {
		p := startProxy(t, echo.addr, args...)
		c := dialWS(t, p, modeBinary)
		mustEcho(t, c, []byte("text"))
		c.conn.Close()
		if !waitLog(p, "Client disconnected", 5*time.Second) {
			t.Fatalf("%v: no session lines", args)
		}
		if s := p.stderr.String(); strings.Contains(s, "{") || !strings.HasPrefix(s, "WebSocket server settings:\n") ||
			!strings.Contains(s, "127.0.0.1 - - [") {
			t.Errorf("%v: not the text format:\n%s", args, s)
		}
	}
}

func TestLogFormatUsageErrors(t *testing.T) {
	port := "127.0.0.1:" + strconv.Itoa(freePort(t, "127.0.0.1"))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--log-format", "xml"}, "--log-format"},
		{[]string{"--log-format", ""}, "--log-format"},
		{[]string{"--shutdown-timeout", "-1"}, "--shutdown-timeout"},
		{[]string{"--shutdown-timeout", "soon"}, "shutdown-timeout"},
		{[]string{"--shutdown-timeout", "NaN"}, "--shutdown-timeout"},
	} {
		r := runCLI(t, 10*time.Second, append([]string{port, "127.0.0.1:1"}, tc.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) || bytes.Count([]byte(r.stderr), []byte("\n")) > 8 {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 naming %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}
