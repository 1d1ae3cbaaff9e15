package codec

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

// FuzzDecoder feeds arbitrary bytes in arbitrary splits: the decoder must
// not panic, never claim more than it was given, and hand out the same bytes
// and the same verdict as when fed everything at once.
func FuzzDecoder(f *testing.F) {
	seeds := []struct {
		flags  byte // low bits: version; bit 2: base64
		stream []byte
		splits []byte
	}{
		{0, clientFrame(finBinary, []byte("hello")), []byte{1, 2, 3}},
		{0, cat(clientFrame(0x02, []byte("a")), clientFrame(ping, []byte("p")), clientFrame(finCont, []byte("b"))), []byte{5}},
		{0, cat(clientFrame(finBinary, bytes.Repeat([]byte("m"), 300)), closeFrame(1000, "bye")), []byte{7, 200}},
		{0, clientFrameMask(finBinary, []byte("x"), testMask, false), nil},
		{0, []byte{finBinary, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}, []byte{1}},
		{4, cat(clientFrame(text, []byte("aGVsbG8")), clientFrame(finCont, []byte("gd29ybGQ="))), []byte{3, 3}},
		{4, clientFrame(finText, []byte("QQ==QQ")), []byte{9}},
		{4, clientFrame(finText, []byte("QU!D")), nil},
		{1, []byte("\x00aGVsbG8=\xff\x00\xff\xff\x00"), []byte{2, 1}},
		{2, []byte("\x00QUJD\xff\x80"), nil},
	}
	for _, s := range seeds {
		f.Add(s.flags, s.stream, s.splits)
	}
	f.Fuzz(func(t *testing.T, flags byte, stream, splits []byte) {
		v := Version(flags & 3 % 3)
		m := Binary
		if flags&4 != 0 {
			m = Base64
		}
		sizes := make([]int, len(splits))
		for i, s := range splits {
			sizes[i] = int(s) + 1
		}
		once := feedSplit(t, v, m, stream, nil)
		split := feedSplit(t, v, m, stream, sizes)
		if !sameResult(once, split) {
			t.Fatalf("split feed differs:\nonce  %q %q %d %+v\nsplit %q %q %d %+v",
				once.target, once.client, once.consumed, once.err,
				split.target, split.client, split.consumed, split.err)
		}
	})
}

// FuzzParseRequest: never panic, never claim more than buf, and a request
// or an error, never both.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		sampleRequest,
		hixie76Request,
		"GET / HTTP/1.1\nA: b\n  c\n\n",
		"\r\n\r\nGET / HTTP/1.0\r\n\r\n",
		"GET / HTTP/2.0\r\n\r\n",
		"<policy-file-request/>\x00",
		"GET / HTTP/1.1\r\nSec-WebSocket-Key1: 1 1\r\nSec-WebSocket-Key2: 2 2\r\n\r\n1234567",
	} {
		f.Add([]byte(s), uint16(MaxHeaderBytes))
		f.Add([]byte(s), uint16(40))
	}
	f.Fuzz(func(t *testing.T, buf []byte, max uint16) {
		req, n, err := ParseRequest(buf, int(max))
		switch {
		case n < 0 || n > len(buf):
			t.Fatalf("n = %d of %d", n, len(buf))
		case err != nil && (req != nil || n != 0):
			t.Fatalf("error %v with %v, %d", err, req, n)
		case err == nil && (req == nil) != (n == 0):
			t.Fatalf("request %v with n = %d", req, n)
		case err != nil:
			if _, ok := err.(*HTTPError); !ok {
				t.Fatalf("error %T", err)
			}
		case req != nil:
			// Whatever parsed must survive the handshake without panicking.
			_, _ = Upgrade(req, false)
		}
	})
}

