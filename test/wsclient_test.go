package test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/gowebsockify/websockify/wsclient"
)

// The tests speak WebSocket through wsclient; these are the short names the
// test files use for it.

// ioTimeout bounds every single read or write of the client: a test waiting
// on a proxy that hangs fails instead of hanging.
const ioTimeout = 20 * time.Second

// clientOpts are the wsclient options of every test connection.
var clientOpts = wsclient.Options{IOTimeout: ioTimeout}

// ---- frames ----

// frame is a decoded WebSocket frame.
type frame struct {
	fin     bool
	rsv     byte
	op      ws.OpCode
	masked  bool
	payload []byte
}

func frameOf(f wsclient.Frame) frame {
	return frame{fin: f.Fin, rsv: f.Rsv, op: f.Op, masked: f.Masked, payload: f.Payload}
}

// closeCode returns the code and reason of a close frame (0 if no payload).
func (f frame) closeCode() (uint16, string) {
	return wsclient.Frame{Payload: f.payload}.CloseCode()
}

// encodeFrame builds a client frame. With mask == nil the frame is sent
// unmasked (a protocol violation for a client).
func encodeFrame(fin bool, rsv byte, op ws.OpCode, mask *[4]byte, payload []byte) []byte {
	return wsclient.AppendFrame(nil, wsclient.Frame{Fin: fin, Rsv: rsv, Op: op, Payload: payload}, mask)
}

// masked builds a final, masked frame with a random mask.
func masked(op ws.OpCode, payload []byte) []byte { return wsclient.MaskedFrame(op, payload) }

// maskedFrag builds a masked frame with an explicit FIN bit.
func maskedFrag(fin bool, op ws.OpCode, payload []byte) []byte {
	m := ws.NewMask()
	return encodeFrame(fin, 0, op, &m, payload)
}

func closePayload(code uint16, reason string) []byte { return wsclient.ClosePayload(code, reason) }

// readFrame reads one server frame.
func readFrame(r io.Reader) (frame, error) {
	f, err := wsclient.ReadFrame(r)
	return frameOf(f), err
}

// ---- handshakes ----

// hybiReq describes a HyBi upgrade request.
type hybiReq = wsclient.Request

func acceptKey(key string) string { return wsclient.AcceptKey(key) }

// readResponse reads an HTTP response head from br with the conn's deadline.
func readResponse(conn net.Conn, br *bufio.Reader) (*http.Response, error) {
	_ = conn.SetReadDeadline(time.Now().Add(ioTimeout))
	return http.ReadResponse(br, nil)
}

// wsClient is a test's WebSocket connection; conn, br, resp, base64 and
// hixie are the wsclient.Conn's, kept as fields for the tests' brevity.
type wsClient struct {
	ws     *wsclient.Conn
	conn   net.Conn
	br     *bufio.Reader
	resp   *http.Response
	base64 bool
	hixie  int
}

// wrapWS is the client of a connection whose handshake a test did itself:
// resp is the 101 reply read through br.
func wrapWS(conn net.Conn, br *bufio.Reader, resp *http.Response) *wsClient {
	return newWSClient(wsclient.NewConn(conn, br, resp, clientOpts))
}

func newWSClient(c *wsclient.Conn) *wsClient {
	return &wsClient{ws: c, conn: c.NetConn(), br: c.Reader(), resp: c.Response(), base64: c.Base64(), hixie: c.Hixie()}
}

// mode names the subprotocol to offer.
const (
	modeNone   = ""       // no Sec-WebSocket-Protocol: binary
	modeBinary = "binary" // "binary"
	modeBase64 = "base64" // "base64"
)

// dialWSE connects and performs a HyBi handshake offering mode. extra bytes
// (e.g. a first frame) are sent in the same write as the request.
func dialWSE(p *proxy, mode string, extra []byte) (*wsClient, error) {
	return dialHyBi(p, hybiReq{Protocol: mode}, extra)
}

