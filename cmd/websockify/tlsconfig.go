package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
)

// tlsOptions are the command line's TLS settings, as given.
type tlsOptions struct {
	cert, key        string
	certGiven        bool // --cert was on the command line (else the default self.pem)
	password         string
	passwordFlag     string // --key-password and --key-password-file as given,
	passwordFile     string // for SIGHUP to read the password again
	sslOnly          bool
	verifyClient     bool
	cafile           string
	version, ciphers string
}

// keyPasswordEnv holds the key's password out of the process list.
const keyPasswordEnv = "WEBSOCKIFY_KEY_PASSWORD"

// buildServerTLS returns the listening side's TLS config, or nil when the
// default certificate file is absent (TLS clients are then closed, plain
// ones served). An explicitly given certificate that cannot be loaded is an
// error, as is every malformed option.
func buildServerTLS(o tlsOptions) (*tls.Config, error) {
	minVersion, err := parseSSLVersion(o.version)
	if err != nil {
		return nil, err
	}
	suites, err := parseCiphers(o.ciphers)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(o.cert); err != nil && !o.certGiven && errors.Is(err, os.ErrNotExist) {
		if o.sslOnly {
			return nil, fmt.Errorf("--ssl-only given but certificate file %s not found", o.cert)
		}
		return nil, nil
	}
	cert, err := loadKeyPair(o.cert, o.key, o.password)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   minVersion,
		CipherSuites: suites,
	}
	if o.verifyClient {
		pool, err := clientCAs(o.cafile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// clientCAs reads the CA certificates client certificates must chain to; no
// file means the system's roots.
func clientCAs(cafile string) (*x509.CertPool, error) {
	if cafile == "" {
		return x509.SystemCertPool()
	}
	pemData, err := os.ReadFile(cafile)
	if err != nil {
		return nil, fmt.Errorf("--cafile: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("--cafile %s: no PEM certificate in it", cafile)
	}
	return pool, nil
}

// loadKeyPair loads the certificate chain from certFile and the private key
// from keyFile (or from certFile when keyFile is empty, as in self.pem).
// A legacy PEM-encrypted key ("Proc-Type: 4,ENCRYPTED") is decrypted with
// password; PKCS#8-encrypted keys are not, since Go's standard library
// cannot read them.
func loadKeyPair(certFile, keyFile, password string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("--cert: %v", err)
	}
	keyPEM := certPEM
	if keyFile != "" {
		if keyPEM, err = os.ReadFile(keyFile); err != nil {
			return tls.Certificate{}, fmt.Errorf("--key: %v", err)
		}
	}
	keyPEM, err = decryptKey(keyPEM, password)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("loading certificate %s: %v", certFile, err)
	}
	return cert, nil
}

// decryptKey returns the private key blocks of data with an encrypted one
// decrypted; other blocks are dropped (X509KeyPair takes the first key).
func decryptKey(data []byte, password string) ([]byte, error) {
	var out []byte
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch {
		case b.Type == "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the private key is PKCS#8-encrypted, which Go's standard library cannot decrypt; " +
				"convert it, e.g. `openssl pkey -in KEY -aes256 -traditional` (legacy PEM encryption) or `openssl pkey -in KEY` (no encryption)")
		//lint:ignore SA1019 legacy PEM encryption is what OpenSSL's -traditional keys use; the only way to read them
		case x509.IsEncryptedPEMBlock(b): //nolint:staticcheck
			if password == "" {
				return nil, fmt.Errorf("the private key is encrypted: give --key-password, --key-password-file or $%s", keyPasswordEnv)
			}
			//lint:ignore SA1019 see above
			der, err := x509.DecryptPEMBlock(b, []byte(password)) //nolint:staticcheck
			if err != nil {
				return nil, fmt.Errorf("decrypting the private key: %v", err)
			}
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: b.Type, Bytes: der})...)
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			out = append(out, pem.EncodeToMemory(b)...)
		}
	}
	if out == nil {
		return data, nil // let X509KeyPair say what is missing
	}
	return out, nil
}

