package test

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// ioTimeout bounds every single read or write of the client: a test waiting
// on a proxy that hangs fails instead of hanging.
const ioTimeout = 20 * time.Second

// ---- frames ----

// frame is a decoded WebSocket frame.
type frame struct {
	fin     bool
	rsv     byte
	op      ws.OpCode
	masked  bool
	payload []byte
}

// closeCode returns the code and reason of a close frame (0 if no payload).
func (f frame) closeCode() (uint16, string) {
	if len(f.payload) < 2 {
		return 0, ""
	}
	return binary.BigEndian.Uint16(f.payload), string(f.payload[2:])
}

// encodeFrame builds a client frame. With mask == nil the frame is sent
// unmasked (a protocol violation for a client). The payload is not modified.
func encodeFrame(fin bool, rsv byte, op ws.OpCode, mask *[4]byte, payload []byte) []byte {
	b0 := byte(op) & 0x0F
	if fin {
		b0 |= 0x80
	}
	b0 |= (rsv & 7) << 4
	n := len(payload)
	var hdr []byte
	switch {
	case n <= 125:
		hdr = []byte{b0, byte(n)}
	case n <= 0xFFFF:
		hdr = []byte{b0, 126, 0, 0}
		binary.BigEndian.PutUint16(hdr[2:], uint16(n))
	default:
		hdr = make([]byte, 10)
		hdr[0], hdr[1] = b0, 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(n))
	}
	out := make([]byte, 0, len(hdr)+4+n)
	out = append(out, hdr...)
	if mask != nil {
		out[1] |= 0x80
		out = append(out, mask[:]...)
		start := len(out)
		out = append(out, payload...)
		ws.Cipher(out[start:], *mask, 0)
	} else {
		out = append(out, payload...)
	}
	return out
}

// masked builds a final, masked frame with a random mask.
func masked(op ws.OpCode, payload []byte) []byte {
	m := ws.NewMask()
	return encodeFrame(true, 0, op, &m, payload)
}

// maskedFrag builds a masked frame with an explicit FIN bit.
func maskedFrag(fin bool, op ws.OpCode, payload []byte) []byte {
	m := ws.NewMask()
	return encodeFrame(fin, 0, op, &m, payload)
}

// closePayload builds a close frame's payload.
func closePayload(code uint16, reason string) []byte {
	p := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(p, code)
	return append(p, reason...)
}

