package sniff

// The PROXY protocol (HAProxy's, versions 1 and 2) puts one header in front
// of a connection a load balancer opens to its backend, naming the client
// the balancer accepted. ParseProxyHeader reads it from the first bytes, as
// Classify reads the rest: a pure function of the bytes seen so far.

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strconv"
)

// ProxyStatus is how far a PROXY header has come.
type ProxyStatus uint8

const (
	ProxyIncomplete ProxyStatus = iota // not enough bytes to tell yet
	ProxyMalformed                     // not a valid header, or no header at all (Version 0)
	ProxyDone                          // a whole header, Len bytes long
)

func (s ProxyStatus) String() string {
	switch s {
	case ProxyMalformed:
		return "malformed"
	case ProxyDone:
		return "done"
	}
	return "incomplete"
}

// ProxyHeader is what ParseProxyHeader found.
type ProxyHeader struct {
	Status ProxyStatus
	// Version is 1 (text) or 2 (binary) once the bytes start with that
	// version's signature; 0 while they do not (yet). Malformed with
	// Version 0 means the connection does not start with a header at all.
	Version int
	Len     int // bytes the header takes (Done)
	// Source and Dest are the client's and the balancer's addresses, IPv4
	// ones unmapped; both invalid when the header names none (v1 UNKNOWN,
	// v2 LOCAL, v2 UNSPEC and UNIX families): the socket's peer stands.
	Source, Dest netip.AddrPort
	// Local marks a v2 LOCAL header: the balancer's own connection, such as
	// a health check, not one it relays.
	Local  bool
	Reason string // why Malformed, for the log
}

// The signatures each version starts with.
const (
	proxyV1Signature = "PROXY "
	proxyV2Signature = "\r\n\r\n\x00\r\nQUIT\n"
)

// MaxProxyV1Len is the longest v1 header the specification allows, CRLF
// included ("PROXY TCP6" with two full IPv6 addresses and ports).
const MaxProxyV1Len = 107

// MaxProxyV2Len bounds a v2 header: 16 fixed bytes, the addresses and
// TLVs. The format allows 64 KiB of TLVs; balancers send a few hundred
// bytes at most, and a session holds no more than 64 KiB unread, so a
// longer header is refused rather than waited for.
const MaxProxyV2Len = 16 + 4096

// ParseProxyHeader reads a PROXY header (v1 or v2) from the start of b.
func ParseProxyHeader(b []byte) ProxyHeader {
	switch {
	case hasPrefixOrIsPrefix(b, proxyV1Signature):
		if len(b) < len(proxyV1Signature) {
			return ProxyHeader{Status: ProxyIncomplete}
		}
		return parseProxyV1(b)
	case hasPrefixOrIsPrefix(b, proxyV2Signature):
		if len(b) < len(proxyV2Signature) {
			return ProxyHeader{Status: ProxyIncomplete}
		}
		return parseProxyV2(b)
	}
	return ProxyHeader{Status: ProxyMalformed, Reason: "no PROXY header"}
}

// hasPrefixOrIsPrefix reports whether b and sig agree as far as both go.
func hasPrefixOrIsPrefix(b []byte, sig string) bool {
	n := min(len(b), len(sig))
	return string(b[:n]) == sig[:n]
}

func malformed(version int, reason string) ProxyHeader {
	return ProxyHeader{Status: ProxyMalformed, Version: version, Reason: reason}
}

