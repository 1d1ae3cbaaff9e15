package test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SIGHUP reloads (certificate, key, key password file, token files) and
// --shutdown-timeout, through the real binary. A reload applies to new
// sessions: open wss sessions keep echoing over the certificate they
// started with, new handshakes present the new one, and a bad new one
// leaves the old one served, with a log line saying why.

// reloadCA issues server certificates for localhost and 127.0.0.1 that a
// client trusting pool accepts; each has its own serial and CN, which tell
// them apart in a handshake.
type reloadCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newReloadCA(t *testing.T) *reloadCA {
	key := newKey(t)
	tmpl := caTemplate("reload test CA")
	cert, err := x509.ParseCertificate(mustCert(t, tmpl, tmpl, &key.PublicKey, key))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &reloadCA{cert: cert, key: key, pool: pool}
}

// issue returns a server certificate's PEM and its key's PEM.
func (ca *reloadCA) issue(t *testing.T, serial int64, cn string) (certPEM []byte, key *ecdsa.PrivateKey) {
	key = newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	return pemBlock("CERTIFICATE", mustCert(t, tmpl, ca.cert, &key.PublicKey, ca.key)), key
}

func (ca *reloadCA) client() *tls.Config {
	return &tls.Config{RootCAs: ca.pool, ServerName: "localhost"}
}

// writeAtomically replaces path as deployment tools do: a new file renamed
// over the old.
// install issues a certificate (serial, CN cn) and puts it and its key in
// place, each file swapped whole.
func (ca *reloadCA) install(t *testing.T, certPath, keyPath string, serial int64, cn string) {
	t.Helper()
	cert, key := ca.issue(t, serial, cn)
	writeAtomically(t, certPath, cert)
	writeAtomically(t, keyPath, pemBlock("EC PRIVATE KEY", mustMarshalEC(t, key)))
}

