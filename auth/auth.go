// Package auth holds the auth plugins of --auth-plugin, by the names of the
// original's classes: BasicHTTPAuth, ExpectOrigin and ClientCertCNAuth.
// Each checks a request head (and the client certificate's CN) before the
// proxy upgrades it or, with --web-auth, serves a file. They only look at
// the request, so they run on the event loops.
package auth

import (
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gowebsockify/websockify/codec"
)

// Names are the plugins New knows, by their short names.
var Names = []string{"BasicHTTPAuth", "ExpectOrigin", "ClientCertCNAuth"}

// New builds the plugin named by its short (ExpectOrigin) or long
// (websockify.auth_plugins.ExpectOrigin) name, with its --auth-source.
func New(name, source string) (codec.Authenticator, error) {
	switch strings.TrimPrefix(name, "websockify.auth_plugins.") {
	case "BasicHTTPAuth":
		if !strings.Contains(source, ":") {
			return nil, errors.New("BasicHTTPAuth needs --auth-source user:password")
		}
		return &BasicHTTPAuth{credentials: []byte(source)}, nil
	case "ExpectOrigin":
		return &ExpectOrigin{origins: strings.Fields(source)}, nil
	case "ClientCertCNAuth":
		return &ClientCertCNAuth{names: strings.Fields(source)}, nil
	}
	return nil, fmt.Errorf("unknown auth plugin %q: supported are %s (Python classes cannot be loaded)",
		name, strings.Join(Names, ", "))
}

// BasicHTTPAuth asks for HTTP Basic credentials: a request without them,
// or with wrong ones, gets 401 and a challenge; a malformed Authorization
// header gets 403.
type BasicHTTPAuth struct {
	credentials []byte // "user:password"
}

var demandCredentials = &codec.HTTPError{
	Status: http.StatusUnauthorized,
	Reason: "Unauthorized",
	Header: "WWW-Authenticate: Basic realm=\"Websockify\"\r\n",
}

var forbidden = &codec.HTTPError{Status: http.StatusForbidden, Reason: "Forbidden"}

func (a *BasicHTTPAuth) Authenticate(req *codec.Request, _ string) (*codec.HTTPError, string) {
	header := req.Header.Get("Authorization")
	if header == "" {
		return demandCredentials, "no credentials"
	}
	encoded, ok := strings.CutPrefix(header, "Basic ")
	if !ok {
		return forbidden, "Authorization is not Basic"
	}
	given, err := base64.StdEncoding.DecodeString(strings.TrimSpace(encoded))
	if err != nil || !strings.Contains(string(given), ":") {
		return forbidden, "malformed Basic credentials"
	}
	if subtle.ConstantTimeCompare(given, a.credentials) != 1 {
		user, _, _ := strings.Cut(string(given), ":")
		return demandCredentials, fmt.Sprintf("wrong credentials for user %q", user)
	}
	return nil, ""
}

// ExpectOrigin lets through only requests whose Origin is one of a list.
type ExpectOrigin struct {
	origins []string
}

func (a *ExpectOrigin) Authenticate(req *codec.Request, _ string) (*codec.HTTPError, string) {
	origin, sent := originOf(req)
	for _, o := range a.origins {
		if sent && origin == o {
			return nil, ""
		}
	}
	got := "None" // the original's word for a missing header
	if sent {
		got = fmt.Sprintf("'%s'", origin)
	}
	return &codec.HTTPError{Status: http.StatusForbidden, Reason: "Invalid Origin"},
		fmt.Sprintf("Invalid Origin Header: Expected one of %s, got %s", pythonList(a.origins), got)
}

// originOf is the request's Origin; HyBi drafts 7 and 8 sent it as
// Sec-WebSocket-Origin.
func originOf(req *codec.Request) (string, bool) {
	for _, name := range []string{"Origin", "Sec-Websocket-Origin"} {
		if v, ok := req.Header[name]; ok && len(v) > 0 {
			return v[0], true
		}
	}
	return "", false
}

// pythonList renders names as the original's log line does: ['a', 'b'].
func pythonList(names []string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = "'" + n + "'"
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// ClientCertCNAuth lets through only clients whose verified TLS certificate
// has one of a list of common names (it needs --verify-client: without it
// no certificate is asked for, so every client is refused).
//
// The CN comes from the TLS connection itself, never from a header: the
// original reads it from an SSL_CLIENT_S_DN_CN header after deleting
// client-sent headers of that name in one case only, so a client could
// forge it in another case.
type ClientCertCNAuth struct {
	names []string
}

func (a *ClientCertCNAuth) Authenticate(_ *codec.Request, cn string) (*codec.HTTPError, string) {
	for _, n := range a.names {
		if cn != "" && cn == n {
			return nil, ""
		}
	}
	if cn == "" {
		return forbidden, "no verified client certificate"
	}
	return forbidden, fmt.Sprintf("client certificate CN '%s' not allowed", cn)
}
