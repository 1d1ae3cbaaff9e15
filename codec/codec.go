// Package codec owns everything between a client's first HTTP byte and its last
// WebSocket frame, without touching a socket: HTTP request parsing, the HyBi
// (RFC 6455, versions 7, 8 and 13) and Hixie-75/76 handshakes, subprotocol
// choice, the streaming frame decoder and the frame encoders; and, behind a
// load balancer, the client's real address (realaddr.go: PROXY headers,
// X-Forwarded-For and Forwarded from trusted proxies).
//
// The event loop feeds it bytes and writes out what it returns; a fuzzer or a
// table test can drive it the same way. Nothing here blocks, and nothing on the
// per-frame path allocates.
//
// Typical use by a connection owner:
//
//	req, n, err := codec.ParseRequest(buf, codec.MaxHeaderBytes)
//	// n == 0 && err == nil: wait for more bytes.
//	hs, err := codec.Upgrade(req, isTLS)   // write hs.Response, or err.(*codec.HTTPError).Response()
//	dec := codec.NewDecoder(hs.Version, hs.Mode)
//	enc := codec.Encoder{Version: hs.Version, Mode: hs.Mode}
//	n, err = dec.Feed(clientBytes, out)    // payload goes to out.ToTarget, pongs to out.ToClient
//	bufs := enc.Encode(targetBytes, &scratch)
package codec

// Version is the WebSocket protocol family a connection negotiated.
type Version uint8

const (
	HyBi    Version = iota // RFC 6455 and its drafts 7 and 8
	Hixie76                // Sec-WebSocket-Key1/Key2 with an 8-byte challenge
	Hixie75                // no keys at all
)

func (v Version) String() string {
	switch v {
	case Hixie76:
		return "Hixie-76"
	case Hixie75:
		return "Hixie-75"
	}
	return "HyBi"
}

// Mode is how target bytes are carried inside WebSocket messages.
type Mode uint8

const (
	Binary Mode = iota // binary frames: subprotocol "binary", or none offered
	Base64             // base64 in text frames: subprotocol "base64", and every Hixie connection
)

func (m Mode) String() string {
	if m == Base64 {
		return "base64"
	}
	return "binary"
}

// MaxHeaderBytes caps an HTTP request head (request line plus headers).
// Larger requests are answered 431.
const MaxHeaderBytes = 16 << 10

// MaxUnaliasedPayload is the longest chunk the decoder hands to
// Output.ToTarget from its own storage (one decoded base64 quantum that
// straddled two reads) rather than from the input.
const MaxUnaliasedPayload = 3

// Output receives what the decoder produces. The slices are valid only during
// the call: an implementation copies them (gnet's Write does).
type Output interface {
	// ToTarget gets payload bytes for the target, in order. A p longer
	// than MaxUnaliasedPayload lies inside the in given to Feed and stays
	// valid until the caller reuses in, so a caller may gather several
	// before writing them; a shorter one may live in the decoder and is
	// valid only during the call.
	ToTarget(p []byte)
	// ToClient gets complete frames for the client (pongs).
	ToClient(p []byte)
}