func writeAtomically(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// servedSerial makes a new TLS handshake and returns the serial and CN of
// the certificate the proxy presented.
func servedSerial(t *testing.T, p *proxy, cfg *tls.Config) (int64, string) {
	t.Helper()
	c, err := dialTLS(p, cfg)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer c.Close()
	leaf := c.ConnectionState().PeerCertificates[0]
	return leaf.SerialNumber.Int64(), leaf.Subject.CommonName
}

func sessionSerial(c *wsClient) int64 {
	return c.conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// waitLogCount waits up to d until stderr holds s at least n times.
func waitLogCount(p *proxy, s string, n int, d time.Duration) bool {
	end := time.Now().Add(d)
	for {
		if strings.Count(p.stderr.String(), s) >= n {
			return true
		}
		if time.Now().After(end) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hup(t *testing.T, p *proxy) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
}

// openWSS opens n wss sessions, each proven by an echo.
func openWSS(t *testing.T, p *proxy, cfg *tls.Config, n int) []*wsClient {
	t.Helper()
	var list []*wsClient
	for range n {
		c, err := dialWSS(p, cfg, modeBinary)
		if err != nil {
			t.Fatalf("wss session: %v", err)
		}
		t.Cleanup(func() { c.conn.Close() })
		mustEcho(t, c, []byte("before the reload"))
		list = append(list, c)
	}
	return list
}

// stillEcho checks that sessions opened before a reload carry on over the
// certificate they started with.
func stillEcho(t *testing.T, sessions []*wsClient, serial int64, msg string) {
	t.Helper()
	for i, c := range sessions {
		mustEcho(t, c, []byte(msg))
		if got := sessionSerial(c); got != serial {
			t.Errorf("open session %d: serial %d, want %d", i, got, serial)
		}
	}
}

func TestReloadCertificate(t *testing.T) {
	t.Parallel()
	ca := newReloadCA(t)
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca.install(t, certPath, keyPath, 101, "first")
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "--cert", certPath, "--key", keyPath)
	client := ca.client()

	sessions := openWSS(t, p, client, 5)
	if serial, cn := servedSerial(t, p, client); serial != 101 || cn != "first" {
		t.Fatalf("served serial %d CN %q, want 101 first", serial, cn)
	}

	// A new certificate and key: new handshakes get them, open sessions
	// carry on with the old.
	cert2, key2 := ca.issue(t, 102, "second")
	writeAtomically(t, keyPath, pemBlock("EC PRIVATE KEY", mustMarshalEC(t, key2)))
	writeAtomically(t, certPath, cert2)
	hup(t, p)
	if !waitLog(p, `SIGHUP: reloaded certificate `+certPath+` (CN "second", serial 66, expires `, 5*time.Second) {
		t.Fatalf("no reload line:\n%s", p.stderr.String())
	}
	if serial, cn := servedSerial(t, p, client); serial != 102 || cn != "second" {
		t.Errorf("after SIGHUP: served serial %d CN %q, want 102 second", serial, cn)
	}
	stillEcho(t, sessions, 101, "after the reload")
	fresh := openWSS(t, p, client, 2)
	stillEcho(t, fresh, 102, "a new session")

	// Bad new files keep the second certificate served, each with one line
	// saying why.
	cert3, _ := ca.issue(t, 103, "third")
	for i, bad := range []struct {
		name, why string
		apply     func()
	}{
		{"a key that does not match", "private key does not match public key", func() { writeAtomically(t, certPath, cert3) }},
		{"not PEM", "failed to find any PEM data", func() { writeAtomically(t, certPath, []byte("not a certificate\n")) }},
		{"missing", "no such file", func() {
			if err := os.Remove(certPath); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		bad.apply()
		hup(t, p)
		if !waitLogCount(p, "SIGHUP: keeping the old certificate: ", i+1, 5*time.Second) {
			t.Fatalf("%s: no line keeping the old certificate:\n%s", bad.name, p.stderr.String())
		}
		lines := strings.Split(p.stderr.String(), "\n")
		var last string
		for _, l := range lines {
			if strings.HasPrefix(l, "SIGHUP: keeping the old certificate: ") {
				last = l
			}
		}
		if !strings.Contains(last, bad.why) {
			t.Errorf("%s: %q does not say %q", bad.name, last, bad.why)
		}
		if serial, _ := servedSerial(t, p, client); serial != 102 {
			t.Errorf("%s: served serial %d, want the old 102", bad.name, serial)
		}
	}
	stillEcho(t, sessions, 101, "after the bad reloads")
	stillEcho(t, fresh, 102, "after the bad reloads")
	if !p.running() {
		t.Fatal("the proxy stopped")
	}
}

// An encrypted key whose password changes with it: SIGHUP reads
// --key-password-file again.
func TestReloadKeyPasswordFile(t *testing.T) {
	t.Parallel()
	ca := newReloadCA(t)
	dir := t.TempDir()
	certPath, keyPath, pwPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "pw")
	install := func(serial int64, password string) {
		cert, key := ca.issue(t, serial, "encrypted")
		//lint:ignore SA1019 legacy PEM encryption is what the proxy must read
		block, err := x509.EncryptPEMBlock(rand.Reader, "EC PRIVATE KEY", mustMarshalEC(t, key), []byte(password), x509.PEMCipherAES256) //nolint:staticcheck
		if err != nil {
			t.Fatal(err)
		}
		writeAtomically(t, keyPath, pem.EncodeToMemory(block))
		writeAtomically(t, pwPath, []byte(password+"\n"))
		writeAtomically(t, certPath, cert)
	}
	install(201, "first password")
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "--cert", certPath, "--key", keyPath, "--key-password-file", pwPath)
	sessions := openWSS(t, p, ca.client(), 2)

	install(202, "second password")
	hup(t, p)
	if !waitLog(p, "SIGHUP: reloaded certificate "+certPath, 5*time.Second) {
		t.Fatalf("no reload line:\n%s", p.stderr.String())
	}
	if serial, _ := servedSerial(t, p, ca.client()); serial != 202 {
		t.Errorf("served serial %d, want 202", serial)
	}
	// A password file that no longer opens the key: the old one stays.
	writeAtomically(t, pwPath, []byte("wrong\n"))
	hup(t, p)
	if !waitLog(p, "SIGHUP: keeping the old certificate: decrypting the private key", 5*time.Second) {
		t.Fatalf("no line keeping the old certificate:\n%s", p.stderr.String())
	}
	if serial, _ := servedSerial(t, p, ca.client()); serial != 202 {
		t.Errorf("served serial %d, want 202", serial)
	}
	stillEcho(t, sessions, 201, "still here")
}

// issueClient returns a client certificate signed by ca.
func (ca *reloadCA) issueClient(t *testing.T, serial int64, cn string) tls.Certificate {
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return tls.Certificate{Certificate: [][]byte{mustCert(t, tmpl, ca.cert, &key.PublicKey, ca.key)}, PrivateKey: key}
}

// --verify-client: SIGHUP reads --cafile again, so clients of a new CA get
// in and those of the old one no longer do; sessions already open stay.
func TestReloadClientCAs(t *testing.T) {
	t.Parallel()
	server, oldCA, newCA := newReloadCA(t), newReloadCA(t), newReloadCA(t)
	dir := t.TempDir()
	certPath, keyPath, caPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
	cert, key := server.issue(t, 401, "server")
	writeAtomically(t, certPath, cert)
	writeAtomically(t, keyPath, pemBlock("EC PRIVATE KEY", mustMarshalEC(t, key)))
	writeAtomically(t, caPath, pemBlock("CERTIFICATE", oldCA.cert.Raw))
	echo := startEcho(t)
	p := startProxy(t, echo.addr, "--cert", certPath, "--key", keyPath, "--verify-client", "--cafile", caPath)
	withCert := func(c tls.Certificate) *tls.Config {
		cfg := server.client()
		cfg.Certificates = []tls.Certificate{c}
		return cfg
	}
	oldClient, newClient := withCert(oldCA.issueClient(t, 402, "old")), withCert(newCA.issueClient(t, 403, "new"))
	sessions := openWSS(t, p, oldClient, 2)
	if _, err := dialWSS(p, newClient, modeBinary); err == nil {
		t.Fatal("a client of the new CA got in before the reload")
	}

	writeAtomically(t, caPath, pemBlock("CERTIFICATE", newCA.cert.Raw))
	hup(t, p)
	if !waitLog(p, "SIGHUP: reloaded the CAs client certificates must chain to, from "+caPath, 5*time.Second) {
		t.Fatalf("no reload line:\n%s", p.stderr.String())
	}
	c, err := dialWSS(p, newClient, modeBinary)
	if err != nil {
		t.Fatalf("a client of the new CA after the reload: %v", err)
	}
	defer c.conn.Close()
	mustEcho(t, c, []byte("new CA"))
	if c, err := dialWSS(p, oldClient, modeBinary); err == nil {
		c.conn.Close()
		t.Error("a client of the old CA still gets in after the reload")
	}
	stillEcho(t, sessions, 401, "old client, open before the reload")
}

// --workers 2: SIGHUP to the parent reaches both workers, each swaps its
// certificate, and every new handshake, whichever worker takes it, presents
// the new one.
func TestReloadCertificateWorkers(t *testing.T) {
	t.Parallel()
	ca := newReloadCA(t)
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca.install(t, certPath, keyPath, 301, "first")
	echo := startEcho(t)
	p := launchProxy(t, proxyConfig{Args: []string{"--workers", "2", "--cert", certPath, "--key", keyPath, echo.addr}})
	sessions := openWSS(t, p, ca.client(), 6)

	cert2, key2 := ca.issue(t, 302, "second")
	writeAtomically(t, keyPath, pemBlock("EC PRIVATE KEY", mustMarshalEC(t, key2)))
	writeAtomically(t, certPath, cert2)
	hup(t, p)
	if !waitLogCount(p, "SIGHUP: reloaded certificate "+certPath, 2, 5*time.Second) {
		t.Fatalf("not both workers reloaded:\n%s", p.stderr.String())
	}
	for i := range 30 {
		if serial, _ := servedSerial(t, p, ca.client()); serial != 302 {
			t.Fatalf("handshake %d after SIGHUP: serial %d, want 302", i, serial)
		}
	}
	stillEcho(t, sessions, 301, "after the reload")
}

// TokenFile and ReadOnlyTokenFile re-read on SIGHUP; ReadOnlyTokenFile only
// then, and it keeps its tokens if its file is gone.
func TestReloadTokenFiles(t *testing.T) {
	t.Parallel()
	addrs := namedTargets(t, "vm1", "vm2")
	t.Run("ReadOnlyTokenFile", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "tokens")
		writeFile(t, path, "a: "+addrs["vm1"]+"\n")
		p := launchProxy(t, proxyConfig{Args: []string{"--token-plugin", "ReadOnlyTokenFile", "--token-source", path}})
		expectTarget(t, p, nil, "a", "vm1")
		writeFile(t, path, "a: "+addrs["vm2"]+"\nb: "+addrs["vm1"]+"\n")
		expectTarget(t, p, nil, "a", "vm1") // read-only until SIGHUP
		expectRefused(t, p, nil, "/?token=b", 403, "")

		hup(t, p)
		if !waitLog(p, "SIGHUP: reloaded ReadOnlyTokenFile "+path+": 2 tokens", 5*time.Second) {
			t.Fatalf("no reload line:\n%s", p.stderr.String())
		}
		expectTarget(t, p, nil, "a", "vm2")
		expectTarget(t, p, nil, "b", "vm1")

		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		hup(t, p)
		if !waitLog(p, "keeping the 2 tokens read before", 5*time.Second) {
			t.Fatalf("no line keeping the tokens:\n%s", p.stderr.String())
		}
		expectTarget(t, p, nil, "b", "vm1")
	})
	t.Run("TokenFile", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "one"), "a: "+addrs["vm1"]+"\n")
		p := launchProxy(t, proxyConfig{Args: []string{"--token-plugin", "TokenFile", "--token-source", dir}})
		expectTarget(t, p, nil, "a", "vm1")
		writeFile(t, filepath.Join(dir, "two"), "b: "+addrs["vm2"]+"\n")
		hup(t, p)
		if !waitLog(p, "SIGHUP: reloaded TokenFile "+dir+": 2 tokens in 2 files", 5*time.Second) {
			t.Fatalf("no reload line:\n%s", p.stderr.String())
		}
		expectTarget(t, p, nil, "b", "vm2")
	})
}

