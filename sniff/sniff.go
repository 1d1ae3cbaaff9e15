// Package sniff classifies a connection from its first bytes: a TLS hello, a
// Flash socket-policy request, or (anything else) HTTP; and it reads the
// PROXY protocol header a load balancer may put before them
// (proxyheader.go). Both are pure functions of the bytes seen so far and
// never touch a socket.
package sniff

import "bytes"

// Kind is what a connection turned out to be.
type Kind uint8

const (
	NeedMore    Kind = iota // too few bytes to tell yet
	TLS                     // first byte 0x16 (TLS record) or 0x80 (SSLv2-style hello)
	FlashPolicy             // "<policy-file-request/>\x00"
	HTTP                    // everything else
)

func (k Kind) String() string {
	switch k {
	case TLS:
		return "TLS"
	case FlashPolicy:
		return "Flash policy"
	case HTTP:
		return "HTTP"
	}
	return "need more"
}

// PolicyRequest is what Flash sends before opening a socket.
const PolicyRequest = "<policy-file-request/>\x00"

// PolicyResponse allows every domain on every port, as the original did.
const PolicyResponse = `<cross-domain-policy><allow-access-from domain="*" to-ports="*" /></cross-domain-policy>` + "\n\x00"

// Classify looks at the first bytes a client sent.
func Classify(first []byte) Kind {
	if len(first) == 0 {
		return NeedMore
	}
	switch first[0] {
	case 0x16, 0x80:
		return TLS
	case '<':
		n := min(len(first), len(PolicyRequest))
		if !bytes.Equal(first[:n], []byte(PolicyRequest[:n])) {
			return HTTP // garbage; the HTTP parser will refuse it
		}
		if n < len(PolicyRequest) {
			return NeedMore
		}
		return FlashPolicy
	}
	return HTTP
}
