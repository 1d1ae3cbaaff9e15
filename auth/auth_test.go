package auth

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/gowebsockify/websockify/codec"
)

func request(t *testing.T, headers string) *codec.Request {
	t.Helper()
	req, _, err := codec.ParseRequest([]byte("GET / HTTP/1.1\r\nHost: x\r\n"+headers+"\r\n"), codec.MaxHeaderBytes)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func basic(userPass string) string {
	return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(userPass)) + "\r\n"
}

func TestPlugins(t *testing.T) {
	for _, tc := range []struct {
		plugin, source string
		headers, cn    string
		status         int // 0 = allowed
		why            string
	}{
		{"BasicHTTPAuth", "alice:s3:cret", basic("alice:s3:cret"), "", 0, ""},
		{"BasicHTTPAuth", "alice:s3:cret", "", "", 401, "no credentials"},
		{"BasicHTTPAuth", "alice:s3:cret", basic("alice:wrong"), "", 401, `user "alice"`},
		{"BasicHTTPAuth", "alice:s3:cret", "authorization: Digest abc\r\n", "", 403, "not Basic"},
		{"BasicHTTPAuth", "alice:s3:cret", "Authorization: Basic !!!\r\n", "", 403, "malformed"},
		{"BasicHTTPAuth", "alice:s3:cret", basic("nocolon"), "", 403, "malformed"},
		{"websockify.auth_plugins.ExpectOrigin", "http://a https://b", "Origin: https://b\r\n", "", 0, ""},
		{"ExpectOrigin", "http://a https://b", "Origin: http://evil\r\n", "", 403,
			"Invalid Origin Header: Expected one of ['http://a', 'https://b'], got 'http://evil'"},
		{"ExpectOrigin", "http://a", "", "", 403, "got None"},
		{"ExpectOrigin", "http://a", "Sec-WebSocket-Origin: http://a\r\n", "", 0, ""},
		{"ClientCertCNAuth", "alice bob", "", "bob", 0, ""},
		{"ClientCertCNAuth", "alice bob", "", "mallory", 403, "'mallory' not allowed"},
		{"ClientCertCNAuth", "alice bob", "", "", 403, "no verified client certificate"},
		// A forged header, in any case, is never believed.
		{"ClientCertCNAuth", "alice", "ssl_client_s_dn_cn: alice\r\nSSL_CLIENT_S_DN_CN: alice\r\n", "", 403, "no verified"},
	} {
		a, err := New(tc.plugin, tc.source)
		if err != nil {
			t.Fatal(err)
		}
		refusal, why := a.Authenticate(request(t, tc.headers), tc.cn)
		switch {
		case tc.status == 0 && refusal != nil:
			t.Errorf("%s %q: refused %d (%s)", tc.plugin, tc.headers, refusal.Status, why)
		case tc.status != 0 && (refusal == nil || refusal.Status != tc.status || !strings.Contains(why, tc.why)):
			t.Errorf("%s %q: got %v %q, want %d %q", tc.plugin, tc.headers, refusal, why, tc.status, tc.why)
		}
		if refusal != nil && refusal.Status == 401 && !strings.Contains(string(refusal.Response()), "WWW-Authenticate: Basic realm=\"Websockify\"\r\n") {
			t.Errorf("401 without the challenge: %q", refusal.Response())
		}
	}
}

func TestNew(t *testing.T) {
	if _, err := New("my.module.MyAuth", ""); err == nil || !strings.Contains(err.Error(), "BasicHTTPAuth, ExpectOrigin, ClientCertCNAuth") {
		t.Errorf("unknown plugin: %v", err)
	}
	if _, err := New("BasicHTTPAuth", ""); err == nil {
		t.Error("BasicHTTPAuth without a source accepted")
	}
}
