package codec

import (
	"net/http"
	"strings"
	"testing"
)

// hybiRequest builds a parsed HyBi upgrade request; extra lines are
// "Key: value" pairs, and an empty value removes the header.
func hybiRequest(t *testing.T, extra ...string) *Request {
	t.Helper()
	h := map[string]string{
		"Host":                  "example.com",
		"Upgrade":               "websocket",
		"Connection":            "Upgrade",
		"Sec-WebSocket-Key":     "DKURYVK9cRFul1vOZVA56Q==",
		"Sec-WebSocket-Version": "13",
	}
	var added []string
	for _, e := range extra {
		k, v, _ := strings.Cut(e, ": ")
		if _, ok := h[k]; ok {
			h[k] = v
		} else {
			added = append(added, e)
		}
	}
	raw := "GET /websockify HTTP/1.1\r\n"
	for k, v := range h {
		if v != "" {
			raw += k + ": " + v + "\r\n"
		}
	}
	for _, e := range added {
		raw += e + "\r\n"
	}
	raw += "\r\n"
	req, n, err := ParseRequest([]byte(raw), MaxHeaderBytes)
	if err != nil || n != len(raw) {
		t.Fatalf("ParseRequest(%q) = %d, %v", raw, n, err)
	}
	return req
}

func TestUpgradeHyBi(t *testing.T) {
	tests := []struct {
		name     string
		extra    []string
		mode     Mode
		protocol string
	}{
		{name: "version 13", extra: nil, mode: Binary},
		{name: "version 8", extra: []string{"Sec-WebSocket-Version: 8"}, mode: Binary},
		{name: "version 7", extra: []string{"Sec-WebSocket-Version: 7"}, mode: Binary},
		{name: "no Host, no Connection", extra: []string{"Host: ", "Connection: "}, mode: Binary},
		{name: "binary", extra: []string{"Sec-WebSocket-Protocol: binary"}, mode: Binary, protocol: "binary"},
		{name: "base64", extra: []string{"Sec-WebSocket-Protocol: base64"}, mode: Base64, protocol: "base64"},
		{name: "binary preferred", extra: []string{"Sec-WebSocket-Protocol: base64, binary"}, mode: Binary, protocol: "binary"},
		{name: "trimmed", extra: []string{"Sec-WebSocket-Protocol: foo ,  base64 ,"}, mode: Base64, protocol: "base64"},
		{name: "two headers", extra: []string{"Sec-WebSocket-Protocol: foo", "Sec-WebSocket-Protocol: binary"}, mode: Binary, protocol: "binary"},
		{name: "empty list", extra: []string{"Sec-WebSocket-Protocol: , "}, mode: Binary},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs, err := Upgrade(hybiRequest(t, tt.extra...), false)
			if err != nil {
				t.Fatalf("Upgrade: %v", err)
			}
			if hs.Version != HyBi || hs.Mode != tt.mode || hs.Protocol != tt.protocol {
				t.Errorf("got %v %v %q, want %v %q", hs.Version, hs.Mode, hs.Protocol, tt.mode, tt.protocol)
			}
			resp := string(hs.Response)
			for _, want := range []string{
				"HTTP/1.1 101 ",
				"\r\nUpgrade: websocket\r\n",
				"\r\nConnection: Upgrade\r\n",
				"\r\nSec-WebSocket-Accept: pczpYSQsvE1vBpTQYjFQPcuoj6M=\r\n",
			} {
				if !strings.Contains(resp, want) {
					t.Errorf("response %q lacks %q", resp, want)
				}
			}
			if !strings.HasSuffix(resp, "\r\n\r\n") {
				t.Errorf("response %q does not end its head", resp)
			}
			hasProto := strings.Contains(resp, "Sec-WebSocket-Protocol:")
			if tt.protocol == "" && hasProto {
				t.Errorf("response %q has a protocol header", resp)
			}
			if tt.protocol != "" && !strings.Contains(resp, "\r\nSec-WebSocket-Protocol: "+tt.protocol+"\r\n") {
				t.Errorf("response %q does not choose %q", resp, tt.protocol)
			}
		})
	}
}

