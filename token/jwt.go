package token

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

var (
	jwsAlgorithms = []jose.SignatureAlgorithm{
		jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
		jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
	}
	jweKeyAlgorithms = []jose.KeyAlgorithm{
		jose.RSA1_5, jose.RSA_OAEP, jose.RSA_OAEP_256,
		jose.A128KW, jose.A192KW, jose.A256KW, jose.A128GCMKW, jose.A192GCMKW, jose.A256GCMKW,
		jose.DIRECT, jose.ECDH_ES, jose.ECDH_ES_A128KW, jose.ECDH_ES_A192KW, jose.ECDH_ES_A256KW,
	}
	jweContentEncryptions = []jose.ContentEncryption{
		jose.A128GCM, jose.A192GCM, jose.A256GCM,
		jose.A128CBC_HS256, jose.A192CBC_HS384, jose.A256CBC_HS512,
	}
)

// jwtKey is what the key file holds.
type jwtKey struct {
	verify  any    // public key checking JWS signatures; nil for a secret
	decrypt any    // private key or secret opening JWEs; nil for a public key
	secret  []byte // HMAC secret; nil for a PEM key
}

// jwtKeyState is the key as last read, or why it could not be.
type jwtKeyState struct {
	id      fileID
	settled bool
	key     *jwtKey
	err     error
}

// jwtTokenAPI is JWTTokenApi: the token itself is a signed (JWS), or
// encrypted-then-signed (JWE around a JWS), JWT carrying host and port.
type jwtTokenAPI struct {
	path    string
	log     func(string)
	now     func() time.Time
	current atomic.Pointer[jwtKeyState]
	reload  sync.Mutex
}

func newJWTTokenAPI(source string, log func(string)) (Plugin, error) {
	p := &jwtTokenAPI{path: source, log: log, now: time.Now}
	state := p.loadKey(nil)
	if state.err != nil {
		return nil, fmt.Errorf("JWTTokenApi: %w", state.err)
	}
	p.current.Store(state)
	return p, nil
}

func (p *jwtTokenAPI) Name() string { return "JWTTokenApi" }
func (p *jwtTokenAPI) Sockets() int { return 0 }
func (p *jwtTokenAPI) Close() error { return nil }

// key returns the key file's current key, re-reading the file when its
// stat changed so that a rotated key applies without a restart.
func (p *jwtTokenAPI) key() *jwtKeyState {
	state := p.current.Load()
	if id, _ := statID(p.path); id == state.id && state.settled {
		return state
	}
	p.reload.Lock()
	defer p.reload.Unlock()
	state = p.current.Load()
	if id, _ := statID(p.path); id != state.id || !state.settled {
		state = p.loadKey(state)
		p.current.Store(state)
	}
	return state
}

func (p *jwtTokenAPI) loadKey(prev *jwtKeyState) *jwtKeyState {
	readStart := time.Now()
	id, _ := statID(p.path)
	state := &jwtKeyState{id: id, settled: settledBy(id, readStart)}
	data, err := os.ReadFile(p.path)
	if err == nil {
		state.key, err = parseJWTKey(data)
	}
	if err != nil {
		state.err = fmt.Errorf("key file %s: %w", p.path, err)
		if prev != nil && (prev.err == nil || prev.err.Error() != state.err.Error()) {
			p.log(fmt.Sprintf("JWTTokenApi: %v; tokens are refused until it is fixed", state.err))
		}
		return state
	}
	if state.key.secret != nil && len(state.key.secret) < 32 && (prev == nil || prev.id != id) {
		p.log(fmt.Sprintf("JWTTokenApi: the secret in %s is only %d bytes; HS256 wants at least 32", p.path, len(state.key.secret)))
	}
	return state
}

// parseJWTKey reads a PEM public key (PKIX, PKCS#1, or a certificate's),
// a PEM private key (PKCS#1, SEC 1, PKCS#8), or else a secret written as
// Python's jwcrypto takes it: the text is the JWK "k", base64url.
func parseJWTKey(data []byte) (*jwtKey, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == "EC PARAMETERS" { // openssl ecparam -genkey writes these first
			continue
		}
		return parsePEMKey(block)
	}
	if bytes.Contains(data, []byte("-----BEGIN")) {
		return nil, errors.New("malformed PEM")
	}
	text := strings.Join(strings.Fields(string(data)), "")
	text = strings.TrimRight(text, "=")
	// jwcrypto's decoder takes both base64 alphabets.
	text = strings.NewReplacer("+", "-", "/", "_").Replace(text)
	secret, err := base64.RawURLEncoding.DecodeString(text)
	if err != nil {
		return nil, fmt.Errorf("neither PEM nor a base64url secret: %w", err)
	}
	if len(secret) == 0 {
		return nil, errors.New("empty secret")
	}
	return &jwtKey{secret: secret, decrypt: secret}, nil
}

func parsePEMKey(block *pem.Block) (*jwtKey, error) {
	var key any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("PEM %s: %w", block.Type, err)
	}
	switch k := key.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return &jwtKey{verify: k}, nil
	case *rsa.PrivateKey, *ecdsa.PrivateKey:
		return &jwtKey{verify: k.(crypto.Signer).Public(), decrypt: k}, nil
	case ed25519.PrivateKey: // signs only: go-jose has no X25519 key agreement
		return &jwtKey{verify: k.Public()}, nil
	default:
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
}

