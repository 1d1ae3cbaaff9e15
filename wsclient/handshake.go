package wsclient

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Request is a HyBi upgrade request. The zero value, filled by Fill, is a
// plain version 13 request for "/" on host localhost.
type Request struct {
	Path      string   // "/" when empty
	Host      string   // "localhost" when empty
	Key       string   // Sec-WebSocket-Key; random when empty
	Version   string   // "13" when empty
	NoVersion bool     // omit Sec-WebSocket-Version
	NoKey     bool     // omit Sec-WebSocket-Key
	Protocol  string   // Sec-WebSocket-Protocol value; omitted when empty
	Extra     []string // further header lines, without CRLF
}

// Fill sets the defaults of the empty fields, drawing a random key.
func (r *Request) Fill() {
	if r.Path == "" {
		r.Path = "/"
	}
	if r.Host == "" {
		r.Host = "localhost"
	}
	if r.Key == "" && !r.NoKey {
		r.Key = RandomKey()
	}
	if r.Version == "" {
		r.Version = "13"
	}
}

// String is the request head as sent, blank line included.
func (r Request) String() string {
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

// RandomKey is a fresh Sec-WebSocket-Key.
func RandomKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

// AcceptKey is the Sec-WebSocket-Accept answer to key (RFC 6455 4.2.2).
func AcceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// defaultReadBuffer is the read buffer of a Conn when Options do not say.
const defaultReadBuffer = 64 << 10

// Handshake sends req (after Fill) on nc, followed by o.First in the same
// write, and checks the 101 reply. o.Timeout, o.IOTimeout and o.ReadBuffer
// apply; the other options are Dial's. Without either timeout nc's deadlines
// are left as the caller set them. On error nc is left open.
func Handshake(nc net.Conn, req Request, o Options) (*Conn, error) {
	req.Fill()
	c := newConn(nc, o)
	defer handshakeDeadline(nc, o)()
	if err := c.WriteRaw(append([]byte(req.String()), o.First...)); err != nil {
		return nil, fmt.Errorf("write handshake: %w", err)
	}
	resp, err := c.readResponse()
	if err != nil {
		return nil, fmt.Errorf("read handshake reply: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1000))
		return nil, fmt.Errorf("handshake: status %d %q, want 101", resp.StatusCode, body)
	}
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), AcceptKey(req.Key); got != want {
		return nil, fmt.Errorf("wrong Sec-WebSocket-Accept %q, want %q", got, want)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		return nil, fmt.Errorf("handshake reply has Upgrade: %q", resp.Header.Get("Upgrade"))
	}
	if !strings.EqualFold(resp.Header.Get("Connection"), "upgrade") {
		return nil, fmt.Errorf("handshake reply has Connection: %q", resp.Header.Get("Connection"))
	}
	c.setResponse(resp, o)
	return c, nil
}

// setResponse takes what the Conn needs from the handshake reply.
func (c *Conn) setResponse(resp *http.Response, o Options) {
	c.proto = resp.Header.Get("Sec-WebSocket-Protocol")
	c.base64 = c.proto == "base64"
	if !o.DropResponse {
		c.resp = resp
	}
}

func (c *Conn) readResponse() (*http.Response, error) {
	c.readDeadline()
	return http.ReadResponse(c.br, nil)
}

// Options are Dial's settings; the zero value dials ws:// with no
// subprotocol and no timeout.
type Options struct {
	Protocol  string        // subprotocol to offer ("binary", "base64"); required back when set
	Extra     []string      // further request header lines
	Timeout   time.Duration // bounds dialing and the handshake as a whole; 0: no bound
	IOTimeout time.Duration // bounds each read and write of the handshake and the Conn; 0: no bound
	TLSConfig *tls.Config   // for wss://; nil: the system roots

	ReadBuffer   int    // size of the Conn's read buffer; 0: 64 KiB
	First        []byte // bytes sent right after the request, in the same write (a first frame, say)
	DropResponse bool   // keep no handshake reply (a load generator holding many sessions saves the memory)
}

// Dial connects to a ws:// or wss:// URL and performs the HyBi handshake.
func Dial(ctx context.Context, rawURL string, o Options) (*Conn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	port := u.Port()
	switch u.Scheme {
	case "ws":
		if port == "" {
			port = "80"
		}
	case "wss":
		if port == "" {
			port = "443"
		}
	default:
		return nil, fmt.Errorf("URL %q: want ws:// or wss://", rawURL)
	}
	d := net.Dialer{Timeout: o.Timeout}
	nc, err := d.DialContext(ctx, "tcp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return nil, err
	}
	if u.Scheme == "wss" {
		cfg := o.TLSConfig
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName = u.Hostname()
		}
		tc := tls.Client(nc, cfg)
		clear := handshakeDeadline(nc, o)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, err
		}
		clear()
		nc = tc
	}
	path := u.RequestURI()
	c, err := Handshake(nc, Request{Path: path, Host: u.Host, Protocol: o.Protocol, Extra: o.Extra}, o)
	if err != nil {
		nc.Close()
		return nil, err
	}
	if o.Protocol != "" && c.Protocol() != o.Protocol {
		nc.Close()
		return nil, fmt.Errorf("asked for subprotocol %q, got %q", o.Protocol, c.Protocol())
	}
	return c, nil
}

// handshakeDeadline sets o.Timeout's deadline on nc and returns what clears
// it again.
func handshakeDeadline(nc net.Conn, o Options) func() {
	if o.Timeout <= 0 {
		return func() {}
	}
	_ = nc.SetDeadline(time.Now().Add(o.Timeout))
	return func() { _ = nc.SetDeadline(time.Time{}) }
}

// newConn wraps nc with a random masking key.
func newConn(nc net.Conn, o Options) *Conn {
	size := o.ReadBuffer
	if size <= 0 {
		size = defaultReadBuffer
	}
	c := &Conn{nc: nc, br: bufio.NewReaderSize(nc, size), timeout: o.IOTimeout}
	_, _ = rand.Read(c.mask[:])
	return c
}

// NewConn is a Conn over nc for a HyBi handshake the caller did itself:
// resp is the server's 101 reply, read through br (which may hold frames
// already). o.IOTimeout applies.
func NewConn(nc net.Conn, br *bufio.Reader, resp *http.Response, o Options) *Conn {
	c := &Conn{nc: nc, br: br, timeout: o.IOTimeout}
	_, _ = rand.Read(c.mask[:])
	c.setResponse(resp, o)
	return c
}