// FuzzSession drives a whole Session with arbitrary client bytes in
// arbitrary splits, the dial succeeding when asked: it must not panic,
// never claim more than it was given, and send the client and the target
// the same bytes, and end in the same phase, as when fed everything at
// once.
func FuzzSession(f *testing.F) {
	mask := [4]byte{1, 2, 3, 4}
	for _, s := range []string{
		upgradeRequest + string(maskedFrame(0x82, []byte("hi"), mask)) + string(maskedFrame(0x88, []byte{3, 0xE8}, mask)),
		strings.Replace(upgradeRequest, "binary", "base64", 1) + string(maskedFrame(0x81, []byte("aGk="), mask)),
		hixie76Request + "\x00aGk=\xff\xff\x00",
		"<policy-file-request/>\x00",
		"GET / HTTP/1.1\r\n\r\n",
		"\x16\x03\x01",
		strings.Replace(upgradeRequest, "/websockify", "/websockify?token=vm1", 1) + string(maskedFrame(0x82, []byte("hi"), mask)),
		strings.Replace(upgradeRequest, "/websockify", "/?token=xbad", 1),
		"PROXY TCP4 203.0.113.7 10.0.0.1 51000 6080\r\n" + strings.Replace(upgradeRequest, "\r\n\r\n", "\r\nX-Forwarded-For: 198.51.100.1, 10.0.0.2\r\n\r\n", 1),
		"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\xcb\x00\x71\x07\x0a\x00\x00\x01\xc7\x38\x17\xc0\x16\x03\x01",
		"PROXY UNKNOWN\r\nGET / HTTP/1.1\r\nForwarded: for=\"[2001:db8::1]:80\";proto=https, for=unknown\r\n\r\n",
	} {
		f.Add([]byte(s), []byte{5, 40, 1})
	}
	// The same with tokens and an auth plugin: the token "x..." is unknown,
	// and an Origin "http://evil" is refused.
	tokens := testSessionConfig
	tokens.Tokens = TokenFromQuery
	tokens.Auth = &denyEvil{}
	// Behind a trusted proxy that sends PROXY headers, and with that proxy
	// not trusted (10.0.0.1 is every fuzzed session's peer).
	proxied := testSessionConfig
	proxied.ProxyProtocol = true
	proxied.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	untrusted := proxied
	untrusted.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	f.Fuzz(func(t *testing.T, stream, splits []byte) {
		var sizes []int
		for _, s := range splits {
			sizes = append(sizes, int(s)+1)
		}
		for _, cfg := range []*SessionConfig{&testSessionConfig, &tokens, &proxied, &untrusted} {
			whole := runSession(t, cfg, stream, nil)
			split := runSession(t, cfg, stream, sizes)
			if whole.phase != split.phase || !bytes.Equal(whole.client, split.client) || !bytes.Equal(whole.target, split.target) {
				t.Fatalf("split feed differs:\nwhole %v %q %q\nsplit %v %q %q",
					whole.phase, whole.client, whole.target, split.phase, split.client, split.target)
			}
		}
	})
}

type denyEvil struct{}

func (denyEvil) Authenticate(req *Request, _ string) (*HTTPError, string) {
	if req.Header.Get("Origin") == "http://evil" {
		return &HTTPError{Status: 403, Reason: "Forbidden"}, "evil"
	}
	return nil, ""
}

type sessionRun struct {
	phase          Phase
	client, target []byte
}

// runSession feeds stream to a new Session in pieces of the given sizes
// (the rest at once), keeping what it did not consume, as an owner does.
func runSession(t *testing.T, cfg *SessionConfig, stream []byte, sizes []int) sessionRun {
	s := NewSession(cfg, "10.0.0.1")
	r := &recorder{}
	var held []byte
	feed := func(p []byte) {
		held = append(held, p...)
		for len(held) > 0 {
			n, step := s.FromClient(held, r)
			if n < 0 || n > len(held) {
				t.Fatalf("consumed %d of %d", n, len(held))
			}
			held = held[n:]
			switch step {
			case Route:
				if strings.HasPrefix(s.Token(), "x") {
					s.RouteFailed(ErrTokenNotFound, r)
				} else if s.Routed("127.0.0.1:5901", r) == Dial {
					s.Dialed()
				}
			case Dial:
				s.Dialed()
			case StartTLS:
				held = nil // the owner's handshake takes them
			}
			if n == 0 {
				return
			}
		}
	}
	in := bytes.Clone(stream) // the decoder unmasks in place
	for _, size := range sizes {
		if len(in) == 0 {
			break
		}
		size = min(size, len(in))
		feed(in[:size])
		in = in[size:]
	}
	feed(in)
	return sessionRun{s.Phase(), r.client, r.target}
}
