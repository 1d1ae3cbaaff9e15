package codec

// Real client addresses. Behind a load balancer the socket's peer is the
// balancer, so a session learns its client's address from what the balancer
// adds: a PROXY protocol header before everything else (--proxy-protocol),
// or an X-Forwarded-For or Forwarded (RFC 7239) header on each request. Both
// are believed only from a trusted proxy (--trusted-proxies): anyone else
// could name any address. The address found replaces the session's
// everywhere (Addr, its log lines, Request.RemoteAddr for auth plugins).
//
// A peer on a unix socket (--unix-listen, or an inherited one) has no IP
// address and counts as trusted: only processes the socket file's mode
// lets in can connect, and they are the proxies in front (nginx, haproxy).

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/gowebsockify/websockify/sniff"
)

// origin is where a session's connection comes from, as far as it knows.
type origin struct {
	// conn is the connection's client as logged: the socket's peer, or
	// the client its PROXY header named. Each request starts from it
	// before its own forwarding headers are read.
	conn string
	// trusted says the connection's client (after any PROXY header) is a
	// trusted proxy, so its requests' forwarding headers count.
	trusted bool
	// socketTrusted says the socket's peer is a trusted proxy: only it may
	// send a PROXY header.
	socketTrusted bool
	partial       bool // part of a PROXY header came, not all of it
}

// forwarding says whether real addresses are looked for at all.
func (c *SessionConfig) forwarding() bool {
	return c.ProxyProtocol || len(c.TrustedProxies) > 0
}

// trusts reports whether a is one of the trusted proxies.
func (c *SessionConfig) trusts(a netip.Addr) bool {
	for _, p := range c.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// trustsPeer reports whether a peer address, as logged, is trusted: an IP
// in TrustedProxies, or anything that is no IP (a unix socket's peer).
func (c *SessionConfig) trustsPeer(addr string) bool {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return true
	}
	return c.trusts(a.WithZone("").Unmap())
}

// startOrigin sets up where a new session comes from and, when a PROXY
// header is due, starts there.
func (s *Session) startOrigin() {
	if !s.cfg.forwarding() {
		return
	}
	s.origin.conn = s.addr
	s.origin.socketTrusted = s.cfg.trustsPeer(s.addr)
	s.origin.trusted = s.origin.socketTrusted
	if s.cfg.ProxyProtocol && s.origin.socketTrusted {
		s.phase = ReadingProxyHeader
	}
}

// readProxyHeader reads a trusted peer's PROXY header; whatever follows it
// is sniffed as usual (TLS included: the header comes before it).
func (s *Session) readProxyHeader(in []byte, out Peer) (int, Step) {
	h := sniff.ParseProxyHeader(in)
	switch h.Status {
	case sniff.ProxyIncomplete:
		s.origin.partial = s.origin.partial || len(in) > 0
		return 0, Continue
	case sniff.ProxyMalformed:
		if h.Version == 0 {
			s.logf(out, "%s: no PROXY header from trusted proxy %s (--proxy-protocol), closing", s.addr, s.addr)
		} else {
			s.logf(out, "%s: malformed PROXY v%d header: %s, closing", s.addr, h.Version, h.Reason)
		}
		s.endAs(EndProxyHeader)
		return len(in), s.close()
	}
	s.phase = Sniffing
	s.origin.partial = false
	if !h.Source.IsValid() {
		what := "UNKNOWN"
		if h.Local {
			what = "LOCAL"
		} else if h.Version == 2 {
			what = "no address"
		}
		s.debugf(out, "%s: PROXY v%d header (%s): the connection's own address stands", s.addr, h.Version, what)
		return h.Len, Continue
	}
	client := h.Source.Addr().String()
	s.debugf(out, "%s: PROXY v%d header: client %s via %s", s.addr, h.Version, client, s.addr)
	s.addr = client
	s.origin.conn = client
	s.origin.trusted = s.cfg.trusts(h.Source.Addr())
	return h.Len, Continue
}

// untrustedProxyHeader refuses a PROXY header from a peer that may not send
// one; done says FromClient's answer is n and step (a refusal, or waiting
// for the bytes that tell).
func (s *Session) untrustedProxyHeader(in []byte, out Peer) (n int, step Step, done bool) {
	if !s.cfg.ProxyProtocol || s.origin.socketTrusted || s.tls {
		return 0, Continue, false
	}
	h := sniff.ParseProxyHeader(in)
	switch {
	case h.Version != 0:
		s.logf(out, "%s: PROXY header from untrusted address %s refused (see --trusted-proxies)", s.addr, s.addr)
		s.endAs(EndProxyHeader)
		return len(in), s.close(), true
	case h.Status == sniff.ProxyIncomplete:
		return 0, Continue, true // "PRO" or "\r\n": it may be one
	}
	return 0, Continue, false
}

