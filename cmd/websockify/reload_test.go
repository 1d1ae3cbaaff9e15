package main

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"
)

func TestParseShutdownTimeout(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want time.Duration
		bad  bool
	}{
		{in: 5, want: 5 * time.Second},
		{in: 0, want: 0},
		{in: 0.25, want: 250 * time.Millisecond},
		{in: -1, bad: true},
		{in: 1e12, bad: true},
	} {
		got, err := parseShutdownTimeout(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("parseShutdownTimeout(%v) = %v, %v", tc.in, got, err)
		}
	}
}

func TestShutdownTimeoutDefault(t *testing.T) {
	opts, err := parseArgs([]string{"6080", "127.0.0.1:5900"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer opts.Log.Close()
	if opts.ShutdownTimeout != 5*time.Second {
		t.Errorf("default --shutdown-timeout %v, want 5s (what SIGTERM waited before the option)", opts.ShutdownTimeout)
	}
}

func TestDescribeCert(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	leaf := &x509.Certificate{
		Subject: pkix.Name{CommonName: "vnc.example"}, SerialNumber: big.NewInt(0x1f),
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(90 * 24 * time.Hour),
	}
	desc, warn := describeCert(tls.Certificate{Leaf: leaf}, now)
	if want := `CN "vnc.example", serial 1f, expires 2027-02-25T12:00:00Z`; desc != want || warn {
		t.Errorf("valid: %q %v, want %q", desc, warn, want)
	}
	if desc, warn := describeCert(tls.Certificate{Leaf: leaf}, now.Add(100*24*time.Hour)); !warn || !strings.Contains(desc, "expired") {
		t.Errorf("expired: %q %v", desc, warn)
	}
	if desc, warn := describeCert(tls.Certificate{Leaf: leaf}, now.Add(-2*time.Hour)); !warn || !strings.Contains(desc, "not valid before") {
		t.Errorf("not yet valid: %q %v", desc, warn)
	}
}

// The served config hands each handshake the current one.
func TestServeTLSSwaps(t *testing.T) {
	first := &tls.Config{ServerName: "first"}
	st, served := serveTLS(first, tlsOptions{})
	got, err := served.GetConfigForClient(&tls.ClientHelloInfo{})
	if err != nil || got != first {
		t.Fatalf("before a reload: %v, %v", got, err)
	}
	second := &tls.Config{ServerName: "second"}
	st.current.Store(second)
	if got, _ := served.GetConfigForClient(&tls.ClientHelloInfo{}); got != second {
		t.Errorf("after a swap: %v", got)
	}
}