// dialHyBi connects and performs the handshake req, checking the 101 reply.
func dialHyBi(p *proxy, req hybiReq, extra []byte) (*wsClient, error) {
	conn, err := p.dial()
	if err != nil {
		return nil, err
	}
	c, err := handshakeHyBi(conn, req, extra)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func handshakeHyBi(conn net.Conn, req hybiReq, extra []byte) (*wsClient, error) {
	o := clientOpts
	o.First = extra
	c, err := wsclient.Handshake(conn, req, o)
	if err != nil {
		return nil, err
	}
	return newWSClient(c), nil
}

// dialWS is dialWSE for the test goroutine.
func dialWS(t testing.TB, p *proxy, mode string) *wsClient {
	t.Helper()
	c, err := dialWSE(p, mode, nil)
	if err != nil {
		t.Fatalf("websocket handshake: %v", err)
	}
	t.Cleanup(func() { c.conn.Close() })
	return c
}

func hixie76Key(num uint32, spaces int) string { return wsclient.Hixie76Key(num, spaces) }

func hixie76Answer(key1, key2 string, challenge []byte) [16]byte {
	return wsclient.Hixie76Answer(key1, key2, challenge)
}

// dialHixie connects with a Hixie-75 (version 75) or Hixie-76 handshake.
// For 76, key1/key2/challenge are used when given, else generated.
func dialHixie(p *proxy, version int, key1, key2 string, challenge []byte, extra []byte) (*wsClient, error) {
	conn, err := p.dial()
	if err != nil {
		return nil, err
	}
	c, err := handshakeHixie(conn, version, key1, key2, challenge, extra)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func handshakeHixie(conn net.Conn, version int, key1, key2 string, challenge, extra []byte) (*wsClient, error) {
	o := clientOpts
	o.First = extra
	c, err := wsclient.HandshakeHixie(conn, wsclient.HixieRequest{Version: version, Key1: key1, Key2: key2, Challenge: challenge}, o)
	if err != nil {
		return nil, err
	}
	return newWSClient(c), nil
}

// throttle makes further reads of c take about rate bytes per second,
// keeping what is already buffered.
func (c *wsClient) throttle(rate float64) {
	c.ws.WrapReader(func(r io.Reader) io.Reader { return &throttledReader{r: r, rate: rate} })
	c.br = c.ws.Reader()
}

// ---- sending ----

func (c *wsClient) write(b []byte) error { return c.ws.WriteRaw(b) }

// dataFrame encodes p as one complete data message in the client's mode.
func (c *wsClient) dataFrame(p []byte) []byte { return c.ws.DataFrame(p) }

// send writes p as one message.
func (c *wsClient) send(p []byte) error { return c.ws.Send(p) }

// sendClose sends a close frame with code and reason.
func (c *wsClient) sendClose(code uint16, reason string) error { return c.ws.SendClose(code, reason) }

// ---- receiving ----

// closeErr is returned by the readers when a close frame arrives; code is 0
// when the frame had none.
type closeErr struct {
	code   uint16
	reason string
}

func (e *closeErr) Error() string { return fmt.Sprintf("close frame %d %q", e.code, e.reason) }

// nextFrame reads one frame (HyBi only).
func (c *wsClient) nextFrame() (frame, error) {
	f, err := c.ws.ReadFrame()
	return frameOf(f), err
}

// readMessage reads the next data message and returns its payload decoded
// (base64 mode: the base64 text decoded). Pings are answered with pongs; a
// close frame gives a *closeErr.
func (c *wsClient) readMessage() ([]byte, error) {
	m, err := c.ws.ReadMessage()
	var ce *wsclient.CloseError
	if errors.As(err, &ce) {
		if ce.Code == wsclient.CloseNoStatus {
			return nil, &closeErr{}
		}
		return nil, &closeErr{ce.Code, ce.Reason}
	}
	return m, err
}

// readN reads messages until n payload bytes have arrived.
func (c *wsClient) readN(n int) ([]byte, error) {
	out := make([]byte, 0, n)
	for len(out) < n {
		m, err := c.readMessage()
		if err != nil {
			return out, fmt.Errorf("after %d of %d bytes: %w", len(out), n, err)
		}
		out = append(out, m...)
	}
	if len(out) > n {
		return out, fmt.Errorf("got %d bytes, want %d", len(out), n)
	}
	return out, nil
}

// expectClose reads until a close frame and returns it; data in between is
// returned too.
func (c *wsClient) expectClose() (code uint16, reason string, data []byte, err error) {
	for {
		m, err := c.readMessage()
		var ce *closeErr
		if errors.As(err, &ce) {
			return ce.code, ce.reason, data, nil
		}
		if err != nil {
			return 0, "", data, err
		}
		data = append(data, m...)
	}
}

// expectEOF checks that the server closes the TCP connection (EOF or reset)
// within d, without sending anything more.
func expectEOF(conn net.Conn, r io.Reader, d time.Duration) error {
	_ = conn.SetReadDeadline(time.Now().Add(d))
	var buf [512]byte
	n, err := r.Read(buf[:])
	if n > 0 {
		return fmt.Errorf("got %d more bytes (%q) instead of EOF", n, buf[:n])
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("connection still open after %v", d)
	}
	if err == nil {
		return errors.New("read returned nothing and no error")
	}
	return nil // io.EOF or a reset
}

// echo sends p and reads it back.
func (c *wsClient) echo(p []byte) error {
	if err := c.send(p); err != nil {
		return err
	}
	got, err := c.readN(len(p))
	if err != nil {
		return err
	}
	if !bytes.Equal(got, p) {
		return fmt.Errorf("echo of %d bytes differs", len(p))
	}
	return nil
}

// mustEcho is echo for the test goroutine.
func mustEcho(t testing.TB, c *wsClient, p []byte) {
	t.Helper()
	if err := c.echo(p); err != nil {
		t.Fatalf("echo: %v", err)
	}
}

func randomKey() string { return wsclient.RandomKey() }