// parseProxyV1 reads "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" or
// "PROXY UNKNOWN ...\r\n", single spaces, at most MaxProxyV1Len bytes.
func parseProxyV1(b []byte) ProxyHeader {
	line := b[:min(len(b), MaxProxyV1Len)]
	end := -1
	for i, c := range line {
		if c == '\r' {
			if i+1 < len(line) && line[i+1] != '\n' {
				return malformed(1, "CR without LF")
			}
			end = i
			break
		}
		if c < ' ' || c > '~' {
			return malformed(1, "a byte that is not printable ASCII")
		}
	}
	if end < 0 || end+1 >= len(line) {
		if len(line) == MaxProxyV1Len {
			return malformed(1, "no CRLF within 107 bytes")
		}
		return ProxyHeader{Status: ProxyIncomplete, Version: 1}
	}
	h := ProxyHeader{Status: ProxyDone, Version: 1, Len: end + 2}
	fields := bytes.Split(line[len(proxyV1Signature):end], []byte(" "))
	switch string(fields[0]) {
	case "UNKNOWN":
		return h // whatever follows is to be ignored
	case "TCP4", "TCP6":
	default:
		return malformed(1, "unknown protocol "+strconv.Quote(string(fields[0])))
	}
	if len(fields) != 5 {
		return malformed(1, "want 5 fields after PROXY, got "+strconv.Itoa(len(fields)))
	}
	v6 := string(fields[0]) == "TCP6"
	src, ok1 := parseV1Addr(fields[1], v6)
	dst, ok2 := parseV1Addr(fields[2], v6)
	if !ok1 || !ok2 {
		return malformed(1, "bad "+string(fields[0])+" address")
	}
	sport, ok1 := parseV1Port(fields[3])
	dport, ok2 := parseV1Port(fields[4])
	if !ok1 || !ok2 {
		return malformed(1, "bad port")
	}
	h.Source = netip.AddrPortFrom(src.Unmap(), sport)
	h.Dest = netip.AddrPortFrom(dst.Unmap(), dport)
	return h
}

func parseV1Addr(f []byte, v6 bool) (netip.Addr, bool) {
	a, err := netip.ParseAddr(string(f))
	if err != nil || a.Zone() != "" || a.Is4() == v6 {
		return netip.Addr{}, false
	}
	return a, true
}

// parseV1Port reads a decimal port with no sign and no leading zero.
func parseV1Port(f []byte) (uint16, bool) {
	if len(f) == 0 || len(f) > 5 || (f[0] == '0' && len(f) > 1) {
		return 0, false
	}
	n := 0
	for _, c := range f {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n > 65535 {
		return 0, false
	}
	return uint16(n), true
}

// v2 address families (high nibble of byte 13) and their address blocks.
const (
	proxyV2Unspec = 0x0
	proxyV2INET   = 0x1
	proxyV2INET6  = 0x2
	proxyV2UNIX   = 0x3
)

// parseProxyV2 reads the binary header: the signature, version and
// command, family and transport, a big-endian length, then that many bytes
// of addresses and TLVs (skipped).
func parseProxyV2(b []byte) ProxyHeader {
	if len(b) < 16 {
		if len(b) > 12 && b[12]>>4 != 2 {
			return malformed(2, "version "+strconv.Itoa(int(b[12]>>4))+", not 2")
		}
		return ProxyHeader{Status: ProxyIncomplete, Version: 2}
	}
	verCmd, famProto := b[12], b[13]
	if verCmd>>4 != 2 {
		return malformed(2, "version "+strconv.Itoa(int(verCmd>>4))+", not 2")
	}
	cmd := verCmd & 0xF
	if cmd > 1 {
		return malformed(2, "unknown command "+strconv.Itoa(int(cmd)))
	}
	family, transport := famProto>>4, famProto&0xF
	if family > proxyV2UNIX || transport > 2 {
		return malformed(2, "unknown address family or transport 0x"+strconv.FormatUint(uint64(famProto), 16))
	}
	n := 16 + int(binary.BigEndian.Uint16(b[14:16]))
	if n > MaxProxyV2Len {
		return malformed(2, "header of "+strconv.Itoa(n)+" bytes, more than "+strconv.Itoa(MaxProxyV2Len))
	}
	need := 0
	switch family {
	case proxyV2INET:
		need = 12
	case proxyV2INET6:
		need = 36
	case proxyV2UNIX:
		need = 216
	}
	if cmd == 1 && n-16 < need {
		return malformed(2, "address block shorter than its family needs")
	}
	if len(b) < n {
		return ProxyHeader{Status: ProxyIncomplete, Version: 2}
	}
	h := ProxyHeader{Status: ProxyDone, Version: 2, Len: n}
	if cmd == 0 { // LOCAL: addresses, if any, are to be ignored
		h.Local = true
		return h
	}
	if transport == 2 && family != proxyV2Unspec {
		return malformed(2, "a datagram connection")
	}
	a := b[16:n]
	switch family {
	case proxyV2INET:
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:10]))
		h.Dest = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:12]))
	case proxyV2INET6:
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])).Unmap(), binary.BigEndian.Uint16(a[32:34]))
		h.Dest = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[16:32])).Unmap(), binary.BigEndian.Uint16(a[34:36]))
	}
	return h
}
