package codec

// End is how a session ended: for a session that upgraded, what ended it;
// for one that did not, why its handshake failed. The machine records it as
// it closes (the first reason wins), for the operator's counters (package
// metrics); it changes nothing of what the session does.
type End uint8

const (
	// EndNone: not over, or over without anything failing (a web
	// response sent, a Flash policy answered, an idle keep-alive
	// connection closed).
	EndNone End = iota

	// Before an upgrade: why the handshake failed.
	EndBadRequest         // the request head does not parse (400)
	EndNotUpgrade         // not a WebSocket upgrade, and no --web (405)
	EndBadUpgrade         // an upgrade the handshake refuses (version, key)
	EndNotTLS             // --ssl-only, and the client did not start with TLS
	EndNoCert             // a TLS client, and no certificate loaded
	EndTLSFailed          // the TLS handshake failed or timed out
	EndFirstByteTimeout   // nothing came within the first-byte wait
	EndRequestHeadTimeout // the request head did not complete in time
	EndTokenMissing       // --token-plugin, and the request carries no token
	EndTokenNotFound      // the token names no target (or was refused)
	EndLookupFailed       // the token's lookup failed (502)
	EndLookupTimeout      // the token's lookup timed out (504)
	EndAuthRefused        // the auth plugin refused the request
	EndProxyHeader        // --proxy-protocol: a PROXY header missing, malformed, cut short or untrusted
	EndLimited            // refused by --max-sessions, --max-sessions-per-ip or --max-handshakes-per-ip
	EndHeadTooLarge       // the request head is over --max-request-head (431)

	// Either side of the upgrade.
	EndClientGone // the client disconnected (after an upgrade: without a close frame)
	EndShutdown   // the proxy stopped

	// After an upgrade: what ended the session.
	EndClientClosed      // the client sent a close frame
	EndTargetClosed      // the target closed its connection (or failed)
	EndTargetUnreachable // the target could not be reached (1011)
	EndProtocolError     // the client broke the protocol (a bad frame)
	EndMessageTooBig     // a client frame over --max-frame-size (1009)

	NumEnds // how many End values there are
)

var endNames = [NumEnds]string{
	"none", "bad_request", "not_upgrade", "bad_upgrade", "not_tls", "no_tls_cert", "tls_failed",
	"first_byte_timeout", "request_head_timeout", "token_missing", "token_not_found",
	"lookup_failed", "lookup_timeout", "auth_refused", "proxy_header", "limited", "head_too_large",
	"client_gone", "shutdown",
	"client_closed", "target_closed", "target_unreachable", "protocol_error", "message_too_big",
}

// String is the End's name as a metric label: lower case, underscores.
func (e End) String() string {
	if e < NumEnds {
		return endNames[e]
	}
	return "unknown"
}

// End reports how the session ended (EndNone while it has not).
func (s *Session) End() End { return s.end }

// TLS reports whether the client's bytes come through TLS (wss://).
func (s *Session) TLS() bool { return s.tls }

// endAs records why the session closes, unless it closed already: the
// first reason is the one that counts.
func (s *Session) endAs(e End) {
	if s.phase != Closed && s.end == EndNone {
		s.end = e
	}
}