func TestUpgradeHyBiRefused(t *testing.T) {
	tests := []struct {
		name       string
		extra      []string
		wantHeader string
	}{
		{name: "version 6", extra: []string{"Sec-WebSocket-Version: 6"}, wantHeader: "Sec-WebSocket-Version: 13\r\n"},
		{name: "version 14", extra: []string{"Sec-WebSocket-Version: 14"}, wantHeader: "Sec-WebSocket-Version: 13\r\n"},
		{name: "no version", extra: []string{"Sec-WebSocket-Version: "}, wantHeader: "Sec-WebSocket-Version: 13\r\n"},
		{name: "no key", extra: []string{"Sec-WebSocket-Key: "}},
		{name: "key of the wrong length", extra: []string{"Sec-WebSocket-Key: abc"}},
		{name: "key not base64", extra: []string{"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ!="}},
		{name: "unknown protocols only", extra: []string{"Sec-WebSocket-Protocol: foo, bar"}},
		{name: "not websocket", extra: []string{"Upgrade: h2c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Upgrade(hybiRequest(t, tt.extra...), false)
			if err == nil {
				t.Fatal("Upgrade succeeded")
			}
			if got := httpStatus(t, err); got != http.StatusBadRequest {
				t.Errorf("status %d", got)
			}
			if got := err.(*HTTPError).Header; got != tt.wantHeader {
				t.Errorf("header %q, want %q", got, tt.wantHeader)
			}
		})
	}
}

func TestUpgradeHixie76(t *testing.T) {
	req, _, err := ParseRequest([]byte(hixie76Request), MaxHeaderBytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, tls := range []bool{false, true} {
		hs, err := Upgrade(req, tls)
		if err != nil {
			t.Fatalf("Upgrade: %v", err)
		}
		scheme := "ws"
		if tls {
			scheme = "wss"
		}
		want := "HTTP/1.1 101 WebSocket Protocol Handshake\r\n" +
			"Upgrade: WebSocket\r\n" +
			"Connection: Upgrade\r\n" +
			"Sec-WebSocket-Origin: http://example.com\r\n" +
			"Sec-WebSocket-Location: " + scheme + "://example.com/demo\r\n" +
			"Sec-WebSocket-Protocol: sample\r\n" +
			"\r\n" +
			"8jKS'y:G*Co,Wxa-"
		if string(hs.Response) != want {
			t.Errorf("response\n%q\nwant\n%q", hs.Response, want)
		}
		if hs.Version != Hixie76 || hs.Mode != Base64 || hs.Protocol != "sample" {
			t.Errorf("got %v %v %q", hs.Version, hs.Mode, hs.Protocol)
		}
	}
}

func TestUpgradeHixie76Refused(t *testing.T) {
	tests := []struct {
		name string
		key1 string
		key2 string
		body []byte
	}{
		{name: "no spaces", key1: "12345", key2: "12998 5 Y3 1  .P00", body: []byte("^n:ds[4U")},
		{name: "not a multiple", key1: "1 2 5", key2: "12998 5 Y3 1  .P00", body: []byte("^n:ds[4U")},
		{name: "no digits", key1: "a b c", key2: "12998 5 Y3 1  .P00", body: []byte("^n:ds[4U")},
		{name: "over 32 bits", key1: "9999999999 9", key2: "12998 5 Y3 1  .P00", body: []byte("^n:ds[4U")},
		{name: "huge number", key1: "99999999999999999999999999 9", key2: "12998 5 Y3 1  .P00", body: []byte("^n:ds[4U")},
		{name: "no challenge", key1: "4 @1  46546xW%0l 1 5", key2: "12998 5 Y3 1  .P00", body: nil},
		{name: "one key only", key1: "4 @1  46546xW%0l 1 5", key2: "", body: []byte("^n:ds[4U")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &Request{
				Method: "GET",
				Target: "/",
				Proto:  "HTTP/1.1",
				Header: http.Header{"Upgrade": {"WebSocket"}, "Host": {"h"}, "Sec-Websocket-Key1": {tt.key1}},
				Body:   tt.body,
			}
			if tt.key2 != "" {
				req.Header.Set("Sec-WebSocket-Key2", tt.key2)
			}
			_, err := Upgrade(req, false)
			if err == nil {
				t.Fatal("Upgrade succeeded")
			}
			if got := httpStatus(t, err); got != http.StatusBadRequest {
				t.Errorf("status %d", got)
			}
		})
	}
}

func TestUpgradeHixie75(t *testing.T) {
	raw := "GET /demo HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\nHost: example.com\r\n" +
		"Origin: http://example.com\r\nWebSocket-Protocol: sample\r\n\r\n"
	req, _, err := ParseRequest([]byte(raw), MaxHeaderBytes)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := Upgrade(req, true)
	if err != nil {
		t.Fatalf("Upgrade: %v", err)
	}
	want := "HTTP/1.1 101 Web Socket Protocol Handshake\r\n" +
		"Upgrade: WebSocket\r\n" +
		"Connection: Upgrade\r\n" +
		"WebSocket-Origin: http://example.com\r\n" +
		"WebSocket-Location: wss://example.com/demo\r\n" +
		"WebSocket-Protocol: sample\r\n" +
		"\r\n"
	if string(hs.Response) != want {
		t.Errorf("response\n%q\nwant\n%q", hs.Response, want)
	}
	if hs.Version != Hixie75 || hs.Mode != Base64 {
		t.Errorf("got %v %v", hs.Version, hs.Mode)
	}
}

