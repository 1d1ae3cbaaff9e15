package codec

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"strings"
)

// Handshake is a completed WebSocket upgrade.
type Handshake struct {
	Version  Version
	Mode     Mode
	Protocol string // the chosen subprotocol, "" when none was offered
	Response []byte // the 101 reply to send to the client
}

// Upgrade answers a WebSocket upgrade request. tls selects wss:// in the
// Hixie Location header. Errors are *HTTPError.
//
// The protocol family follows from the key headers: Sec-WebSocket-Key1 and
// Key2 mean Hixie-76; Sec-WebSocket-Key or Sec-WebSocket-Version mean HyBi;
// no key at all means Hixie-75.
func Upgrade(req *Request, tls bool) (Handshake, error) {
	if !req.IsWebSocket() {
		return Handshake{}, badRequest("Not a WebSocket upgrade request")
	}
	h := req.Header
	_, key1 := h["Sec-Websocket-Key1"]
	_, key2 := h["Sec-Websocket-Key2"]
	_, key := h["Sec-Websocket-Key"]
	_, version := h["Sec-Websocket-Version"]
	switch {
	case key1 && key2:
		return upgradeHixie76(req, tls)
	case key1 || key2:
		return Handshake{}, badRequest("Missing Sec-WebSocket-Key1 or Sec-WebSocket-Key2 header")
	case key || version:
		return upgradeHyBi(req)
	default:
		return upgradeHixie75(req, tls), nil
	}
}

// upgradeHyBi answers RFC 6455 and its drafts 7 and 8, which share the
// handshake and the framing.
func upgradeHyBi(req *Request) (Handshake, error) {
	switch req.Header.Get("Sec-WebSocket-Version") {
	case "7", "8", "13":
	default:
		return Handshake{}, &HTTPError{
			Status: http.StatusBadRequest,
			Reason: "Unsupported WebSocket protocol version",
			Header: "Sec-WebSocket-Version: 13\r\n",
		}
	}
	key := req.Header.Get("Sec-WebSocket-Key")
	if key == "" {
		return Handshake{}, badRequest("Missing Sec-WebSocket-Key header")
	}
	offered := offeredProtocols(req.Header.Values("Sec-WebSocket-Protocol"))
	protocol, mode, ok := chooseProtocol(offered)
	if !ok {
		return Handshake{}, badRequest("Invalid protocol selected")
	}

	accept, ok := acceptKey(key)
	if !ok {
		return Handshake{}, badRequest("Bad Sec-WebSocket-Key header")
	}
	return Handshake{Version: HyBi, Mode: mode, Protocol: protocol, Response: hybiReply(accept, protocol)}, nil
}

// keyGUID is appended to the client's key before hashing (RFC 6455 section 1.3).
const keyGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// acceptLen is the length of a Sec-WebSocket-Accept value: a SHA-1 in base64.
const acceptLen = 28

// acceptKey checks that key is the base64 of 16 bytes (RFC 6455 4.2.1) and
// returns its Sec-WebSocket-Accept value. Pad bits are not checked: the key
// is hashed as sent, never used decoded.
func acceptKey(key string) (accept [acceptLen]byte, ok bool) {
	var nonce [18]byte // 24 characters without padding decode to 18 bytes
	if len(key) != 24 {
		return accept, false
	}
	if n, err := base64.StdEncoding.Decode(nonce[:], []byte(key)); err != nil || n != 16 {
		return accept, false
	}
	var buf [24 + len(keyGUID)]byte
	copy(buf[copy(buf[:], key):], keyGUID)
	sum := sha1.Sum(buf[:])
	base64.StdEncoding.Encode(accept[:], sum[:])
	return accept, true
}