func (p *jwtTokenAPI) Lookup(ctx context.Context, token string) (Target, error) {
	if err := ctx.Err(); err != nil {
		return Target{}, &BackendError{Backend: "JWTTokenApi " + p.path, Err: err}
	}
	state := p.key()
	if state.key == nil {
		return Target{}, ErrNotFound // logged when the key was read
	}
	target, err := p.resolve(state.key, token)
	if err != nil {
		p.log(fmt.Sprintf("JWTTokenApi: token refused: %v", err))
		return Target{}, ErrNotFound
	}
	return target, nil
}

func (p *jwtTokenAPI) resolve(key *jwtKey, token string) (Target, error) {
	jws := token
	switch strings.Count(token, ".") {
	case 2:
	case 4:
		if key.decrypt == nil {
			return Target{}, errors.New("an encrypted token (JWE) needs a private or secret key, and the key file holds a public key")
		}
		jwe, err := jose.ParseEncryptedCompact(token, jweKeyAlgorithms, jweContentEncryptions)
		if err != nil {
			return Target{}, err
		}
		plaintext, err := jwe.Decrypt(key.decrypt)
		if err != nil {
			return Target{}, fmt.Errorf("cannot decrypt: %w", err)
		}
		// As in Python, the plaintext is itself a JWS, checked with the same key.
		jws = strings.TrimSpace(string(plaintext))
		if strings.Count(jws, ".") != 2 {
			return Target{}, errors.New("the encrypted token does not hold a signed token (JWS)")
		}
	default:
		return Target{}, errors.New("not a compact JWS or JWE")
	}
	payload, err := verifyJWS(key, jws)
	if err != nil {
		return Target{}, err
	}
	return p.claimsTarget(payload)
}

func verifyJWS(key *jwtKey, jws string) ([]byte, error) {
	if key.secret != nil {
		return verifyHMAC(key.secret, jws)
	}
	object, err := jose.ParseSignedCompact(jws, jwsAlgorithms)
	if err != nil {
		return nil, err
	}
	payload, err := object.Verify(key.verify)
	if err != nil {
		return nil, fmt.Errorf("bad signature: %w", err)
	}
	return payload, nil
}

// verifyHMAC checks an HS256/384/512 JWS here rather than in go-jose,
// which refuses secrets shorter than the hash while jwcrypto (and so
// Python websockify, whose own test secret is 9 bytes) accepts them.
func verifyHMAC(secret []byte, jws string) ([]byte, error) {
	parts := strings.Split(jws, ".")
	headerJSON, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	var header struct {
		Alg  string          `json:"alg"`
		Crit json.RawMessage `json:"crit"`
	}
	if err := json.Unmarshal(headerJSON, &header); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if header.Crit != nil {
		return nil, errors.New(`header has "crit" extensions, none of which are supported`)
	}
	var newHash func() hash.Hash
	switch header.Alg {
	case "HS256":
		newHash = sha256.New
	case "HS384":
		newHash = sha512.New384
	case "HS512":
		newHash = sha512.New
	default:
		return nil, fmt.Errorf("algorithm %q does not fit a secret key", header.Alg)
	}
	signature, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	mac := hmac.New(newHash, secret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(mac.Sum(nil), signature) {
		return nil, errors.New("bad signature")
	}
	return base64.RawURLEncoding.DecodeString(parts[1])
}

// claimsTarget checks nbf and exp, as Python does (no leeway), and reads
// host and port.
func (p *jwtTokenAPI) claimsTarget(payload []byte) (Target, error) {
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(payload, &claims); err != nil {
		return Target{}, fmt.Errorf("claims are not a JSON object: %w", err)
	}
	now := float64(p.now().UnixNano()) / 1e9
	if raw, ok := claims["nbf"]; ok {
		nbf, err := numericDate(raw)
		if err != nil {
			return Target{}, fmt.Errorf("nbf: %w", err)
		}
		if now < nbf {
			return Target{}, errors.New("not valid yet (nbf)")
		}
	}
	if raw, ok := claims["exp"]; ok {
		exp, err := numericDate(raw)
		if err != nil {
			return Target{}, fmt.Errorf("exp: %w", err)
		}
		if now > exp {
			return Target{}, errors.New("expired (exp)")
		}
	}
	var host string
	if err := json.Unmarshal(claims["host"], &host); err != nil || claims["host"] == nil {
		return Target{}, errors.New(`no "host" string claim`)
	}
	if claims["port"] == nil {
		return Target{}, errors.New(`no "port" claim`)
	}
	port, err := portValue(claims["port"])
	if err != nil {
		return Target{}, err
	}
	return hostPortTarget(host, port)
}

func numericDate(raw json.RawMessage) (float64, error) {
	var n json.Number
	// A quoted number would unmarshal into json.Number; Python refuses it.
	if err := json.Unmarshal(raw, &n); err != nil || bytes.HasPrefix(raw, []byte(`"`)) {
		return 0, fmt.Errorf("%s is not a number", raw)
	}
	return n.Float64()
}
