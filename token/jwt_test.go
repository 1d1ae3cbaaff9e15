package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// writePEM writes der as a PEM block of the given type into dir/name.
func writePEM(t *testing.T, dir, name, blockType string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	writeFile(t, path, string(pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})))
	return path
}

func rsaKeyFiles(t *testing.T, dir, prefix string) (key *rsa.PrivateKey, publicPath, privatePath string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	publicDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	publicPath = writePEM(t, dir, prefix+"public.pem", "PUBLIC KEY", publicDER)
	privatePath = writePEM(t, dir, prefix+"private.pem", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))
	return key, publicPath, privatePath
}

func signJWS(t *testing.T, alg jose.SignatureAlgorithm, key any, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	object, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	token, err := object.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func encryptJWE(t *testing.T, keyAlg jose.KeyAlgorithm, enc jose.ContentEncryption, key any, jws string) string {
	t.Helper()
	encrypter, err := jose.NewEncrypter(enc, jose.Recipient{Algorithm: keyAlg, Key: key}, (&jose.EncrypterOptions{}).WithContentType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	object, err := encrypter.Encrypt([]byte(jws))
	if err != nil {
		t.Fatal(err)
	}
	token, err := object.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// hs256 signs claims by hand, for secrets go-jose finds too short to use.
func hs256(t *testing.T, secret []byte, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256"}`)) + "." + base64.RawURLEncoding.EncodeToString(payload)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func newJWT(t *testing.T, keyPath string, logs *logRecorder) Plugin {
	t.Helper()
	p, err := New("JWTTokenApi", keyPath, logs.log)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var remote = map[string]any{"host": "remote_host", "port": 5900}

func TestJWTSigned(t *testing.T) {
	dir := t.TempDir()
	rsaKey, rsaPublic, rsaPrivate := rsaKeyFiles(t, dir, "")
	otherKey, _, _ := rsaKeyFiles(t, dir, "other-")

	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	ecPublic := writePEM(t, dir, "ec-public.pem", "PUBLIC KEY", ecDER)

	secret := make([]byte, 32)
	rand.Read(secret)
	secretPath := filepath.Join(dir, "secret.key")
	writeFile(t, secretPath, base64.RawURLEncoding.EncodeToString(secret)+"\n")
	// Python's own fixture: the text "secret_sauce" is the JWK "k", base64url of 9 bytes.
	pythonSecretPath := filepath.Join(dir, "symmetric.key")
	writeFile(t, pythonSecretPath, "secret_sauce")
	pythonSecret, _ := base64.RawURLEncoding.DecodeString("secret_sauce")

	now := time.Now().Unix()
	rs256 := signJWS(t, jose.RS256, rsaKey, remote)
	payloadOf := func(token string) string { return strings.Split(token, ".")[1] }
	forged := signJWS(t, jose.RS256, rsaKey, map[string]any{"host": "evil", "port": 1})
	parts := strings.Split(rs256, ".")
	tampered := parts[0] + "." + payloadOf(forged) + "." + parts[2]

	tests := []struct {
		name    string
		keyPath string
		token   string
		want    Target // zero: ErrNotFound
		logged  string
	}{
		{"RS256", rsaPublic, rs256, tcp("remote_host:5900"), ""},
		{"RS256 checked with the private key's public half", rsaPrivate, rs256, tcp("remote_host:5900"), ""},
		{"port as a string", rsaPublic, signJWS(t, jose.RS256, rsaKey, map[string]any{"host": "h", "port": "5901"}), tcp("h:5901"), ""},
		{"IPv6 host", rsaPublic, signJWS(t, jose.PS256, rsaKey, map[string]any{"host": "::1", "port": 5902}), tcp("[::1]:5902"), ""},
		{"ES256", ecPublic, signJWS(t, jose.ES256, ecKey, remote), tcp("remote_host:5900"), ""},
		{"HS256", secretPath, signJWS(t, jose.HS256, secret, remote), tcp("remote_host:5900"), ""},
		{"HS256 with Python's short secret", pythonSecretPath, hs256(t, pythonSecret, remote), tcp("remote_host:5900"), ""},
		{"inside nbf and exp", rsaPublic, signJWS(t, jose.RS256, rsaKey, map[string]any{"host": "h", "port": 1, "nbf": now - 60, "exp": now + 60}), tcp("h:1"), ""},

		{"bad signature", rsaPublic, tampered, Target{}, "signature"},
		{"wrong key", rsaPublic, signJWS(t, jose.RS256, otherKey, remote), Target{}, "signature"},
		{"wrong secret", secretPath, hs256(t, []byte("another secret of thirty-two byt"), remote), Target{}, "bad signature"},
		{"expired", rsaPublic, signJWS(t, jose.RS256, rsaKey, map[string]any{"host": "h", "port": 1, "exp": now - 60}), Target{}, "expired"},
		{"not valid yet", rsaPublic, signJWS(t, jose.RS256, rsaKey, map[string]any{"host": "h", "port": 1, "nbf": now + 60}), Target{}, "nbf"},
		{"exp as a string", rsaPublic, signJWS(t, jose.RS256, rsaKey, map[string]any{"host": "h", "port": 1, "exp": "99999999999"}), Target{}, "exp"},
		{"no port", rsaPublic, signJWS(t, jose.RS256, rsaKey, map[string]any{"host": "h"}), Target{}, "port"},
		{"no host", rsaPublic, signJWS(t, jose.RS256, rsaKey, map[string]any{"port": 1}), Target{}, "host"},
		{"HMAC against an RSA key", rsaPublic, signJWS(t, jose.HS256, secret, remote), Target{}, "HS256"},
		{"RSA against a secret", secretPath, rs256, Target{}, "RS256"},
		{"alg none", rsaPublic, base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + payloadOf(rs256) + ".", Target{}, "none"},
		{"not a JWT", rsaPublic, "just-a-token", Target{}, "compact"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &logRecorder{}
			p := newJWT(t, tt.keyPath, logs)
			if tt.want != (Target{}) {
				wantTarget(t, p, tt.token, tt.want)
				return
			}
			wantNotFound(t, p, tt.token)
			if !logs.contains("JWTTokenApi", tt.logged) {
				t.Errorf("no log saying %q: %q", tt.logged, logs.all())
			}
		})
	}
}

func TestJWTEncrypted(t *testing.T) {
	dir := t.TempDir()
	rsaKey, rsaPublic, rsaPrivate := rsaKeyFiles(t, dir, "")
	otherKey, _, _ := rsaKeyFiles(t, dir, "other-")
	secret := make([]byte, 32)
	rand.Read(secret)
	secretPath := filepath.Join(dir, "secret.key")
	writeFile(t, secretPath, base64.RawURLEncoding.EncodeToString(secret))

	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalECPrivateKey(ecKey)
	ecPrivate := writePEM(t, dir, "ec-private.pem", "EC PRIVATE KEY", ecDER)

	rs256 := signJWS(t, jose.RS256, rsaKey, remote)
	hs256 := signJWS(t, jose.HS256, secret, remote)
	tests := []struct {
		name    string
		keyPath string
		token   string
		found   bool
	}{
		{"RSA-OAEP-256 A256GCM", rsaPrivate, encryptJWE(t, jose.RSA_OAEP_256, jose.A256GCM, &rsaKey.PublicKey, rs256), true},
		{"RSA-OAEP A256CBC-HS512, as Python's test", rsaPrivate, encryptJWE(t, jose.RSA_OAEP, jose.A256CBC_HS512, &rsaKey.PublicKey, rs256), true},
		{"dir A256GCM with the secret", secretPath, encryptJWE(t, jose.DIRECT, jose.A256GCM, secret, hs256), true},
		{"A256KW A128CBC-HS256 with the secret", secretPath, encryptJWE(t, jose.A256KW, jose.A128CBC_HS256, secret, hs256), true},
		{"ECDH-ES+A128KW", ecPrivate, encryptJWE(t, jose.ECDH_ES_A128KW, jose.A128GCM, &ecKey.PublicKey, signJWS(t, jose.ES256, ecKey, remote)), true},

		{"encrypted to another key", rsaPrivate, encryptJWE(t, jose.RSA_OAEP_256, jose.A256GCM, &otherKey.PublicKey, rs256), false},
		{"inner JWS signed by another key", rsaPrivate, encryptJWE(t, jose.RSA_OAEP_256, jose.A256GCM, &rsaKey.PublicKey, signJWS(t, jose.RS256, otherKey, remote)), false},
		{"a public key cannot decrypt", rsaPublic, encryptJWE(t, jose.RSA_OAEP_256, jose.A256GCM, &rsaKey.PublicKey, rs256), false},
		{"plaintext is not a JWS", rsaPrivate, encryptJWE(t, jose.RSA_OAEP_256, jose.A256GCM, &rsaKey.PublicKey, `{"host":"h","port":1}`), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newJWT(t, tt.keyPath, &logRecorder{})
			if tt.found {
				wantTarget(t, p, tt.token, tcp("remote_host:5900"))
			} else {
				wantNotFound(t, p, tt.token)
			}
		})
	}
}

func TestJWTKeyRotation(t *testing.T) {
	dir := t.TempDir()
	oldKey, oldPublic, _ := rsaKeyFiles(t, dir, "old-")
	newKey, newPublic, _ := rsaKeyFiles(t, dir, "new-")
	keyPath := filepath.Join(dir, "current.pem")
	copyFile := func(from string) {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, keyPath, string(data))
	}
	copyFile(oldPublic)
	logs := &logRecorder{}
	p := newJWT(t, keyPath, logs)
	oldToken := signJWS(t, jose.RS256, oldKey, remote)
	newToken := signJWS(t, jose.RS256, newKey, remote)
	wantTarget(t, p, oldToken, tcp("remote_host:5900"))
	wantNotFound(t, p, newToken)

	copyFile(newPublic)
	wantTarget(t, p, newToken, tcp("remote_host:5900"))
	wantNotFound(t, p, oldToken)

	writeFile(t, keyPath, "-----BEGIN PUBLIC KEY-----\ngarbage\n")
	wantNotFound(t, p, newToken)
	if !logs.contains("key file", keyPath) {
		t.Errorf("a broken key file is not logged: %q", logs.all())
	}
	copyFile(newPublic)
	wantTarget(t, p, newToken, tcp("remote_host:5900"))
}

func TestJWTKeyFileErrors(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"malformed.pem": "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n",
		"notkey.pem":    string(pem.EncodeToMemory(&pem.Block{Type: "SOMETHING", Bytes: []byte("x")})),
		"notbase64.key": "not base64url!",
		"empty.key":     "\n",
	} {
		path := filepath.Join(dir, name)
		writeFile(t, path, content)
		if _, err := New("JWTTokenApi", path, nil); err == nil {
			t.Errorf("New(JWTTokenApi) with %s succeeded", name)
		}
	}
	if _, err := New("JWTTokenApi", filepath.Join(dir, "missing"), nil); err == nil {
		t.Error("New(JWTTokenApi) with a missing key file succeeded")
	}
}
