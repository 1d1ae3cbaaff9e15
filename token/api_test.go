package token

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// tokenServer answers GET /t/<token> from answers: status and body.
func tokenServer(t *testing.T, answers map[string][2]string) (*httptest.Server, *[]string) {
	var mu sync.Mutex
	var seen []string
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.RequestURI())
		mu.Unlock()
		answer, ok := answers[r.URL.RequestURI()]
		if !ok {
			http.NotFound(w, r)
			return
		}
		code, _ := strconv.Atoi(answer[0])
		w.WriteHeader(code)
		w.Write([]byte(answer[1]))
	}))
	t.Cleanup(server.Close)
	return server, &seen
}

func TestBaseTokenAPI(t *testing.T) {
	server, seen := tokenServer(t, map[string][2]string{
		"/t/vm1":           {"200", "10.0.0.1:5900\n"},
		"/t/vm6":           {"200", "::1:5901"},
		"/t/a%2Fb%3Fx%3D1": {"200", "escaped:1"},
		"/t/garbage":       {"200", "not a target"},
		"/t/forbidden":     {"403", ""},
		"/t/broken":        {"500", "oops"},
	})
	p, err := New("BaseTokenAPI", server.URL+"/t/%s", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Sockets() < 1 {
		t.Errorf("Sockets() = %d, want the connection bound", p.Sockets())
	}
	wantTarget(t, p, "vm1", tcp("10.0.0.1:5900"))
	wantTarget(t, p, "vm6", tcp("[::1]:5901"))
	wantTarget(t, p, "a/b?x=1", tcp("escaped:1"))
	if (*seen)[2] != "/t/a%2Fb%3Fx%3D1" {
		t.Errorf("token sent as %q, want it escaped", (*seen)[2])
	}
	wantNotFound(t, p, "missing")
	wantNotFound(t, p, "forbidden")
	for _, token := range []string{"broken", "garbage"} {
		_, err := p.Lookup(testContext(t, 5*time.Second), token)
		var backendErr *BackendError
		if !errors.As(err, &backendErr) || backendErr.Timeout() || !strings.Contains(backendErr.Backend, "token API") {
			t.Errorf("Lookup(%q) error = %v, want a BackendError, no timeout", token, err)
		}
	}
}

func TestJSONTokenAPI(t *testing.T) {
	server, _ := tokenServer(t, map[string][2]string{
		"/t?token=num":     {"200", `{"host": "10.0.0.1", "port": 5900}`},
		"/t?token=str":     {"200", `{"host": "example.com", "port": "5901"}`},
		"/t?token=v6":      {"200", `{"host": "::1", "port": 5902}`},
		"/t?token=noport":  {"200", `{"host": "example.com"}`},
		"/t?token=notjson": {"200", `example.com:5900`},
		"/t?token=badport": {"200", `{"host": "h", "port": 70000}`},
	})
	p, err := New("websockify.token_plugins.JSONTokenApi", server.URL+"/t?token=%s", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Name() != "JSONTokenApi" {
		t.Errorf("Name() = %q", p.Name())
	}
	wantTarget(t, p, "num", tcp("10.0.0.1:5900"))
	wantTarget(t, p, "str", tcp("example.com:5901"))
	wantTarget(t, p, "v6", tcp("[::1]:5902"))
	wantNotFound(t, p, "missing")
	for _, token := range []string{"noport", "notjson", "badport"} {
		_, err := p.Lookup(testContext(t, 5*time.Second), token)
		var backendErr *BackendError
		if !errors.As(err, &backendErr) {
			t.Errorf("Lookup(%q) error = %v, want a BackendError", token, err)
		}
	}
}

func TestTokenAPIHangs(t *testing.T) {
	release := make(chan struct{})
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(server.Close)
	t.Cleanup(func() { close(release) })
	p, err := New("BaseTokenAPI", server.URL+"/%s", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = p.Lookup(ctx, "x")
	elapsed := time.Since(start)
	var backendErr *BackendError
	if !errors.As(err, &backendErr) || !backendErr.Timeout() {
		t.Errorf("Lookup against a hanging API = %v, want a BackendError that is a timeout", err)
	}
	if elapsed > 2*time.Second {
		t.Errorf("Lookup took %v past a 200ms deadline", elapsed)
	}
}

func TestTokenAPIUnreachable(t *testing.T) {
	server := httptest.NewServer(http.NotFoundHandler())
	url := server.URL
	server.Close() // nothing listens there now
	p, err := New("BaseTokenAPI", url+"/%s", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Lookup(testContext(t, 5*time.Second), "x")
	var backendErr *BackendError
	if !errors.As(err, &backendErr) || backendErr.Timeout() {
		t.Errorf("Lookup against a closed port = %v, want a BackendError, no timeout", err)
	}
}

func TestTokenAPISource(t *testing.T) {
	for _, source := range []string{"http://h/no-placeholder", "ftp://h/%s", "%s", "http:///%s"} {
		if _, err := New("BaseTokenAPI", source, nil); err == nil {
			t.Errorf("New(BaseTokenAPI, %q) succeeded", source)
		}
	}
}
