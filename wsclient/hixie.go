package wsclient

import (
	"bytes"
	"crypto/md5"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strconv"
)

// The Hixie drafts (75 and 76) predate RFC 6455; websockify still accepts
// them, so the tests still speak them. Hixie data is always base64 text.

// HixieRequest is a Hixie-75 or -76 upgrade request for
// ws://example.com:6080/websockify from origin http://example.com.
type HixieRequest struct {
	Version int // 75 or 76
	// Key1, Key2 and Challenge are Hixie-76's; made up when Key1 is empty.
	Key1, Key2 string
	Challenge  []byte
}

// Hixie76Key makes a Sec-WebSocket-Key[12] value that encodes num: the
// digits of num*spaces with that many spaces and some letters mixed in.
func Hixie76Key(num uint32, spaces int) string {
	digits := []byte(strconv.FormatUint(uint64(num)*uint64(spaces), 10))
	b := []byte{'x', '%'}
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
	return string(append(b, 'z'))
}

// Hixie76Answer is the 16-byte answer a server owes to key1, key2 and the
// challenge.
func Hixie76Answer(key1, key2 string, challenge []byte) [16]byte {
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
		if spaces == 0 {
			return 0
		}
		return uint32(digits / spaces)
	}
	var buf [16]byte
	binary.BigEndian.PutUint32(buf[0:4], num(key1))
	binary.BigEndian.PutUint32(buf[4:8], num(key2))
	copy(buf[8:], challenge)
	return md5.Sum(buf[:])
}

// HandshakeHixie sends req on nc (o.First right after it) and checks the
// reply: origin, location with the scheme nc speaks, and for 76 the answer.
// On error nc is left open.
func HandshakeHixie(nc net.Conn, req HixieRequest, o Options) (*Conn, error) {
	var b bytes.Buffer
	b.WriteString("GET /websockify HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n" +
		"Host: example.com:6080\r\nOrigin: http://example.com\r\n")
	if req.Version == 76 {
		if req.Key1 == "" {
			req.Key1, req.Key2 = Hixie76Key(3472689, 4), Hixie76Key(912, 7)
			req.Challenge = []byte("Tm[K T2u")
		}
		b.WriteString("Sec-WebSocket-Key1: " + req.Key1 + "\r\nSec-WebSocket-Key2: " + req.Key2 + "\r\n\r\n")
		b.Write(req.Challenge)
	} else {
		b.WriteString("\r\n")
	}
	b.Write(o.First)
	c := newConn(nc, o)
	defer handshakeDeadline(nc, o)()
	if err := c.WriteRaw(b.Bytes()); err != nil {
		return nil, err
	}
	resp, err := c.readResponse()
	if err != nil {
		return nil, fmt.Errorf("read Hixie reply: %w", err)
	}
	if resp.StatusCode != 101 {
		return nil, fmt.Errorf("handshake (Hixie-%d): status %d, want 101", req.Version, resp.StatusCode)
	}
	prefix := ""
	if req.Version == 76 {
		prefix = "Sec-"
	}
	if got := resp.Header.Get(prefix + "WebSocket-Origin"); got != "http://example.com" {
		return nil, fmt.Errorf("%sWebSocket-Origin %q", prefix, got)
	}
	scheme := "ws"
	if _, ok := nc.(*tls.Conn); ok {
		scheme = "wss" // the reply names the scheme the client connected with
	}
	if got := resp.Header.Get(prefix + "WebSocket-Location"); got != scheme+"://example.com:6080/websockify" {
		return nil, fmt.Errorf("%sWebSocket-Location %q", prefix, got)
	}
	if req.Version == 76 {
		var ans [16]byte
		if _, err := io.ReadFull(c.br, ans[:]); err != nil {
			return nil, fmt.Errorf("read Hixie-76 answer: %w", err)
		}
		if want := Hixie76Answer(req.Key1, req.Key2, req.Challenge); ans != want {
			return nil, fmt.Errorf("Hixie-76 answer %q, want %q", ans, want)
		}
	}
	c.setResponse(resp, o)
	c.proto, c.base64, c.hixie = "base64", true, req.Version
	return c, nil
}