// hybiReply writes the 101 reply, in one allocation.
func hybiReply(accept [acceptLen]byte, protocol string) []byte {
	const (
		head      = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
		protoHead = "Sec-WebSocket-Protocol: "
	)
	n := len(head) + acceptLen + 2 + 2
	if protocol != "" {
		n += len(protoHead) + len(protocol) + 2
	}
	b := make([]byte, 0, n)
	b = append(b, head...)
	b = append(b, accept[:]...)
	b = append(b, "\r\n"...)
	if protocol != "" {
		b = append(b, protoHead...)
		b = append(b, protocol...)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}

// offeredProtocols lists the subprotocols of all Sec-WebSocket-Protocol
// headers, split on commas and trimmed, empty items dropped.
func offeredProtocols(headers []string) []string {
	var list []string
	for _, h := range headers {
		for p := range strings.SplitSeq(h, ",") {
			if p = strings.TrimSpace(p); p != "" {
				list = append(list, p)
			}
		}
	}
	return list
}

// chooseProtocol picks "binary" over "base64", whatever the client's order:
// binary costs nothing to relay. Nothing offered is binary without a
// protocol header; only unknown protocols is a refusal (ok false).
func chooseProtocol(offered []string) (protocol string, mode Mode, ok bool) {
	has := func(p string) bool {
		for _, o := range offered {
			if o == p {
				return true
			}
		}
		return false
	}
	switch {
	case has("binary"):
		return "binary", Binary, true
	case has("base64"):
		return "base64", Base64, true
	case len(offered) == 0:
		return "", Binary, true
	}
	return "", Binary, false
}

// upgradeHixie76 answers draft-hixie-thewebsocketprotocol-76: the 16-byte
// MD5 of the two key numbers and the 8-byte challenge follows the head.
func upgradeHixie76(req *Request, tls bool) (Handshake, error) {
	if len(req.Body) != hixieChallengeLen {
		return Handshake{}, badRequest("Missing Hixie-76 challenge")
	}
	n1, ok1 := hixieKeyNumber(req.Header.Get("Sec-WebSocket-Key1"))
	n2, ok2 := hixieKeyNumber(req.Header.Get("Sec-WebSocket-Key2"))
	if !ok1 || !ok2 {
		return Handshake{}, badRequest("Bad Sec-WebSocket-Key1 or Sec-WebSocket-Key2 header")
	}
	var challenge [16]byte
	binary.BigEndian.PutUint32(challenge[0:4], n1)
	binary.BigEndian.PutUint32(challenge[4:8], n2)
	copy(challenge[8:], req.Body)
	answer := md5.Sum(challenge[:])

	protocol := req.Header.Get("Sec-WebSocket-Protocol")
	resp := hixieReply("HTTP/1.1 101 WebSocket Protocol Handshake", "Sec-", req, tls, protocol)
	resp = append(resp, answer[:]...)
	return Handshake{Version: Hixie76, Mode: Base64, Protocol: protocol, Response: resp}, nil
}

// upgradeHixie75 answers draft-hixie-thewebsocketprotocol-75, which has no
// key to check: it cannot fail.
func upgradeHixie75(req *Request, tls bool) Handshake {
	protocol := req.Header.Get("WebSocket-Protocol")
	resp := hixieReply("HTTP/1.1 101 Web Socket Protocol Handshake", "", req, tls, protocol)
	return Handshake{Version: Hixie75, Mode: Base64, Protocol: protocol, Response: resp}
}

// hixieReply writes the reply head shared by both Hixie drafts; prefix is
// "Sec-" for 76 and empty for 75. The client's protocol, if any, is echoed.
func hixieReply(status, prefix string, req *Request, tls bool, protocol string) []byte {
	scheme := "ws://"
	if tls {
		scheme = "wss://"
	}
	var b bytes.Buffer
	b.WriteString(status + "\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n")
	b.WriteString(prefix + "WebSocket-Origin: " + req.Header.Get("Origin") + "\r\n")
	b.WriteString(prefix + "WebSocket-Location: " + scheme + req.Header.Get("Host") + req.Target + "\r\n")
	if protocol != "" {
		b.WriteString(prefix + "WebSocket-Protocol: " + protocol + "\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// hixieKeyNumber computes a Hixie-76 key's number: its digits read as one
// decimal number, divided by its count of spaces. No digits, no spaces, a
// remainder or a result over 32 bits makes the key invalid.
func hixieKeyNumber(key string) (uint32, bool) {
	var num, spaces uint64
	digits := 0
	for i := 0; i < len(key); i++ {
		switch c := key[i]; {
		case c >= '0' && c <= '9':
			num = num*10 + uint64(c-'0')
			digits++
			if num > 1<<53 { // far past any valid key; keeps the sum from wrapping
				return 0, false
			}
		case c == ' ':
			spaces++
		}
	}
	if digits == 0 || spaces == 0 || num%spaces != 0 || num/spaces > 0xFFFFFFFF {
		return 0, false
	}
	return uint32(num / spaces), true
}
