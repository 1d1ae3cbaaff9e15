package test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// testPKI is a CA, a server certificate for 127.0.0.1 and localhost, and
// client certificates, written as PEM files to a temporary directory.
type testPKI struct {
	dir        string
	caFile     string // the CA's certificate
	certFile   string // server certificate
	keyFile    string // its key, unencrypted
	bundleFile string // server certificate and key in one file, like self.pem
	pool       *x509.CertPool
	server     tls.Certificate
	client     tls.Certificate // signed by the CA, CN "alice"
	selfSigned tls.Certificate // a client certificate nobody signed
	serverKey  *ecdsa.PrivateKey
}

// caTemplate is a test CA's certificate, valid for a day around now.
func caTemplate(cn string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	dir := t.TempDir()
	pk := &testPKI{dir: dir, pool: x509.NewCertPool()}

	caKey := newKey(t)
	caTmpl := caTemplate("websockify test CA")
	caDER := mustCert(t, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	caCert, _ := x509.ParseCertificate(caDER)
	pk.pool.AddCert(caCert)
	pk.caFile = writePEM(t, dir, "ca.pem", pemBlock("CERTIFICATE", caDER))

	pk.serverKey = newKey(t)
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	srvDER := mustCert(t, srvTmpl, caCert, &pk.serverKey.PublicKey, caKey)
	srvKeyPEM := pemBlock("EC PRIVATE KEY", mustMarshalEC(t, pk.serverKey))
	pk.certFile = writePEM(t, dir, "server.pem", pemBlock("CERTIFICATE", srvDER))
	pk.keyFile = writePEM(t, dir, "server.key", srvKeyPEM)
	pk.bundleFile = writePEM(t, dir, "self.pem", append(pemBlock("CERTIFICATE", srvDER), srvKeyPEM...))
	pk.server = tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: pk.serverKey}

	clientCert := func(serial int64, cn string, parent *x509.Certificate, signer *ecdsa.PrivateKey) tls.Certificate {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		if parent == nil {
			parent, signer = tmpl, key
		}
		der := mustCert(t, tmpl, parent, &key.PublicKey, signer)
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	pk.client = clientCert(3, "alice", caCert, caKey)
	pk.selfSigned = clientCert(4, "mallory", nil, nil)
	return pk
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustCert(t testing.TB, tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) []byte {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func mustMarshalEC(t testing.TB, k *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func writePEM(t testing.TB, dir, name string, data []byte) string {
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// clientTLS is a client config trusting the test CA, with cert (if any).
func (pk *testPKI) clientTLS(cert *tls.Certificate) *tls.Config {
	cfg := &tls.Config{RootCAs: pk.pool, ServerName: "localhost"}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

// dialTLS opens a TLS connection to the proxy and completes the handshake.
func dialTLS(p *proxy, cfg *tls.Config) (*tls.Conn, error) {
	raw, err := p.dial()
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, cfg)
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// dialWSS is dialWSE over TLS.
func dialWSS(p *proxy, cfg *tls.Config, mode string) (*wsClient, error) {
	conn, err := dialTLS(p, cfg)
	if err != nil {
		return nil, err
	}
	req := hybiReq{Protocol: mode}
	c, err := handshakeHyBi(conn, req, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// waitLog waits up to d for the proxy's stderr to contain s.
func waitLog(p *proxy, s string, d time.Duration) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if strings.Contains(p.stderr.String(), s) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return strings.Contains(p.stderr.String(), s)
}

func cryptoRandom(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// ws://, wss://, https:// and Flash policy over TLS, all on one port.
func TestTLSOnePort(t *testing.T) {
	t.Parallel()
	pk := newPKI(t)
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "--cert", pk.bundleFile)
	if !waitLog(p, "  - SSL/TLS support", 5*time.Second) {
		t.Errorf("banner lacks the TLS line:\n%s", p.stderr.String())
	}

	t.Run("ws", func(t *testing.T) {
		t.Parallel()
		c := dialWS(t, p, modeBinary)
		mustEcho(t, c, []byte("plain hello"))
	})
	for _, mode := range []string{modeBinary, modeBase64} {
		t.Run("wss-"+mode, func(t *testing.T) {
			t.Parallel()
			c, err := dialWSS(p, pk.clientTLS(nil), mode)
			if err != nil {
				t.Fatal(err)
			}
			defer c.conn.Close()
			mustEcho(t, c, []byte("tls hello"))
			mustEcho(t, c, cryptoRandom(t, 256<<10))
			if err := c.sendClose(1000, "bye"); err != nil {
				t.Fatal(err)
			}
			if code, _, _, err := c.expectClose(); err != nil || code != 1000 {
				t.Fatalf("close: code %d, err %v", code, err)
			}
		})
	}
	t.Run("hixie76-location", func(t *testing.T) {
		t.Parallel()
		conn, err := dialTLS(p, pk.clientTLS(nil))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c, err := handshakeHixie(conn, 76, "", "", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		mustEcho(t, c, []byte("hixie over tls"))
	})
	t.Run("https-get-405", func(t *testing.T) {
		t.Parallel()
		conn, err := dialTLS(p, pk.clientTLS(nil))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		got, _ := readAllFrom(conn, 10*time.Second)
		if !bytes.HasPrefix(got, []byte("HTTP/1.1 405")) {
			t.Fatalf("reply %q, want a 405", got)
		}
	})
	t.Run("flash-policy", func(t *testing.T) {
		t.Parallel()
		conn, err := dialTLS(p, pk.clientTLS(nil))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("<policy-file-request/>\x00")); err != nil {
			t.Fatal(err)
		}
		got, _ := readAllFrom(conn, 10*time.Second)
		if string(got) != policyResponse {
			t.Fatalf("got %q, want the policy", got)
		}
	})
	t.Run("log-line", func(t *testing.T) {
		t.Parallel()
		c, err := dialWSS(p, pk.clientTLS(nil), modeBinary)
		if err != nil {
			t.Fatal(err)
		}
		defer c.conn.Close()
		if !waitLog(p, "SSL/TLS (wss://) WebSocket connection", 5*time.Second) {
			t.Fatal("no wss log line")
		}
	})
}

// A target that closes ends a wss session with close 1000.
func TestTLSTargetCloses(t *testing.T) {
	t.Parallel()
	pk := newPKI(t)
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "--cert", pk.bundleFile)
	c, err := dialWSS(p, pk.clientTLS(nil), modeBinary)
	if err != nil {
		t.Fatal(err)
	}
	defer c.conn.Close()
	mustEcho(t, c, []byte("x"))
	echo.next(t, 5*time.Second).Close()
	code, reason, _, err := c.expectClose()
	if err != nil || code != 1000 || reason != "Target closed" {
		t.Fatalf("close: code %d %q, err %v", code, reason, err)
	}
}

// --ssl-only refuses ws:// and serves wss://.
func TestTLSSSLOnly(t *testing.T) {
	t.Parallel()
	pk := newPKI(t)
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "--cert", pk.certFile, "--key", pk.keyFile, "--ssl-only")
	if !waitLog(p, "Deny non-SSL/TLS connections", 5*time.Second) {
		t.Errorf("banner lacks the ssl-only line:\n%s", p.stderr.String())
	}
	if _, err := dialWSE(p, modeBinary, nil); err == nil {
		t.Fatal("plain ws client was served")
	}
	if !waitLog(p, "non-SSL connection received but disallowed", 5*time.Second) {
		t.Error("no log line for the refused plain client")
	}
	c, err := dialWSS(p, pk.clientTLS(nil), modeBinary)
	if err != nil {
		t.Fatal(err)
	}
	defer c.conn.Close()
	mustEcho(t, c, []byte("only tls"))
}

// --verify-client --cafile: only certificates the CA signed get through,
// and the CN is known to the session.
func TestTLSVerifyClient(t *testing.T) {
	t.Parallel()
	pk := newPKI(t)
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "-v", "--cert", pk.bundleFile, "--verify-client", "--cafile", pk.caFile)

	c, err := dialWSS(p, pk.clientTLS(&pk.client), modeBinary)
	if err != nil {
		t.Fatalf("client signed by the CA: %v", err)
	}
	defer c.conn.Close()
	mustEcho(t, c, []byte("verified"))
	if !waitLog(p, "client certificate CN 'alice'", 5*time.Second) {
		t.Error("CN not logged")
	}

	for name, cert := range map[string]*tls.Certificate{"none": nil, "self-signed": &pk.selfSigned} {
		// With TLS 1.3 the client learns of the refusal on its first read.
		if c, err := dialWSS(p, pk.clientTLS(cert), modeBinary); err == nil {
			c.conn.Close()
			t.Errorf("client certificate %s: accepted", name)
		}
	}
	if !waitLog(p, "TLS handshake failed", 5*time.Second) {
		t.Error("no log line for the refused client")
	}
}

// A client that stalls mid-handshake or sends garbage after 0x16 costs only
// its own goroutine; an SSLv2-style hello is closed cleanly.
func TestTLSBadClientsDoNotBlock(t *testing.T) {
	t.Parallel()
	pk := newPKI(t)
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "--cert", pk.bundleFile)

	bad := map[string][]byte{
		"stalled":  {0x16, 0x03, 0x01, 0x02, 0x00},
		"garbage":  append([]byte{0x16}, []byte("garbage that is no TLS record at all\r\n\r\n")...),
		"sslv2":    {0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10},
		"stalled2": {0x16, 0x03, 0x01},
	}
	conns := map[string]net.Conn{}
	for name, first := range bad {
		conn, err := p.dial()
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write(first); err != nil {
			t.Fatal(err)
		}
		conns[name] = conn
	}

	start := time.Now()
	c, err := dialWSS(p, pk.clientTLS(nil), modeBinary)
	if err != nil {
		t.Fatal(err)
	}
	defer c.conn.Close()
	mustEcho(t, c, []byte("not delayed"))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("wss client took %v while bad clients were open", d)
	}

	for _, name := range []string{"garbage", "sslv2"} {
		if err := expectEOF(conns[name], conns[name], 5*time.Second); err != nil {
			// An alert before the close is fine too: read past it.
			if _, err2 := io.ReadAll(io.LimitReader(conns[name], 1<<10)); err2 != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
	mustEcho(t, c, []byte("still serving"))
}

// No cert file at the default path: TLS clients are closed, plain served.
func TestTLSNoDefaultCert(t *testing.T) {
	t.Parallel()
	pk := newPKI(t)
	echo := startEcho(t)
	// The proxy runs in the test's directory, which has no self.pem.
	p := startProxy(t, echo.addr)
	// The banner goes out before the port is bound, but the pipe that
	// carries it to the test may lag behind the connection that found the
	// port open.
	if !waitLog(p, "No SSL/TLS support (no cert file)", 5*time.Second) {
		t.Errorf("banner:\n%s", p.stderr.String())
	}
	if _, err := dialTLS(p, pk.clientTLS(nil)); err == nil {
		t.Fatal("TLS handshake succeeded without a certificate")
	}
	if !waitLog(p, "SSL connection but", 5*time.Second) {
		t.Error("no log line for the closed TLS client")
	}
	c := dialWS(t, p, modeBinary)
	mustEcho(t, c, []byte("plain still works"))
}

// --ssl-target verifies the target's certificate against the system roots.
func TestTLSSSLTarget(t *testing.T) {
	t.Parallel()
	pk := newPKI(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pk.server}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	target := ln.Addr().String()

	t.Run("untrusted", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, target, "--ssl-target")
		c := dialWS(t, p, modeBinary)
		code, _, _, err := c.expectClose()
		if err != nil || code != 1011 {
			t.Fatalf("close: code %d, err %v; want 1011", code, err)
		}
		if !waitLog(p, "certificate", 5*time.Second) {
			t.Errorf("the log does not say why:\n%s", p.stderr.String())
		}
	})
	t.Run("trusted", func(t *testing.T) {
		t.Parallel()
		p := launchProxy(t, proxyConfig{Args: []string{"--ssl-target", target}, Env: []string{"SSL_CERT_FILE=" + pk.caFile}})
		c := dialWS(t, p, modeBinary)
		mustEcho(t, c, []byte("to a TLS target"))
		mustEcho(t, c, cryptoRandom(t, 64<<10))
	})
}

// --ssl-version tlsv1_3 refuses a TLS 1.2 client.
func TestTLSMinVersion(t *testing.T) {
	t.Parallel()
	pk := newPKI(t)
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "--cert", pk.bundleFile, "--ssl-version", "tlsv1_3")
	old := pk.clientTLS(nil)
	old.MaxVersion = tls.VersionTLS12
	if c, err := dialTLS(p, old); err == nil {
		c.Close()
		t.Fatal("TLS 1.2 client accepted with --ssl-version tlsv1_3")
	}
	c, err := dialWSS(p, pk.clientTLS(nil), modeBinary)
	if err != nil {
		t.Fatal(err)
	}
	defer c.conn.Close()
	mustEcho(t, c, []byte("tls 1.3"))
}

// --ssl-ciphers restricts TLS 1.2 suites; an unknown name is a usage error.
func TestTLSCiphers(t *testing.T) {
	t.Parallel()
	pk := newPKI(t)
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "--cert", pk.bundleFile, "--ssl-version", "tlsv1_2",
		"--ssl-ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384")
	cfg := pk.clientTLS(nil)
	cfg.MaxVersion = tls.VersionTLS12
	c, err := dialTLS(p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ConnectionState().CipherSuite; got != tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 {
		t.Errorf("suite %s", tls.CipherSuiteName(got))
	}
	c.Close()
	cfg.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	if c, err := dialTLS(p, cfg); err == nil {
		c.Close()
		t.Error("a suite outside --ssl-ciphers was negotiated")
	}

	r := runCLI(t, 10*time.Second, "--cert", pk.bundleFile, "--ssl-ciphers", "HIGH:!aNULL", "6080", "127.0.0.1:5900")
	if r.code != 2 || !strings.Contains(r.stderr, "unknown cipher") {
		t.Errorf("unknown cipher: exit %d, stderr %q", r.code, r.stderr)
	}
}

// A password-encrypted PEM key is read with --key-password-file or the
// environment; a missing or wrong password is a start-up error.
func TestTLSEncryptedKey(t *testing.T) {
	t.Parallel()
	pk := newPKI(t)
	const password = "s3cret pass"
	//lint:ignore SA1019 legacy PEM encryption is what the proxy must read
	block, err := x509.EncryptPEMBlock(rand.Reader, "EC PRIVATE KEY", mustMarshalEC(t, pk.serverKey), []byte(password), x509.PEMCipherAES256) //nolint:staticcheck
	if err != nil {
		t.Fatal(err)
	}
	keyFile := writePEM(t, pk.dir, "enc.key", pem.EncodeToMemory(block))
	pwFile := writePEM(t, pk.dir, "pw.txt", []byte(password+"\n"))
	echo := startEcho(t)

	t.Run("password-file", func(t *testing.T) {
		t.Parallel()
		p := startProxy(t, echo.addr, "--cert", pk.certFile, "--key", keyFile, "--key-password-file", pwFile)
		c, err := dialWSS(p, pk.clientTLS(nil), modeBinary)
		if err != nil {
			t.Fatal(err)
		}
		defer c.conn.Close()
		mustEcho(t, c, []byte("decrypted"))
	})
	t.Run("env", func(t *testing.T) {
		t.Parallel()
		p := launchProxy(t, proxyConfig{
			Args: []string{"--cert", pk.certFile, "--key", keyFile, echo.addr},
			Env:  []string{"WEBSOCKIFY_KEY_PASSWORD=" + password},
		})
		c, err := dialWSS(p, pk.clientTLS(nil), modeBinary)
		if err != nil {
			t.Fatal(err)
		}
		defer c.conn.Close()
		mustEcho(t, c, []byte("decrypted"))
	})
	for name, args := range map[string][]string{
		"no-password":    {"--cert", pk.certFile, "--key", keyFile},
		"wrong-password": {"--cert", pk.certFile, "--key", keyFile, "--key-password", "nope"},
	} {
		r := runCLI(t, 10*time.Second, append(args, "6080", "127.0.0.1:5900")...)
		if r.code != 2 || !strings.Contains(r.stderr, "key") {
			t.Errorf("%s: exit %d, stderr %q", name, r.code, r.stderr)
		}
	}
	pkcs8 := writePEM(t, pk.dir, "pkcs8.key", pemBlock("ENCRYPTED PRIVATE KEY", []byte("opaque")))
	r := runCLI(t, 10*time.Second, "--cert", pk.certFile, "--key", pkcs8, "--key-password", "x", "6080", "127.0.0.1:5900")
	if r.code != 2 || !strings.Contains(r.stderr, "PKCS#8") {
		t.Errorf("PKCS#8 key: exit %d, stderr %q", r.code, r.stderr)
	}
}

// A wss session gets heartbeat pings, answers the client's pings, and with
// --run-once ends the process when it closes, like a plain one.
func TestTLSSessionLifecycle(t *testing.T) {
	t.Parallel()
	pk := newPKI(t)
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "--cert", pk.bundleFile, "--heartbeat", "1", "--run-once")
	c, err := dialWSS(p, pk.clientTLS(nil), modeBinary)
	if err != nil {
		t.Fatal(err)
	}
	defer c.conn.Close()
	mustEcho(t, c, []byte("hb"))

	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := readFrame(c.br)
	if err != nil || f.op != ws.OpPing {
		t.Fatalf("want a heartbeat ping, got op %v err %v", f.op, err)
	}
	if err := c.write(masked(ws.OpPing, []byte("are you there"))); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := c.nextFrame()
		if err != nil {
			t.Fatal(err)
		}
		if f.op == ws.OpPong {
			if string(f.payload) != "are you there" {
				t.Fatalf("pong payload %q", f.payload)
			}
			break
		}
		if f.op != ws.OpPing {
			t.Fatalf("unexpected frame op %v", f.op)
		}
	}
	mustEcho(t, c, []byte("still alive"))
	if !p.running() {
		t.Fatal("exited while the session was open")
	}
	if err := c.sendClose(1000, ""); err != nil {
		t.Fatal(err)
	}
	if code, _, _, err := c.expectClose(); err != nil || code != 1000 {
		t.Fatalf("close reply %d, %v", code, err)
	}
	code, exited := p.waitExit(10 * time.Second)
	if !exited || code != 0 {
		t.Fatalf("--run-once: exited %v with code %d", exited, code)
	}
}