// The 101 reply byte for byte, as gobwas's Upgrader wrote it before the
// handshake computed it itself: clients compare the accept value exactly.
func TestUpgradeHyBiReply(t *testing.T) {
	const head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	tests := []struct {
		name  string
		extra []string
		want  string
	}{
		{
			name:  "RFC 6455 section 1.3 example",
			extra: []string{"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="},
			want:  head + "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
		},
		{
			name: "no protocol",
			want: head + "Sec-WebSocket-Accept: pczpYSQsvE1vBpTQYjFQPcuoj6M=\r\n\r\n",
		},
		{
			name:  "base64",
			extra: []string{"Sec-WebSocket-Protocol: base64"},
			want:  head + "Sec-WebSocket-Accept: pczpYSQsvE1vBpTQYjFQPcuoj6M=\r\nSec-WebSocket-Protocol: base64\r\n\r\n",
		},
		{
			name:  "binary chosen",
			extra: []string{"Sec-WebSocket-Protocol: base64, binary, foo"},
			want:  head + "Sec-WebSocket-Accept: pczpYSQsvE1vBpTQYjFQPcuoj6M=\r\nSec-WebSocket-Protocol: binary\r\n\r\n",
		},
		{
			// The key is hashed as sent: pad bits that base64 ignores still count.
			name:  "key with non-zero pad bits",
			extra: []string{"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR=="},
			want:  head + "Sec-WebSocket-Accept: Zgw8jYXtqX5qJr7MJ1Q/MqzeSRI=\r\n\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs, err := Upgrade(hybiRequest(t, tt.extra...), false)
			if err != nil {
				t.Fatalf("Upgrade: %v", err)
			}
			if string(hs.Response) != tt.want {
				t.Errorf("response\n%q\nwant\n%q", hs.Response, tt.want)
			}
		})
	}
}

func TestAcceptKey(t *testing.T) {
	tests := []struct {
		key    string
		accept string // "" when the key is refused
	}{
		{key: "dGhlIHNhbXBsZSBub25jZQ==", accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}, // RFC 6455 section 1.3
		{key: "DKURYVK9cRFul1vOZVA56Q==", accept: "pczpYSQsvE1vBpTQYjFQPcuoj6M="},
		{key: "AAAAAAAAAAAAAAAAAAAAAA==", accept: "ICX+Yqv66kxgM0FcWaLWlFLwTAI="},
		{key: ""},
		{key: "dGhlIHNhbXBsZSBub25jZQ="},   // 23 characters
		{key: "dGhlIHNhbXBsZSBub25jZQ==="}, // 25
		{key: "dGhlIHNhbXBsZSBub25jZQ==dGhlIHNhbXBsZSBub25jZQ=="}, // 48: 32 bytes
		{key: "AAAAAAAAAAAAAAAAAAAAAAAA"},                         // 18 bytes
		{key: "AAAAAAAAAAAAAAAAAAAAAAA="},                         // 17 bytes
		{key: "AAAAAAAAAAAAAAAAAAAAA==="},                         // bad padding
		{key: "AAAAAAAAAAAAAAAAAAAAAA=A"},
		{key: "dGhlIHNhbXBsZSBub25jZQ-_"}, // URL alphabet
		{key: "dGhlIHNhbXBsZSBub25jZ\nQ="},
		{key: "dGhlIHNhbXBsZSBub25 jZQ=="[:24]},
	}
	for _, tt := range tests {
		accept, ok := acceptKey(tt.key)
		switch {
		case ok != (tt.accept != ""):
			t.Errorf("acceptKey(%q): ok %v", tt.key, ok)
		case ok && string(accept[:]) != tt.accept:
			t.Errorf("acceptKey(%q) = %q, want %q", tt.key, accept, tt.accept)
		}
	}
}

func TestUpgradeHyBiAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { acceptKey("dGhlIHNhbXBsZSBub25jZQ==") }); n != 0 {
		t.Errorf("acceptKey allocates %v times", n)
	}
	accept, _ := acceptKey("dGhlIHNhbXBsZSBub25jZQ==")
	if n := testing.AllocsPerRun(100, func() { hybiReply(accept, "binary") }); n != 1 {
		t.Errorf("hybiReply allocates %v times", n)
	}
}