// readFrame reads one server frame.
func readFrame(r io.Reader) (frame, error) {
	var h [14]byte
	if _, err := io.ReadFull(r, h[:2]); err != nil {
		return frame{}, err
	}
	f := frame{
		fin:    h[0]&0x80 != 0,
		rsv:    (h[0] >> 4) & 7,
		op:     ws.OpCode(h[0] & 0x0F),
		masked: h[1]&0x80 != 0,
	}
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		if _, err := io.ReadFull(r, h[2:4]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		if _, err := io.ReadFull(r, h[2:10]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(h[2:10])
	}
	var mask [4]byte
	if f.masked {
		if _, err := io.ReadFull(r, mask[:]); err != nil {
			return f, err
		}
	}
	if n > 1<<30 {
		return f, fmt.Errorf("server frame of %d bytes", n)
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(r, f.payload); err != nil {
		return f, err
	}
	if f.masked {
		ws.Cipher(f.payload, mask, 0)
	}
	return f, nil
}

// ---- handshake requests ----

// hybiReq describes a HyBi upgrade request.
type hybiReq struct {
	Path      string   // "/" when empty
	Host      string   // "localhost" when empty
	Key       string   // random when empty
	Version   string   // "13" when empty
	NoVersion bool     // omit Sec-WebSocket-Version
	NoKey     bool     // omit Sec-WebSocket-Key
	Protocol  string   // Sec-WebSocket-Protocol value; omitted when empty
	Extra     []string // extra header lines, without CRLF
}

func randomKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

// acceptKey computes Sec-WebSocket-Accept for key (RFC 6455 section 4.2.2).
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

func (r *hybiReq) fill() {
	if r.Path == "" {
		r.Path = "/"
	}
	if r.Host == "" {
		r.Host = "localhost"
	}
	if r.Key == "" && !r.NoKey {
		r.Key = randomKey()
	}
	if r.Version == "" {
		r.Version = "13"
	}
}

func (r hybiReq) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", r.Path, r.Host)
	if !r.NoKey {
		fmt.Fprintf(&b, "Sec-WebSocket-Key: %s\r\n", r.Key)
	}
	if !r.NoVersion {
		fmt.Fprintf(&b, "Sec-WebSocket-Version: %s\r\n", r.Version)
	}
	if r.Protocol != "" {
		fmt.Fprintf(&b, "Sec-WebSocket-Protocol: %s\r\n", r.Protocol)
	}
	for _, h := range r.Extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// ---- the client ----

// wsClient is a raw WebSocket client connection.
type wsClient struct {
	conn   net.Conn
	br     *bufio.Reader
	resp   *http.Response
	base64 bool // base64 subprotocol (always for Hixie)
	hixie  int  // 0 for HyBi, else 75 or 76
}

// mode names the subprotocol to offer.
const (
	modeNone   = ""       // no Sec-WebSocket-Protocol: binary
	modeBinary = "binary" // "binary"
	modeBase64 = "base64" // "base64"
)

// readResponse reads an HTTP response head from br with the conn's deadline.
func readResponse(conn net.Conn, br *bufio.Reader) (*http.Response, error) {
	_ = conn.SetReadDeadline(time.Now().Add(ioTimeout))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// dialWSE connects and performs a HyBi handshake offering mode. extra bytes
// (e.g. a first frame) are sent in the same write as the request.
func dialWSE(p *proxy, mode string, extra []byte) (*wsClient, error) {
	req := hybiReq{Protocol: mode}
	req.fill()
	return dialHyBi(p, req, extra)
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
	req.fill()
	_ = conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := conn.Write(append([]byte(req.String()), extra...)); err != nil {
		return nil, fmt.Errorf("write handshake: %w", err)
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	resp, err := readResponse(conn, br)
	if err != nil {
		return nil, fmt.Errorf("read handshake reply: %w", err)
	}
	if resp.StatusCode != 101 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1000))
		return nil, fmt.Errorf("handshake: status %d %q, want 101", resp.StatusCode, body)
	}
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), acceptKey(req.Key); got != want {
		return nil, fmt.Errorf("Sec-WebSocket-Accept %q, want %q", got, want)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		return nil, fmt.Errorf("Upgrade header %q", resp.Header.Get("Upgrade"))
	}
	if !strings.EqualFold(resp.Header.Get("Connection"), "upgrade") {
		return nil, fmt.Errorf("Connection header %q", resp.Header.Get("Connection"))
	}
	c := &wsClient{conn: conn, br: br, resp: resp}
	c.base64 = resp.Header.Get("Sec-WebSocket-Protocol") == "base64"
	return c, nil
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

// ---- Hixie ----

// hixie76Key makes a Sec-WebSocket-Key[12] value encoding num: num*spaces
// as digits with spaces and letters mixed in.
func hixie76Key(num uint32, spaces int) string {
	digits := []byte(strconv.FormatUint(uint64(num)*uint64(spaces), 10))
	var b []byte
	b = append(b, 'x', '%')
	for i, d := range digits {
		b = append(b, d)
		if i < spaces {
			b = append(b, ' ')
		}
		if i%3 == 1 {
			b = append(b, 'Q')
		}
	}
	for i := len(digits); i < spaces; i++ {
		b = append(b, ' ')
	}
	b = append(b, 'z')
	return string(b)
}

// hixie76Answer computes the 16-byte answer to key1, key2 and challenge.
func hixie76Answer(key1, key2 string, challenge []byte) [16]byte {
	num := func(k string) uint32 {
		var digits, spaces uint64
		for _, c := range k {
			switch {
			case c >= '0' && c <= '9':
				digits = digits*10 + uint64(c-'0')
			case c == ' ':
				spaces++
			}
		}
		return uint32(digits / spaces)
	}
	var buf [16]byte
	binary.BigEndian.PutUint32(buf[0:4], num(key1))
	binary.BigEndian.PutUint32(buf[4:8], num(key2))
	copy(buf[8:], challenge)
	return md5.Sum(buf[:])
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
	var b bytes.Buffer
	b.WriteString("GET /websockify HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n" +
		"Host: example.com:6080\r\nOrigin: http://example.com\r\n")
	if version == 76 {
		if key1 == "" {
			key1, key2 = hixie76Key(3472689, 4), hixie76Key(912, 7)
			challenge = []byte("Tm[K T2u")
		}
		b.WriteString("Sec-WebSocket-Key1: " + key1 + "\r\nSec-WebSocket-Key2: " + key2 + "\r\n\r\n")
		b.Write(challenge)
	} else {
		b.WriteString("\r\n")
	}
	b.Write(extra)
	_ = conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := conn.Write(b.Bytes()); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	resp, err := readResponse(conn, br)
	if err != nil {
		return nil, fmt.Errorf("read Hixie reply: %w", err)
	}
	if resp.StatusCode != 101 {
		return nil, fmt.Errorf("Hixie-%d handshake: status %d, want 101", version, resp.StatusCode)
	}
	prefix := ""
	if version == 76 {
		prefix = "Sec-"
	}
	if got := resp.Header.Get(prefix + "WebSocket-Origin"); got != "http://example.com" {
		return nil, fmt.Errorf("%sWebSocket-Origin %q", prefix, got)
	}
	scheme := "ws"
	if _, ok := conn.(*tls.Conn); ok {
		scheme = "wss" // the reply names the scheme the client connected with
	}
	if got := resp.Header.Get(prefix + "WebSocket-Location"); got != scheme+"://example.com:6080/websockify" {
		return nil, fmt.Errorf("%sWebSocket-Location %q", prefix, got)
	}
	if version == 76 {
		var ans [16]byte
		if _, err := io.ReadFull(br, ans[:]); err != nil {
			return nil, fmt.Errorf("read Hixie-76 answer: %w", err)
		}
		if want := hixie76Answer(key1, key2, challenge); ans != want {
			return nil, fmt.Errorf("Hixie-76 answer %q, want %q", ans, want)
		}
	}
	return &wsClient{conn: conn, br: br, resp: resp, base64: true, hixie: version}, nil
}

// throttle makes further reads of c take about rate bytes per second,
// keeping what is already buffered.
func (c *wsClient) throttle(rate float64) {
	pending, _ := c.br.Peek(c.br.Buffered())
	pre := bytes.NewReader(append([]byte(nil), pending...))
	c.br = bufio.NewReaderSize(io.MultiReader(pre, &throttledReader{r: c.conn, rate: rate}), 64<<10)
}

// ---- sending ----

func (c *wsClient) write(b []byte) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, err := c.conn.Write(b)
	return err
}