// Handed-off TLS sessions count against the open-file cap like plain ones:
// under `ulimit -n 128`, 150 wss clients at once leave the proxy running,
// the surplus refused, and a new client is served once they are gone.
func TestTLSOpenFileLimit(t *testing.T) {
	t.Parallel()
	const limit, clients = 128, 150
	pk := newPKI(t)
	echo := startEcho(t)
	p := launchProxy(t, proxyConfig{Args: []string{"--cert", pk.bundleFile, echo.addr}, Ulimit: limit})

	held := wssBurst(p, pk, clients)
	t.Logf("%d of %d wss clients held", len(held), clients)
	if !p.running() {
		t.Fatalf("websockify exited (%v)", p.state)
	}
	if len(held) == 0 || len(held) == clients {
		t.Errorf("%d of %d wss clients held under ulimit -n %d: want some, not all", len(held), clients, limit)
	}
	// A session with its target up holds two fds and gives back the third
	// it was admitted with, so a second burst finds room for a few more.
	more := wssBurst(p, pk, 50)
	t.Logf("%d of 50 more held", len(more))
	if len(more) == 0 {
		t.Errorf("no room for more wss clients: the spare fd of each held session was not given back")
	}
	held = append(held, more...)
	for _, c := range held {
		mustEcho(t, c, []byte("still held"))
		c.conn.Close()
	}
	var err error
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		var c *wsClient
		if c, err = dialWSS(p, pk.clientTLS(nil), modeBinary); err == nil {
			err = c.echo([]byte("after"))
			c.conn.Close()
			if err == nil {
				break
			}
		}
	}
	if err != nil {
		t.Fatalf("no new wss client served after the others left: %v", err)
	}
}

