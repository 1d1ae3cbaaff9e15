package main

// SIGHUP and SIGTERM as an operator uses them: SIGHUP reopens --log-file
// (main.go) and, in a process that serves, reads the certificate, its key,
// --key-password-file and --cafile again and has the token plugin re-read
// its files; --shutdown-timeout bounds what SIGTERM waits for.
//
// A reload applies to new sessions only: the listener's TLS config hands
// each handshake the config current when it starts (GetConfigForClient),
// and an open wss session keeps the connection it has. A new certificate
// that does not load, or whose key does not match it, keeps the old one
// being served, with one log line saying why.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gowebsockify/websockify/eventloop"
	"github.com/gowebsockify/websockify/token"
)

// parseShutdownTimeout checks --shutdown-timeout (seconds, fractions
// allowed).
func parseShutdownTimeout(seconds float64) (time.Duration, error) {
	if math.IsNaN(seconds) || math.IsInf(seconds, 0) || seconds < 0 || seconds > 24*3600 {
		return 0, errors.New("--shutdown-timeout must be a number of seconds from 0 to 86400")
	}
	return time.Duration(seconds * float64(time.Second)), nil
}

// servedTLS is the listener's TLS config, swappable by SIGHUP.
type servedTLS struct {
	opts    tlsOptions
	current atomic.Pointer[tls.Config]
}

// serveTLS wraps the TLS config built at start so that a reload can swap
// it: what the listener gets is a config whose GetConfigForClient returns
// the current one.
func serveTLS(initial *tls.Config, o tlsOptions) (*servedTLS, *tls.Config) {
	st := &servedTLS{opts: o}
	st.current.Store(initial)
	outer := initial.Clone()
	outer.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return st.current.Load(), nil
	}
	return st, outer
}

// reload builds the TLS config again from the same options and files, as
// start-up does, and serves it from the next handshake on; on any error
// the old one stays.
func (st *servedTLS) reload(log *eventloop.Logger) {
	o := st.opts
	o.certGiven = true // the file served so far must be there now too
	if o.passwordFlag == "" && o.passwordFile != "" {
		pw, err := keyPassword("", o.passwordFile)
		if err != nil {
			log.Errorf("SIGHUP: keeping the old certificate: %v", err)
			return
		}
		o.password = pw
	}
	cfg, err := buildServerTLS(o)
	if err == nil && (cfg == nil || len(cfg.Certificates) == 0) {
		err = fmt.Errorf("no certificate in %s", o.cert)
	}
	if err != nil {
		log.Errorf("SIGHUP: keeping the old certificate: %v", err)
		return
	}
	st.current.Store(cfg)
	desc, warn := describeCert(cfg.Certificates[0], time.Now())
	if warn {
		log.Warnf("SIGHUP: reloaded certificate %s (%s)", o.cert, desc)
	} else {
		log.Infof("SIGHUP: reloaded certificate %s (%s)", o.cert, desc)
	}
	if o.verifyClient {
		from := o.cafile
		if from == "" {
			from = "the system's roots"
		}
		log.Infof("SIGHUP: reloaded the CAs client certificates must chain to, from %s", from)
	}
}

// describeCert names a certificate for the log: its subject CN, serial and
// expiry; warn is set when it is not valid now.
func describeCert(c tls.Certificate, now time.Time) (desc string, warn bool) {
	leaf := c.Leaf
	if leaf == nil && len(c.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(c.Certificate[0])
	}
	if leaf == nil {
		return "unparsable leaf", true
	}
	var b strings.Builder
	fmt.Fprintf(&b, "CN %q, serial %s, expires %s", leaf.Subject.CommonName,
		leaf.SerialNumber.Text(16), leaf.NotAfter.UTC().Format(time.RFC3339))
	switch {
	case now.After(leaf.NotAfter):
		b.WriteString("; WARNING: it has expired")
		warn = true
	case now.Before(leaf.NotBefore):
		fmt.Fprintf(&b, "; WARNING: not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
		warn = true
	}
	return b.String(), warn
}

// reloadOnHUP is what SIGHUP does in a serving process after the log file
// is reopened.
func (p *process) reloadOnHUP(log *eventloop.Logger) {
	if p.certs != nil {
		p.certs.reload(log)
	}
	if r, ok := p.cfg.Tokens.(token.Reloader); ok {
		what, err := r.Reload()
		if err != nil {
			log.Errorf("SIGHUP: token plugin %s: %v", p.cfg.Tokens.Name(), err)
		} else {
			log.Infof("SIGHUP: reloaded %s", what)
		}
	}
	log.Flush()
}