// dataFrame encodes p as one complete data message in the client's mode.
func (c *wsClient) dataFrame(p []byte) []byte {
	if c.hixie != 0 {
		s := base64.StdEncoding.EncodeToString(p)
		return append(append([]byte{0x00}, s...), 0xFF)
	}
	if c.base64 {
		return masked(ws.OpText, []byte(base64.StdEncoding.EncodeToString(p)))
	}
	return masked(ws.OpBinary, p)
}

// send writes p as one message.
func (c *wsClient) send(p []byte) error { return c.write(c.dataFrame(p)) }

// sendClose sends a close frame with code and reason.
func (c *wsClient) sendClose(code uint16, reason string) error {
	if c.hixie != 0 {
		return c.write([]byte{0xFF, 0x00})
	}
	return c.write(masked(ws.OpClose, closePayload(code, reason)))
}

// ---- receiving ----

// closeErr is returned by the readers when a close frame arrives.
type closeErr struct {
	code   uint16
	reason string
}

func (e *closeErr) Error() string { return fmt.Sprintf("close frame %d %q", e.code, e.reason) }

// nextFrame reads one frame (HyBi only).
func (c *wsClient) nextFrame() (frame, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	f, err := readFrame(c.br)
	if err != nil {
		return f, err
	}
	if f.masked {
		return f, errors.New("server frame is masked")
	}
	if f.rsv != 0 {
		return f, errors.New("server frame has RSV bits set")
	}
	return f, nil
}

// readMessage reads the next data message and returns its payload decoded
// (base64 mode: the base64 text decoded). Pings are answered with pongs
// when pong is set and otherwise returned as an error-free skip; a close
// frame gives a *closeErr.
func (c *wsClient) readMessage() ([]byte, error) {
	if c.hixie != 0 {
		return c.readHixieMessage()
	}
	var msg []byte
	started := false
	for {
		f, err := c.nextFrame()
		if err != nil {
			return nil, err
		}
		switch f.op {
		case ws.OpPing:
			if err := c.write(masked(ws.OpPong, f.payload)); err != nil {
				return nil, err
			}
			continue
		case ws.OpPong:
			continue
		case ws.OpClose:
			code, reason := f.closeCode()
			return nil, &closeErr{code, reason}
		case ws.OpContinuation:
			if !started {
				return nil, errors.New("continuation frame without a message")
			}
		case ws.OpBinary:
			if started {
				return nil, errors.New("new message inside a fragmented one")
			}
			if c.base64 {
				return nil, errors.New("binary frame in base64 mode")
			}
			started = true
		case ws.OpText:
			if started {
				return nil, errors.New("new message inside a fragmented one")
			}
			if !c.base64 {
				return nil, errors.New("text frame in binary mode")
			}
			started = true
		default:
			return nil, fmt.Errorf("unexpected opcode %v", f.op)
		}
		msg = append(msg, f.payload...)
		if f.fin {
			break
		}
	}
	if c.base64 {
		return base64.StdEncoding.DecodeString(string(msg))
	}
	return msg, nil
}

func (c *wsClient) readHixieMessage() ([]byte, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	t, err := c.br.ReadByte()
	if err != nil {
		return nil, err
	}
	switch t {
	case 0x00:
		text, err := c.br.ReadBytes(0xFF)
		if err != nil {
			return nil, err
		}
		return base64.StdEncoding.DecodeString(string(text[:len(text)-1]))
	case 0xFF:
		b, err := c.br.ReadByte()
		if err != nil {
			return nil, err
		}
		if b != 0x00 {
			return nil, fmt.Errorf("Hixie frame 0xFF 0x%02x", b)
		}
		return nil, &closeErr{}
	}
	return nil, fmt.Errorf("Hixie frame type 0x%02x", t)
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