// keyPassword picks the key's password: --key-password, else the first line
// of --key-password-file, else $WEBSOCKIFY_KEY_PASSWORD.
func keyPassword(flag, file string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--key-password-file: %v", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		return strings.TrimSuffix(line, "\r"), nil
	}
	return os.Getenv(keyPasswordEnv), nil
}

// parseSSLVersion maps --ssl-version to a minimum TLS version; 0 is Go's
// default (TLS 1.2 for a server).
func parseSSLVersion(v string) (uint16, error) {
	switch v {
	case "", "default":
		return 0, nil
	case "tlsv1_1":
		return tls.VersionTLS11, nil
	case "tlsv1_2":
		return tls.VersionTLS12, nil
	case "tlsv1_3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("invalid --ssl-version %q: want default, tlsv1_1, tlsv1_2 or tlsv1_3", v)
}

// opensslCiphers maps OpenSSL's names of the TLS 1.2 and older suites Go
// implements to Go's IDs. TLS 1.3 suites are not configurable in Go.
var opensslCiphers = map[string]uint16{
	"ECDHE-ECDSA-AES128-GCM-SHA256": tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-RSA-AES128-GCM-SHA256":   tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-ECDSA-AES256-GCM-SHA384": tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-RSA-AES256-GCM-SHA384":   tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-ECDSA-CHACHA20-POLY1305": tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-RSA-CHACHA20-POLY1305":   tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-ECDSA-AES128-SHA256":     tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
	"ECDHE-RSA-AES128-SHA256":       tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
	"ECDHE-ECDSA-AES128-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	"ECDHE-RSA-AES128-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	"ECDHE-ECDSA-AES256-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	"ECDHE-RSA-AES256-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	"ECDHE-RSA-DES-CBC3-SHA":        tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA,
	"AES128-GCM-SHA256":             tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	"AES256-GCM-SHA384":             tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	"AES128-SHA256":                 tls.TLS_RSA_WITH_AES_128_CBC_SHA256,
	"AES128-SHA":                    tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	"AES256-SHA":                    tls.TLS_RSA_WITH_AES_256_CBC_SHA,
	"DES-CBC3-SHA":                  tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA,
}

// parseCiphers maps an OpenSSL-style colon-separated list (Go's TLS_* names
// are accepted too) to suite IDs; nil means Go's defaults. An unknown name
// is an error rather than silently dropped.
func parseCiphers(list string) ([]uint16, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	var ids []uint16
	for _, name := range strings.FieldsFunc(list, func(r rune) bool { return r == ':' || r == ',' || r == ' ' }) {
		if id, ok := opensslCiphers[name]; ok {
			ids = append(ids, id)
			continue
		}
		if id, ok := goCipher(name); ok {
			ids = append(ids, id)
			continue
		}
		known := make([]string, 0, len(opensslCiphers))
		for k := range opensslCiphers {
			known = append(known, k)
		}
		sort.Strings(known)
		return nil, fmt.Errorf("unknown cipher %q in --ssl-ciphers (TLS 1.3 suites are not configurable in Go); known: %s",
			name, strings.Join(known, ":"))
	}
	return ids, nil
}

// goCipher looks a TLS 1.2-or-older suite up by its Go (IANA) name.
func goCipher(name string) (uint16, bool) {
	for _, list := range [][]*tls.CipherSuite{tls.CipherSuites(), tls.InsecureCipherSuites()} {
		for _, cs := range list {
			if cs.Name == name && !onlyTLS13(cs) {
				return cs.ID, true
			}
		}
	}
	return 0, false
}

func onlyTLS13(cs *tls.CipherSuite) bool {
	return len(cs.SupportedVersions) == 1 && cs.SupportedVersions[0] == tls.VersionTLS13
}
