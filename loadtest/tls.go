package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"time"
)

// wss:// support (-tls, or a wss:// -proxy URL): the session's socket is
// wrapped in a TLS client before the WebSocket handshake. The proxy's
// certificate is not verified, since a benchmark's certificate is
// self-signed and all traffic stays on loopback anyway.

// startTLS runs the client handshake on conn.
func startTLS(ctx context.Context, conn net.Conn) (net.Conn, error) {
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // see above
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return tc, nil
}

// selfSignedPEM writes a fresh self-signed ECDSA P-256 certificate for
// 127.0.0.1 and localhost, with its key, to one PEM file (the form --cert
// takes), removed at the end, and returns its path.
func selfSignedPEM() (string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(30 * 24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp("", "loadtest-cert-*.pem")
	if err != nil {
		return "", err
	}
	defer f.Close()
	atCleanup(func() { os.Remove(f.Name()) })
	if err := pem.Encode(f, &pem.Block{Type: "CERTIFICATE", Bytes: der}); err != nil {
		return "", err
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}); err != nil {
		return "", err
	}
	return f.Name(), nil
}
