package logsink

import (
	"bufio"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fixedNow is 2026-12-01T18:00:00Z, given in another zone so the test sees
// the conversion to UTC.
func fixedNow() time.Time {
	return time.Date(2026, 12, 1, 19, 0, 0, 0, time.FixedZone("CET", 3600))
}

func testHostname(t *testing.T) string {
	t.Helper()
	h, err := os.Hostname()
	if err != nil || h == "" || len(h) > maxHostname || !isASCII(h) {
		t.Skipf("hostname %q does not make a plain expected header", h)
	}
	return h
}

func dialForTest(t *testing.T, dest string, legacy bool, facility int) *Syslog {
	t.Helper()
	s, err := DialSyslog(dest, legacy, facility, "websockify")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	s.now = fixedNow
	return s
}

func readPacket(t *testing.T, pc net.PacketConn) string {
	t.Helper()
	buf := make([]byte, 64<<10)
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func send(t *testing.T, s *Syslog, sev Severity, text string) {
	t.Helper()
	if err := s.Send(sev, text); err != nil {
		t.Fatal(err)
	}
}

func TestSyslogUDPRFC5424(t *testing.T) {
	host := testHostname(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s := dialForTest(t, pc.LocalAddr().String(), false, FacilityUser)
	pid := strconv.Itoa(os.Getpid())

	send(t, s, SeverityInfo, "127.0.0.1 - - [01/Dec/2026 19:00:00] hello")
	want := "<14>1 2026-12-01T18:00:00Z " + host + " websockify " + pid + " - - 127.0.0.1 - - [01/Dec/2026 19:00:00] hello"
	if got := readPacket(t, pc); got != want {
		t.Errorf("info:\n got %q\nwant %q", got, want)
	}
	send(t, s, SeverityDebug, "detail")
	want = "<15>1 2026-12-01T18:00:00Z " + host + " websockify " + pid + " - - detail"
	if got := readPacket(t, pc); got != want {
		t.Errorf("debug:\n got %q\nwant %q", got, want)
	}
}

func TestSyslogUDPLegacyDaemon(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s := dialForTest(t, pc.LocalAddr().String(), true, FacilityDaemon)
	pid := strconv.Itoa(os.Getpid())

	for _, c := range []struct {
		sev  Severity
		want string
	}{
		{SeverityInfo, "<30>websockify[" + pid + "]: line"},
		{SeverityDebug, "<31>websockify[" + pid + "]: line"},
		{SeverityWarning, "<28>websockify[" + pid + "]: line"},
		{SeverityError, "<27>websockify[" + pid + "]: line"},
	} {
		send(t, s, c.sev, "line")
		if got := readPacket(t, pc); got != c.want {
			t.Errorf("severity %d: got %q, want %q", c.sev, got, c.want)
		}
	}
}

func listenUnixgram(t *testing.T, path string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func TestSyslogUnixDatagram(t *testing.T) {
	host := testHostname(t)
	path := filepath.Join(t.TempDir(), "log")
	l := listenUnixgram(t, path)
	s := dialForTest(t, path, false, FacilityDaemon)
	if s.network != "unixgram" {
		t.Fatalf("network %q, want unixgram", s.network)
	}
	head := "1 2026-12-01T18:00:00Z " + host + " websockify " + strconv.Itoa(os.Getpid()) + " - - "

	send(t, s, SeverityInfo, "two\nlines")
	if got, want := readPacket(t, l), "<30>"+head+"two lines"; got != want {
		t.Errorf("newline:\n got %q\nwant %q", got, want)
	}
	send(t, s, SeverityWarning, "café")
	if got, want := readPacket(t, l), "<28>"+head+"\xef\xbb\xbfcafé"; got != want {
		t.Errorf("non-ASCII:\n got %q\nwant %q", got, want)
	}
	send(t, s, SeverityError, "") // nothing to log: nothing sent
	send(t, s, SeverityDebug, "last")
	if got, want := readPacket(t, l), "<31>"+head+"last"; got != want {
		t.Errorf("after empty:\n got %q\nwant %q", got, want)
	}
}

func TestSyslogUnixStreamFallback(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	s := dialForTest(t, path, true, FacilityUser)
	if s.network != "unix" {
		t.Fatalf("network %q, want unix (stream)", s.network)
	}
	send(t, s, SeverityInfo, "one\ntwo")
	send(t, s, SeverityDebug, "three")

	var c net.Conn
	select {
	case c = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("no stream connection")
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	pid := strconv.Itoa(os.Getpid())
	for _, want := range []string{
		"<14>websockify[" + pid + "]: one two\n",
		"<15>websockify[" + pid + "]: three\n",
	} {
		got, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestSyslogReconnectsOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	first := listenUnixgram(t, path)
	s := dialForTest(t, path, true, FacilityUser)
	send(t, s, SeverityInfo, "before")
	readPacket(t, first)

	// syslogd restarts: the old socket goes, a new one takes the path.
	_ = first.Close()
	_ = os.Remove(path)
	second := listenUnixgram(t, path)

	send(t, s, SeverityInfo, "after")
	if got, want := readPacket(t, second), "<14>websockify["+strconv.Itoa(os.Getpid())+"]: after"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestSyslogStalledSendTimesOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	listenUnixgram(t, path) // never read: its queue fills
	s := dialForTest(t, path, true, FacilityUser)
	text := strings.Repeat("x", 1024)
	for i := 0; i < 100000; i++ {
		start := time.Now()
		err := s.Send(SeverityInfo, text)
		if err == nil {
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("send %d: %v, want a deadline error", i, err)
		}
		if took := time.Since(start); took > SyslogWriteTimeout+time.Second {
			t.Fatalf("stalled send took %v", took)
		}
		return
	}
	t.Fatal("sends to a socket nobody reads never stalled")
}

func TestDialSyslogErrors(t *testing.T) {
	for _, dest := range []string{"localhost:abc", "localhost:", "localhost:70000"} {
		_, err := DialSyslog(dest, false, FacilityUser, "websockify")
		if err == nil || err.Error() != "Error parsing syslog port" {
			t.Errorf("%q: error %v, want Error parsing syslog port", dest, err)
		}
	}
	if _, err := DialSyslog(filepath.Join(t.TempDir(), "nobody"), false, FacilityUser, "websockify"); err == nil {
		t.Error("a unix socket nobody listens on: no error")
	}
	if _, err := DialSyslog("", false, FacilityUser, "websockify"); err == nil {
		t.Error("empty destination: no error")
	}
}

func TestSyslogHeaderLimits(t *testing.T) {
	if got := headerField(strings.Repeat("h", 300), maxHostname); len(got) != 255 {
		t.Errorf("hostname cut to %d characters, want 255", len(got))
	}
	// Cut by characters first, then the non-ASCII dropped, as Python does.
	if got, want := headerField("héllo", 3), "hl"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s, err := DialSyslog(pc.LocalAddr().String(), true, FacilityUser, "websockify-with-a-long-program-name")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	send(t, s, SeverityInfo, "x")
	if got, want := readPacket(t, pc), "<14>websockify-with-a-long-p["+strconv.Itoa(os.Getpid())+"]: x"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestSyslogClosed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	listenUnixgram(t, path)
	s := dialForTest(t, path, false, FacilityUser)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Send(SeverityInfo, "late"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("send after Close: %v, want net.ErrClosed", err)
	}
}
