package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/gowebsockify/websockify/wsclient"
)

// client opens sessions to the proxy under test: WebSocket (RFC 6455, masked
// client frames, subprotocol "binary") or, against the plain relay, raw TCP.
type client struct {
	raw     bool     // raw TCP instead of WebSocket
	tls     bool     // wss://: TLS under the WebSocket (tls.go)
	addr    string   // host:port of the proxy
	url     *url.URL // ws:// URL for the handshake
	timeout time.Duration
	bufSize int    // read buffer per session
	src     string // source address to dial from; empty: the kernel's choice
	rcvBuf  int    // SO_RCVBUF for each session's socket; 0: the kernel's autotuning
}

func newClient(proxyURL string, raw bool, timeout time.Duration, bufSize int) (*client, error) {
	u, err := url.Parse(proxyURL)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "ws", "wss":
	case "tcp":
		raw = true
	default:
		return nil, fmt.Errorf("proxy URL %q: want ws:// or wss:// (or tcp:// for a raw relay)", proxyURL)
	}
	if u.Port() == "" {
		return nil, fmt.Errorf("proxy URL %q has no port", proxyURL)
	}
	if err := checkLoopback(u.Host); err != nil {
		return nil, err
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return &client{raw: raw, tls: u.Scheme == "wss", addr: u.Host, url: u, timeout: timeout, bufSize: bufSize}, nil
}

// session is one open connection through the proxy. It is not safe for
// concurrent use, and deliberately small: the hold mode keeps ~10,000 of them
// with no goroutine each.
type session struct {
	conn net.Conn
	ws   *wsclient.Conn // nil for raw TCP
}

// open dials and, for WebSocket, completes the opening handshake. The
// session's deadline is set to now+timeout; callers move it as they go.
func (c *client) open(ctx context.Context) (*session, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	if c.raw {
		return &session{conn: conn}, nil
	}
	wc, err := c.handshake(conn, "binary")
	if err != nil {
		return nil, err
	}
	return &session{conn: conn, ws: wc}, nil
}

// dial connects (and starts TLS for wss://), with the session's deadline
// set to now+timeout.
func (c *client) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: c.timeout}
	if c.src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(c.src)}
	}
	if c.src != "" || c.rcvBuf > 0 {
		// Set before connect(): the receive buffer fixes the window scale.
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				if c.src != "" {
					// Pick the source port at connect(), not bind(): it then
					// only has to be unique for this destination.
					serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
				}
				if serr == nil && c.rcvBuf > 0 {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, c.rcvBuf)
				}
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, &phaseError{"dial", err}
	}
	_ = conn.SetDeadline(time.Now().Add(c.timeout))
	if c.tls {
		if conn, err = startTLS(ctx, conn); err != nil {
			return nil, &phaseError{"tls", err}
		}
	}
	return conn, nil
}

// handshake runs the WebSocket handshake on conn offering protocol; conn is
// closed on failure.
func (c *client) handshake(conn net.Conn, protocol string) (*wsclient.Conn, error) {
	req := wsclient.Request{Path: c.url.RequestURI(), Host: c.url.Host, Protocol: protocol}
	wc, err := wsclient.Handshake(conn, req, wsclient.Options{ReadBuffer: c.bufSize, DropResponse: true})
	if err != nil {
		conn.Close()
		return nil, &phaseError{"handshake", err}
	}
	return wc, nil
}

// phaseError says at which step a session failed, for the error tallies.
type phaseError struct {
	phase string
	err   error
}

func (e *phaseError) Error() string { return e.phase + ": " + e.err.Error() }
func (e *phaseError) Unwrap() error { return e.err }

// frame returns the wire bytes that deliver payload: for WebSocket a masked
// binary frame built once (the masking is done here, not per send, which
// keeps the client's per-byte cost at zero), for raw TCP the payload itself.
// Write the result with send as often as needed.
func (s *session) frame(payload []byte) []byte {
	if s.ws == nil {
		return payload
	}
	return s.ws.Encode(wsclient.Frame{Fin: true, Op: ws.OpBinary, Payload: payload})
}

// send writes prebuilt wire bytes from frame.
func (s *session) send(wire []byte) error {
	_, err := s.conn.Write(wire)
	return err
}

// readFull reads exactly len(p) payload bytes, across frame boundaries: a
// proxy may split or merge what the target wrote. A close frame is io.EOF.
func (s *session) readFull(p []byte) error {
	if s.ws == nil {
		_, err := io.ReadFull(s.conn, p)
		return err
	}
	_, err := io.ReadFull(s.ws, p)
	var ce *wsclient.CloseError
	if errors.As(err, &ce) {
		return io.EOF
	}
	return err
}

// discard reads and drops n payload bytes; rawBuf is scratch for raw TCP.
func (s *session) discard(n int64, rawBuf []byte) error {
	if s.ws != nil {
		return s.ws.Discard(n)
	}
	for n > 0 {
		chunk := rawBuf
		if int64(len(chunk)) > n {
			chunk = chunk[:n]
		}
		r, err := s.conn.Read(chunk)
		n -= int64(r)
		if err != nil {
			if err == io.EOF && n > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// close says goodbye (a close frame for WebSocket) and closes the socket
// without waiting for the answer: the proxy's side of the close handshake is
// its own business, and waiting would measure our patience, not its speed.
func (s *session) close() {
	if s.ws != nil {
		_ = s.ws.Close()
		return
	}
	s.conn.Close()
}

// roundTrip sends wire and reads back len(want) bytes, checking they match.
func (s *session) roundTrip(wire, want, got []byte) error {
	if err := s.send(wire); err != nil {
		return &phaseError{"send", err}
	}
	if err := s.readFull(got[:len(want)]); err != nil {
		return &phaseError{"recv", err}
	}
	for i := range want {
		if got[i] != want[i] {
			return &phaseError{"recv", errors.New("echo differs from what was sent")}
		}
	}
	return nil
}

// errorTally counts failures by phase, with one example message each.
type errorTally struct {
	Count   map[string]int    `json:"count"`
	Example map[string]string `json:"example"`
}

func (t *errorTally) add(err error) {
	if t.Count == nil {
		t.Count = map[string]int{}
		t.Example = map[string]string{}
	}
	phase := "other"
	var pe *phaseError
	if errors.As(err, &pe) {
		phase = pe.phase
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		phase += "-timeout"
	}
	t.Count[phase]++
	if _, ok := t.Example[phase]; !ok {
		t.Example[phase] = err.Error()
	}
}

func (t *errorTally) merge(o errorTally) {
	for k, v := range o.Count {
		if t.Count == nil {
			t.Count = map[string]int{}
			t.Example = map[string]string{}
		}
		t.Count[k] += v
		if _, ok := t.Example[k]; !ok {
			t.Example[k] = o.Example[k]
		}
	}
}

func (t *errorTally) total() int {
	n := 0
	for _, v := range t.Count {
		n += v
	}
	return n
}