// proxyHeaderTimedOut closes a session whose PROXY header did not come
// within the first-byte wait; a peer that sent nothing is closed as
// quietly as any silent client.
func (s *Session) proxyHeaderTimedOut(out Peer) Step {
	if s.origin.partial {
		s.logf(out, "%s: PROXY header not complete within %v, closing", s.addr, s.cfg.FirstByte)
		s.endAs(EndProxyHeader)
	} else {
		s.debugf(out, "%s: no data within %v, closing", s.addr, s.cfg.FirstByte)
	}
	return s.close()
}

// proxyHeaderCut logs a peer that closed in the middle of its PROXY header.
func (s *Session) proxyHeaderCut(out Peer) {
	if s.phase == ReadingProxyHeader && s.origin.partial {
		s.logf(out, "%s: connection closed before its PROXY header was complete", s.addr)
		s.endAs(EndProxyHeader)
	}
}

// forwardedFor gives a request its client's address: the connection's, or
// the one a trusted proxy's Forwarded or X-Forwarded-For header names. It
// sets Addr (so log lines, limits and metrics see it) and req.RemoteAddr
// (for auth plugins). Each request of a kept-alive connection is read on
// its own: a balancer may send several clients' requests down one.
func (s *Session) forwardedFor(req *Request, out Peer) {
	if !s.cfg.forwarding() {
		req.RemoteAddr = s.addr
		return
	}
	s.addr = s.origin.conn
	req.RemoteAddr = s.addr
	if !s.origin.trusted {
		return // the headers stay in the request, unbelieved
	}
	chain, header := forwardedChain(req.Header)
	client, ok := s.cfg.clientOf(chain)
	if !ok {
		return
	}
	s.debugf(out, "%s: %s: client %s via %s", s.addr, header, client, s.addr)
	s.addr = client.String()
	req.RemoteAddr = s.addr
}

// forwardedChain lists the addresses a request's forwarding headers name,
// the client's first and the last proxy's last: Forwarded's for= values
// when it has any, else X-Forwarded-For's.
func forwardedChain(h http.Header) (chain []string, header string) {
	for _, v := range h["Forwarded"] {
		chain = appendForwardedFor(chain, v)
	}
	for _, a := range chain {
		if a != "" {
			return chain, "Forwarded"
		}
	}
	chain = chain[:0]
	for _, v := range h["X-Forwarded-For"] {
		for _, a := range strings.Split(v, ",") {
			chain = append(chain, strings.TrimSpace(a))
		}
	}
	return chain, "X-Forwarded-For"
}

// appendForwardedFor appends the for= value of each element of a Forwarded
// header (RFC 7239: elements split by commas, pairs by semicolons, values
// tokens or quoted strings); an element without one appends "", which
// names nobody.
func appendForwardedFor(chain []string, v string) []string {
	var (
		forValue string
		pair     strings.Builder
		quoted   bool
		escaped  bool
	)
	endPair := func() {
		name, value, ok := strings.Cut(pair.String(), "=")
		if ok && strings.EqualFold(name, "for") {
			forValue = value
		}
		pair.Reset()
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case escaped:
			escaped = false
			pair.WriteByte(c)
		case quoted && c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
		case quoted:
			pair.WriteByte(c)
		case c == ';':
			endPair()
		case c == ',':
			endPair()
			chain = append(chain, forValue)
			forValue = ""
		case c == ' ' || c == '\t':
		default:
			pair.WriteByte(c)
		}
	}
	endPair()
	return append(chain, forValue)
}

// clientOf walks a forwarding chain from its right end, the entry the
// trusted proxy next to us wrote, past the trusted proxies, to the first
// address that is not one: the client. When every address is trusted the
// left-most is the client. An entry that is no address ("unknown", an
// obfuscated "_name", garbage) stops the walk: whatever lies to its left
// came through a hop that did not vouch for it.
func (c *SessionConfig) clientOf(chain []string) (netip.Addr, bool) {
	var client netip.Addr
	for i := len(chain) - 1; i >= 0; i-- {
		a, ok := parseNode(chain[i])
		if !ok {
			break
		}
		client = a
		if !c.trusts(a) {
			break
		}
	}
	return client, client.IsValid()
}

// parseNode reads an address from a forwarding header: "192.0.2.7",
// "192.0.2.7:4711", "2001:db8::7", "[2001:db8::7]" or "[2001:db8::7]:4711"
// (the port, even an obfuscated one, is dropped).
func parseNode(s string) (netip.Addr, bool) {
	host := s
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 || (end+1 < len(s) && s[end+1] != ':') {
			return netip.Addr{}, false
		}
		host = s[1:end]
	case strings.Count(s, ":") == 1: // IPv4 and a port
		host = s[:strings.IndexByte(s, ':')]
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}
