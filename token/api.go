package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const (
	// apiConns bounds the connections to the token API; Sockets reports it.
	apiConns = 16
	// apiTimeout caps a request when the caller's context has no deadline.
	apiTimeout = 30 * time.Second
	// maxAPIBody bounds what is read of an answer: a target is short.
	maxAPIBody = 64 << 10
)

// tokenAPI is BaseTokenAPI (body "host:port") and JSONTokenApi (body
// {"host": ..., "port": ...}): GET the source URL with the token put in
// place of %s.
type tokenAPI struct {
	name   string
	source string
	client *http.Client
	parse  func(body []byte) (Target, error)
}

func newTokenAPI(name, source string, parse func([]byte) (Target, error)) (Plugin, error) {
	if !strings.Contains(source, "%s") {
		return nil, fmt.Errorf("%s: the source URL %q has no %%s where the token goes", name, source)
	}
	u, err := url.Parse(strings.ReplaceAll(source, "%s", "token"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s: the source %q is not an http(s) URL", name, source)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// Proxy stays as the environment says (HTTP_PROXY...), as with Python's requests.
	transport.MaxConnsPerHost = apiConns
	transport.MaxIdleConnsPerHost = apiConns
	transport.MaxIdleConns = apiConns
	return &tokenAPI{
		name:   name,
		source: source,
		client: &http.Client{Transport: transport, Timeout: apiTimeout},
		parse:  parse,
	}, nil
}

func (p *tokenAPI) Name() string { return p.name }
func (p *tokenAPI) Sockets() int { return apiConns }

func (p *tokenAPI) Close() error {
	p.client.CloseIdleConnections()
	return nil
}

func (p *tokenAPI) Lookup(ctx context.Context, token string) (Target, error) {
	// Python pastes the token in unescaped; escaping it keeps a token from
	// rewriting the URL (extra path segments or query parameters).
	address := strings.ReplaceAll(p.source, "%s", url.QueryEscape(token))
	backendError := func(err error) error {
		return &BackendError{Backend: "token API " + p.source, Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, address, nil)
	if err != nil {
		return Target{}, backendError(err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return Target{}, backendError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIBody))
	if err != nil {
		return Target{}, backendError(err)
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return Target{}, ErrNotFound
	default:
		return Target{}, backendError(fmt.Errorf("answered %s", resp.Status))
	}
	target, err := p.parse(body)
	if err != nil {
		return Target{}, backendError(err)
	}
	return target, nil
}

func parsePlainBody(body []byte) (Target, error) {
	return ParseTarget(strings.TrimSpace(string(body)))
}

func parseJSONBody(body []byte) (Target, error) {
	var answer struct {
		Host *string         `json:"host"`
		Port json.RawMessage `json:"port"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return Target{}, fmt.Errorf("answer is not JSON: %w", err)
	}
	if answer.Host == nil || answer.Port == nil {
		return Target{}, errors.New(`answer lacks "host" or "port"`)
	}
	port, err := portValue(answer.Port)
	if err != nil {
		return Target{}, err
	}
	return hostPortTarget(*answer.Host, port)
}

// portValue accepts a port given as a JSON number or a string.
func portValue(raw json.RawMessage) (string, error) {
	var text string
	if err := json.Unmarshal(raw, &text); err == nil {
		return strings.TrimSpace(text), nil
	}
	var number json.Number
	if err := json.Unmarshal(raw, &number); err == nil {
		if n, err := strconv.ParseInt(number.String(), 10, 32); err == nil {
			return strconv.FormatInt(n, 10), nil
		}
	}
	return "", fmt.Errorf("port %s is not a number or a string", raw)
}