// wssBurst opens n wss clients at once and returns those that echo.
func wssBurst(p *proxy, pk *testPKI, n int) []*wsClient {
	results := make(chan *wsClient, n)
	for range n {
		go func() {
			c, err := dialWSS(p, pk.clientTLS(nil), modeBinary)
			if err != nil {
				results <- nil
				return
			}
			if c.echo([]byte("held")) != nil {
				c.conn.Close()
				c = nil
			}
			results <- c
		}()
	}
	var held []*wsClient
	for range n {
		if c := <-results; c != nil {
			held = append(held, c)
		}
	}
	return held
}

// Blocking I/O is the TLS path's backpressure: a wss client that stops
// reading while the target floods costs the proxy no growing memory, and
// every byte arrives in order once it reads again.
func TestTLSBackpressure(t *testing.T) {
	t.Parallel()
	const stride = 251 // the target sends byte i as i % stride
	pk := newPKI(t)
	flood := startTarget(t, "tcp", "127.0.0.1:0", func(c *tconn) {
		buf := make([]byte, 64*stride)
		for i := range buf {
			buf[i] = byte(i % stride)
		}
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	p := startProxy(t, flood.addr, "--cert", pk.bundleFile)
	c, err := dialWSS(p, pk.clientTLS(nil), modeBinary)
	if err != nil {
		t.Fatal(err)
	}
	defer c.conn.Close()
	m := watchRSS(p.pid())
	time.Sleep(2 * time.Second) // not reading
	for n := 0; n < 32<<20; {
		msg, err := c.readMessage()
		if err != nil {
			t.Fatalf("after %d bytes: %v", n, err)
		}
		for _, b := range msg {
			if b != byte(n%stride) {
				t.Fatalf("byte %d is %d, want %d", n, b, n%stride)
			}
			n++
		}
	}
	m.finish()
	m.check(t, p)
}
