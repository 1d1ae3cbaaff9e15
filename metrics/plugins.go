package metrics

import (
	"context"
	"errors"
	"reflect"
	"time"

	"github.com/gowebsockify/websockify/codec"
	"github.com/gowebsockify/websockify/token"
	"github.com/prometheus/client_golang/prometheus"
)

// CountLookups returns plugin with each lookup counted and timed in
// websockify_token_lookup_seconds; with p nil, plugin itself.
func (p *Proxy) CountLookups(plugin token.Plugin) token.Plugin {
	if p == nil || plugin == nil {
		return plugin
	}
	name := plugin.Name()
	return &countedLookups{
		Plugin:   plugin,
		found:    p.tokenLookups.WithLabelValues(name, "found"),
		notFound: p.tokenLookups.WithLabelValues(name, "not_found"),
		timeout:  p.tokenLookups.WithLabelValues(name, "timeout"),
		failed:   p.tokenLookups.WithLabelValues(name, "error"),
	}
}

type countedLookups struct {
	token.Plugin
	found, notFound, timeout, failed prometheus.Observer
}

func (c *countedLookups) Lookup(ctx context.Context, tok string) (token.Target, error) {
	start := time.Now()
	t, err := c.Plugin.Lookup(ctx, tok)
	took := time.Since(start).Seconds()
	var timeout interface{ Timeout() bool }
	switch {
	case err == nil:
		c.found.Observe(took)
	case errors.Is(err, token.ErrNotFound):
		c.notFound.Observe(took)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &timeout) && timeout.Timeout():
		c.timeout.Observe(took)
	default:
		c.failed.Observe(took)
	}
	return t, err
}

// CountAuth returns a with each check counted and timed in
// websockify_auth_check_seconds, labelled with the plugin's name (its type's:
// BasicHTTPAuth, ExpectOrigin, ClientCertCNAuth); with p nil, a itself.
func (p *Proxy) CountAuth(a codec.Authenticator) codec.Authenticator {
	if p == nil || a == nil {
		return a
	}
	t := reflect.TypeOf(a)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return &countedAuth{
		Authenticator: a,
		allowed:       p.authChecks.WithLabelValues(t.Name(), "allowed"),
		refused:       p.authChecks.WithLabelValues(t.Name(), "refused"),
	}
}

type countedAuth struct {
	codec.Authenticator
	allowed, refused prometheus.Observer
}

func (c *countedAuth) Authenticate(req *codec.Request, clientCN string) (*codec.HTTPError, string) {
	start := time.Now()
	refusal, why := c.Authenticator.Authenticate(req, clientCN)
	if refusal == nil {
		c.allowed.Observe(time.Since(start).Seconds())
	} else {
		c.refused.Observe(time.Since(start).Seconds())
	}
	return refusal, why
}
