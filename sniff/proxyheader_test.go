package sniff

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
)

// proxyV2 builds a v2 header: version/command byte, family/transport
// byte, then the address block and TLVs as given.
func proxyV2(verCmd, famProto byte, body []byte) []byte {
	b := append([]byte(proxyV2Signature), verCmd, famProto, 0, 0)
	binary.BigEndian.PutUint16(b[14:16], uint16(len(body)))
	return append(b, body...)
}

// inet4 is a v2 IPv4 address block.
func inet4(src, dst string, sport, dport uint16) []byte {
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	b := append(s[:], d[:]...)
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, sport), dport)
}

// inet6 is a v2 IPv6 address block.
func inet6(src, dst string, sport, dport uint16) []byte {
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	b := append(s[:], d[:]...)
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, sport), dport)
}

func TestParseProxyHeader(t *testing.T) {
	v2ipv4 := proxyV2(0x21, 0x11, inet4("203.0.113.7", "10.0.0.1", 51000, 6080))
	v2ipv6 := proxyV2(0x21, 0x21, inet6("2001:db8::7", "2001:db8::1", 443, 6080))
	tlv := []byte{0x01, 0x00, 0x02, 'h', '2', 0x04, 0x00, 0x00} // ALPN "h2", a NOOP with no value
	v2tlv := proxyV2(0x21, 0x11, append(inet4("198.51.100.9", "10.0.0.1", 1, 2), tlv...))
	v2local := proxyV2(0x20, 0x00, nil)
	v2localAddrs := proxyV2(0x20, 0x11, inet4("192.0.2.1", "192.0.2.2", 3, 4))
	v2unspec := proxyV2(0x21, 0x00, nil)
	v2unix := proxyV2(0x21, 0x31, make([]byte, 216))
	v2mapped := proxyV2(0x21, 0x21, inet6("::ffff:192.0.2.5", "::1", 7, 8))
	long := proxyV2(0x21, 0x11, make([]byte, MaxProxyV2Len)) // length field past the bound

	tests := []struct {
		name    string
		in      string
		status  ProxyStatus
		version int
		len     int    // Done: bytes consumed
		source  string // Done: "" for none
		local   bool
	}{
		{"empty", "", ProxyIncomplete, 0, 0, "", false},
		{"v1 prefix", "PROX", ProxyIncomplete, 0, 0, "", false},
		{"v2 prefix", "\r\n\r\n\x00", ProxyIncomplete, 0, 0, "", false},
		{"http", "GET / HTTP/1.1\r\n", ProxyMalformed, 0, 0, "", false},
		{"post", "PO", ProxyMalformed, 0, 0, "", false},
		{"tls", "\x16\x03\x01", ProxyMalformed, 0, 0, "", false},
		{"crlf then http", "\r\nGET", ProxyMalformed, 0, 0, "", false},

		{"v1 tcp4", "PROXY TCP4 203.0.113.7 10.0.0.1 51000 6080\r\nGET", ProxyDone, 1, 44, "203.0.113.7:51000", false},
		{"v1 tcp6", "PROXY TCP6 2001:db8::7 2001:db8::1 443 6080\r\n", ProxyDone, 1, 45, "[2001:db8::7]:443", false},
		{"v1 tcp6 mapped", "PROXY TCP6 ::ffff:192.0.2.5 ::1 1 2\r\n", ProxyDone, 1, 37, "192.0.2.5:1", false},
		{"v1 unknown", "PROXY UNKNOWN\r\n\x16", ProxyDone, 1, 15, "", false},
		{"v1 unknown with addresses", "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", ProxyDone, 1, 59, "", false},
		{"v1 longest", "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n", ProxyDone, 1, 104, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", false},
		{"v1 port 0", "PROXY TCP4 1.2.3.4 5.6.7.8 0 0\r\n", ProxyDone, 1, 32, "1.2.3.4:0", false},
		{"v1 truncated", "PROXY TCP4 203.0.113.7 10.0.", ProxyIncomplete, 1, 0, "", false},
		{"v1 truncated at CR", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", ProxyIncomplete, 1, 0, "", false},
		{"v1 no CRLF", "PROXY UNKNOWN " + strings.Repeat("x", 100), ProxyMalformed, 1, 0, "", false},
		{"v1 bare LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", ProxyMalformed, 1, 0, "", false},
		{"v1 CR without LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", ProxyMalformed, 1, 0, "", false},
		{"v1 binary", "PROXY TCP4 \x00", ProxyMalformed, 1, 0, "", false},
		{"v1 lower case", "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", ProxyMalformed, 1, 0, "", false},
		{"v1 empty", "PROXY \r\n", ProxyMalformed, 1, 0, "", false},
		{"v1 tcp4 with v6", "PROXY TCP4 ::1 ::1 1 2\r\n", ProxyMalformed, 1, 0, "", false},
		{"v1 tcp6 with v4", "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", ProxyMalformed, 1, 0, "", false},
		{"v1 bad address", "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", ProxyMalformed, 1, 0, "", false},
		{"v1 zone", "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", ProxyMalformed, 1, 0, "", false},
		{"v1 port too big", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", ProxyMalformed, 1, 0, "", false},
		{"v1 port leading zero", "PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", ProxyMalformed, 1, 0, "", false},
		{"v1 port sign", "PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n", ProxyMalformed, 1, 0, "", false},
		{"v1 missing port", "PROXY TCP4 1.2.3.4 5.6.7.8 80\r\n", ProxyMalformed, 1, 0, "", false},
		{"v1 extra field", "PROXY TCP4 1.2.3.4 5.6.7.8 80 81 82\r\n", ProxyMalformed, 1, 0, "", false},
		{"v1 double space", "PROXY TCP4  1.2.3.4 5.6.7.8 80 81\r\n", ProxyMalformed, 1, 0, "", false},

		{"v2 ipv4", string(v2ipv4) + "GET", ProxyDone, 2, 28, "203.0.113.7:51000", false},
		{"v2 ipv6", string(v2ipv6), ProxyDone, 2, 52, "[2001:db8::7]:443", false},
		{"v2 mapped", string(v2mapped), ProxyDone, 2, 52, "192.0.2.5:7", false},
		{"v2 tlvs skipped", string(v2tlv) + "\x16", ProxyDone, 2, 36, "198.51.100.9:1", false},
		{"v2 local", string(v2local) + "\x16", ProxyDone, 2, 16, "", true},
		{"v2 local with addresses", string(v2localAddrs), ProxyDone, 2, 28, "", true},
		{"v2 unspec", string(v2unspec), ProxyDone, 2, 16, "", false},
		{"v2 unix", string(v2unix), ProxyDone, 2, 232, "", false},
		{"v2 signature only", proxyV2Signature, ProxyIncomplete, 2, 0, "", false},
		{"v2 truncated head", string(v2ipv4[:14]), ProxyIncomplete, 2, 0, "", false},
		{"v2 truncated addresses", string(v2ipv4[:20]), ProxyIncomplete, 2, 0, "", false},
		{"v2 version 1", string(proxyV2(0x11, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2))), ProxyMalformed, 2, 0, "", false},
		{"v2 version 1 early", proxyV2Signature + "\x11", ProxyMalformed, 2, 0, "", false},
		{"v2 command 2", string(proxyV2(0x22, 0x11, inet4("1.2.3.4", "5.6.7.8", 1, 2))), ProxyMalformed, 2, 0, "", false},
		{"v2 family 4", string(proxyV2(0x21, 0x41, inet4("1.2.3.4", "5.6.7.8", 1, 2))), ProxyMalformed, 2, 0, "", false},
		{"v2 transport 3", string(proxyV2(0x21, 0x13, inet4("1.2.3.4", "5.6.7.8", 1, 2))), ProxyMalformed, 2, 0, "", false},
		{"v2 datagram", string(proxyV2(0x21, 0x12, inet4("1.2.3.4", "5.6.7.8", 1, 2))), ProxyMalformed, 2, 0, "", false},
		{"v2 short ipv4 block", string(proxyV2(0x21, 0x11, make([]byte, 11))), ProxyMalformed, 2, 0, "", false},
		{"v2 short ipv6 block", string(proxyV2(0x21, 0x21, make([]byte, 12))), ProxyMalformed, 2, 0, "", false},
		{"v2 too long", string(long[:16]), ProxyMalformed, 2, 0, "", false},
	}
	for _, tt := range tests {
		h := ParseProxyHeader([]byte(tt.in))
		if h.Status != tt.status || h.Version != tt.version {
			t.Errorf("%s: status %v version %d (%s), want %v version %d", tt.name, h.Status, h.Version, h.Reason, tt.status, tt.version)
			continue
		}
		switch h.Status {
		case ProxyMalformed:
			if h.Reason == "" {
				t.Errorf("%s: malformed without a reason", tt.name)
			}
		case ProxyDone:
			src := ""
			if h.Source.IsValid() {
				src = h.Source.String()
			}
			if h.Len != tt.len || src != tt.source || h.Local != tt.local {
				t.Errorf("%s: len %d source %q local %v, want %d %q %v", tt.name, h.Len, src, h.Local, tt.len, tt.source, tt.local)
			}
		}
	}
}

// Every prefix of a valid header is incomplete, never malformed: the
// header may come in any number of reads.
func TestParseProxyHeaderPrefixes(t *testing.T) {
	for _, whole := range [][]byte{
		[]byte("PROXY TCP4 203.0.113.7 10.0.0.1 51000 6080\r\n"),
		[]byte("PROXY UNKNOWN\r\n"),
		proxyV2(0x21, 0x21, inet6("2001:db8::7", "2001:db8::1", 443, 6080)),
		proxyV2(0x20, 0x00, nil),
	} {
		for i := range len(whole) {
			if h := ParseProxyHeader(whole[:i]); h.Status != ProxyIncomplete {
				t.Errorf("%q: prefix of %d bytes: %v (%s), want incomplete", whole, i, h.Status, h.Reason)
			}
		}
		if h := ParseProxyHeader(whole); h.Status != ProxyDone || h.Len != len(whole) {
			t.Errorf("%q: %v len %d, want done len %d", whole, h.Status, h.Len, len(whole))
		}
	}
}

func FuzzProxyHeader(f *testing.F) {
	for _, s := range [][]byte{
		[]byte("PROXY TCP4 203.0.113.7 10.0.0.1 51000 6080\r\nGET / HTTP/1.1\r\n"),
		[]byte("PROXY TCP6 2001:db8::7 2001:db8::1 443 6080\r\n"),
		[]byte("PROXY UNKNOWN\r\n"),
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		proxyV2(0x21, 0x11, inet4("203.0.113.7", "10.0.0.1", 51000, 6080)),
		proxyV2(0x21, 0x21, inet6("2001:db8::7", "2001:db8::1", 443, 6080)),
		proxyV2(0x20, 0x00, nil),
		proxyV2(0x21, 0x31, make([]byte, 216)),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h := ParseProxyHeader(b)
		switch h.Status {
		case ProxyDone:
			if h.Len <= 0 || h.Len > len(b) || (h.Version == 1 && h.Len > MaxProxyV1Len) || h.Len > MaxProxyV2Len {
				t.Fatalf("done with len %d of %d bytes", h.Len, len(b))
			}
			// A header stands on its own: what follows it changes nothing.
			if again := ParseProxyHeader(b[:h.Len]); again != h {
				t.Fatalf("header alone parses as %+v, with what follows as %+v", again, h)
			}
			if h.Source.IsValid() && h.Source.Addr().Is4In6() {
				t.Fatalf("source %v left mapped", h.Source)
			}
		case ProxyMalformed:
			if h.Reason == "" {
				t.Fatal("malformed without a reason")
			}
			// More bytes never make a malformed header good.
			if again := ParseProxyHeader(append(bytes.Clone(b), "\r\n"...)); again.Status != ProxyMalformed {
				t.Fatalf("malformed %q became %v with more bytes", b, again.Status)
			}
		case ProxyIncomplete:
			if len(b) > MaxProxyV2Len {
				t.Fatalf("incomplete after %d bytes", len(b))
			}
		}
		// A prefix is never further along than the whole.
		if len(b) > 0 {
			if p := ParseProxyHeader(b[:len(b)-1]); h.Status == ProxyIncomplete && p.Status != ProxyIncomplete {
				t.Fatalf("%q is incomplete but its prefix is %v", b, p.Status)
			}
		}
	})
}