// --shutdown-timeout bounds how long SIGTERM waits for a session that does
// not close: here a client that reads nothing while its target streams, so
// its 1001 waits behind a full socket (up to the default 5 s), or, if it
// got out, the proxy waits for the client's end of the connection (2 s).
func TestShutdownTimeoutFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		args     []string
		min, max time.Duration
	}{
		{"1s", []string{"--shutdown-timeout", "1"}, 900 * time.Millisecond, 1800 * time.Millisecond},
		{"0", []string{"--shutdown-timeout", "0"}, 0, 800 * time.Millisecond},
		// Three processes to end on a loaded machine: this one checks that
		// the parent exits with its workers, not after a wait of its own.
		{"1s workers", []string{"--shutdown-timeout", "1", "--workers", "2"}, 900 * time.Millisecond, 3500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tg := shutdownTarget(t)
			// A race-detector build (WEBSOCKIFY_TEST_RACE) would otherwise
			// sleep a second at exit, in each process.
			env := []string{strings.TrimSpace("GORACE=" + os.Getenv("GORACE") + " atexit_sleep_ms=0")}
			p := launchProxy(t, proxyConfig{Args: append(append([]string{}, tc.args...), tg.addr), Env: env})
			c, err := dialWSE(p, modeBinary, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.conn.Close()
			if err := c.send([]byte("stream")); err != nil {
				t.Fatal(err)
			}
			if !tg.waitActive(1, 5*time.Second) {
				t.Fatal("the session did not reach the target")
			}
			time.Sleep(500 * time.Millisecond) // the socket buffers fill up
			start := time.Now()
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			code, ok := p.waitExit(10 * time.Second)
			took := time.Since(start)
			if !ok {
				t.Fatalf("still running 10s after SIGTERM")
			}
			if code != 0 {
				t.Errorf("exit %d, want 0", code)
			}
			t.Logf("exited %v after SIGTERM", took)
			if took < tc.min || took > tc.max {
				t.Errorf("exited %v after SIGTERM, want between %v and %v", took, tc.min, tc.max)
			}
		})
	}
}
