package test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Token plugins through the real binary: each plugin routes sessions to the
// target its token names, over ws:// and wss:// on one port, and refuses
// missing and unknown tokens with a 403.

// namedHandler greets with the target's name, then echoes.
func namedHandler(name string) func(*tconn) {
	return func(c *tconn) {
		if _, err := io.WriteString(c, name+"\n"); err != nil {
			return
		}
		_, _ = io.Copy(c, c)
	}
}

// namedTargets starts one greeting echo target per name on 127.0.0.1.
func namedTargets(t *testing.T, names ...string) map[string]string {
	addrs := map[string]string{}
	for _, n := range names {
		addrs[n] = startTarget(t, "tcp", "127.0.0.1:0", namedHandler(n)).addr
	}
	return addrs
}

func writeFile(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tokenReply is what the proxy answered an upgrade with a token.
type tokenReply struct {
	c      *wsClient
	status int
	body   string
	header http.Header
}

// upgradeTo asks p for an upgrade at path (over TLS when tlsCfg is set)
// with extra header lines, and reads the reply.
func upgradeTo(p *proxy, tlsCfg *tls.Config, path string, extra ...string) (tokenReply, error) {
	var conn net.Conn
	var err error
	if tlsCfg != nil {
		conn, err = dialTLS(p, tlsCfg)
	} else {
		conn, err = p.dial()
	}
	if err != nil {
		return tokenReply{}, err
	}
	return upgradeOn(conn, path, extra...)
}

// upgradeOn asks for an upgrade at path over conn, which it owns from here
// (closed unless the reply is a 101).
func upgradeOn(conn net.Conn, path string, extra ...string) (tokenReply, error) {
	req := hybiReq{Path: path, Protocol: modeBinary, Extra: extra}
	req.Fill()
	_ = conn.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := conn.Write([]byte(req.String())); err != nil {
		conn.Close()
		return tokenReply{}, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return tokenReply{}, err
	}
	r := tokenReply{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode != 101 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1000))
		r.body = string(b)
		conn.Close()
		return r, nil
	}
	_ = conn.SetDeadline(time.Time{})
	r.c = wrapWS(conn, br, resp)
	return r, nil
}

// expectTarget upgrades with token and checks that the session reached the
// target called name (its greeting) and echoes.
func expectTarget(t *testing.T, p *proxy, tlsCfg *tls.Config, token, name string) {
	t.Helper()
	r, err := upgradeTo(p, tlsCfg, "/websockify?token="+urlEscape(token))
	if err != nil {
		t.Fatalf("token %.20q: %v", token, err)
	}
	if r.status != 101 {
		t.Fatalf("token %.20q: status %d %q, want 101 to %s", token, r.status, r.body, name)
	}
	defer r.c.conn.Close()
	got, err := r.c.readN(len(name) + 1)
	if err != nil || string(got) != name+"\n" {
		t.Fatalf("token %.20q: greeting %q, %v; want %q", token, got, err, name)
	}
	mustEcho(t, r.c, []byte("ping "+name))
}

// expectRefused upgrades at path and wants status and a log line.
func expectRefused(t *testing.T, p *proxy, tlsCfg *tls.Config, path string, status int, logLine string, extra ...string) tokenReply {
	t.Helper()
	r, err := upgradeTo(p, tlsCfg, path, extra...)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if r.status != status {
		if r.c != nil {
			r.c.conn.Close()
		}
		t.Fatalf("%s: status %d %q, want %d", path, r.status, r.body, status)
	}
	if logLine != "" && !waitLog(p, logLine, 5*time.Second) {
		t.Errorf("%s: no log line %q", path, logLine)
	}
	return r
}

func urlEscape(s string) string { return url.QueryEscape(s) }

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// pluginSetup configures one plugin for targets (name → address) and
// returns the proxy's arguments and each name's token.
type pluginSetup func(t *testing.T, addrs map[string]string) (args []string, tokens map[string]string)

func tokenFileSetup(plugin string) pluginSetup {
	return func(t *testing.T, addrs map[string]string) ([]string, map[string]string) {
		path := filepath.Join(t.TempDir(), "tokens.conf")
		var b strings.Builder
		b.WriteString("# targets\n\n")
		tokens := map[string]string{}
		for name, addr := range addrs {
			fmt.Fprintf(&b, "tok-%s: %s\n", name, addr)
			tokens[name] = "tok-" + name
		}
		writeFile(t, path, b.String())
		return []string{"--token-plugin", plugin, "--token-source", path}, tokens
	}
}

func tokenFileNameSetup(t *testing.T, addrs map[string]string) ([]string, map[string]string) {
	dir := t.TempDir()
	tokens := map[string]string{}
	for name, addr := range addrs {
		writeFile(t, filepath.Join(dir, "file-"+name), addr+"\n")
		tokens[name] = "file-" + name
	}
	return []string{"--token-plugin", "TokenFileName", "--token-source", dir}, tokens
}

// tokenAPI is a real HTTP token service on 127.0.0.1.
func tokenAPI(t *testing.T, addrs map[string]string, asJSON bool, hang *atomic.Bool) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hang != nil && hang.Load() {
			select {
			case <-r.Context().Done():
			case <-time.After(30 * time.Second):
			}
			return
		}
		name, ok := strings.CutPrefix(r.URL.Query().Get("t"), "api-")
		addr, found := addrs[name]
		if !ok || !found {
			http.NotFound(w, r)
			return
		}
		if !asJSON {
			fmt.Fprint(w, addr)
			return
		}
		host, port, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(port)
		_ = json.NewEncoder(w).Encode(map[string]any{"host": host, "port": n})
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/lookup?t=%s"
}

func apiSetup(asJSON bool) pluginSetup {
	return func(t *testing.T, addrs map[string]string) ([]string, map[string]string) {
		plugin := "BaseTokenAPI"
		if asJSON {
			plugin = "websockify.token_plugins.JSONTokenApi"
		}
		tokens := map[string]string{}
		for name := range addrs {
			tokens[name] = "api-" + name
		}
		return []string{"--token-plugin", plugin, "--token-source", tokenAPI(t, addrs, asJSON, nil)}, tokens
	}
}

// jwtKey is an RSA key whose public half is in a PEM file for the proxy.
type jwtKey struct {
	priv    *rsa.PrivateKey
	pubFile string
}

func newJWTKey(t *testing.T) jwtKey {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jwt-public.pem")
	writeFile(t, path, string(pemBlock("PUBLIC KEY", der)))
	return jwtKey{priv: priv, pubFile: path}
}

// sign makes a JWS with claims host, port and the given times.
func (k jwtKey) sign(t *testing.T, addr string, nbf, exp time.Time) string {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: k.priv}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(addr)
	claims := map[string]any{"host": host, "port": port}
	if !nbf.IsZero() {
		claims["nbf"] = jwt.NewNumericDate(nbf)
	}
	if !exp.IsZero() {
		claims["exp"] = jwt.NewNumericDate(exp)
	}
	s, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func jwtSetup(t *testing.T, addrs map[string]string) ([]string, map[string]string) {
	k := newJWTKey(t)
	tokens := map[string]string{}
	for name, addr := range addrs {
		tokens[name] = k.sign(t, addr, time.Time{}, time.Now().Add(time.Hour))
	}
	return []string{"--token-plugin", "JWTTokenApi", "--token-source", k.pubFile}, tokens
}

// redisServer is a real redis-server on a free loopback port.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
}

func startRedis(t *testing.T, extra ...string) *redisServer {
	t.Helper()
	requireFile(t, "/usr/bin/redis-server", "Debian package redis-server")
	port := freePort(t, "127.0.0.1")
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir()}, extra...)
	cmd := exec.Command("/usr/bin/redis-server", args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &redisServer{addr: "127.0.0.1:" + strconv.Itoa(port), cmd: cmd}
	t.Cleanup(r.stop)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", r.addr); err == nil {
			c.Close()
			return r
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("redis-server did not start on %s", r.addr)
	return nil
}

func (r *redisServer) stop() {
	if r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	}
}

// do sends one command (RESP) and returns the first reply line.
func (r *redisServer) do(t *testing.T, args ...string) string {
	t.Helper()
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}

func redisSetup(t *testing.T, addrs map[string]string) ([]string, map[string]string) {
	r := startRedis(t)
	tokens := map[string]string{}
	json := false
	for name, addr := range addrs {
		value := addr
		if json { // half the values plain, half JSON
			value = `{"host": "` + addr + `"}`
		}
		json = !json
		r.do(t, "SET", "ns:"+"redis-"+name, value)
		tokens[name] = "redis-" + name
	}
	return []string{"--token-plugin", "TokenRedis", "--token-source", r.addr + ":::ns"}, tokens
}

// unixDirSetup serves the targets on unix sockets in one directory instead.
func unixDirSetup(t *testing.T, addrs map[string]string) ([]string, map[string]string) {
	dir := shortTempDir(t)
	tokens := map[string]string{}
	for name := range addrs {
		startTarget(t, "unix", filepath.Join(dir, "sock-"+name), namedHandler(name))
		tokens[name] = "sock-" + name
	}
	return []string{"--token-plugin", "UnixDomainSocketDirectory", "--token-source", dir}, tokens
}

var pluginSetups = []struct {
	name  string
	setup pluginSetup
}{
	{"TokenFile", tokenFileSetup("TokenFile")},
	{"ReadOnlyTokenFile", tokenFileSetup("websockify.token_plugins.ReadOnlyTokenFile")},
	{"TokenFileName", tokenFileNameSetup},
	{"BaseTokenAPI", apiSetup(false)},
	{"JSONTokenApi", apiSetup(true)},
	{"JWTTokenApi", jwtSetup},
	{"TokenRedis", redisSetup},
	{"UnixDomainSocketDirectory", unixDirSetup},
}

// TestTokenPlugins: every plugin, over ws:// and wss:// on one port, routes
// each token to its own target and refuses missing and unknown tokens.
func TestTokenPlugins(t *testing.T) {
	pk := newPKI(t)
	for _, ps := range pluginSetups {
		t.Run(ps.name, func(t *testing.T) {
			addrs := namedTargets(t, "vm1", "vm2")
			args, tokens := ps.setup(t, addrs)
			p := launchProxy(t, proxyConfig{Args: append(args, "--cert", pk.bundleFile)})
			if !waitLog(p, "targets generated by ", 2*time.Second) {
				t.Errorf("banner does not name the plugin")
			}
			for _, tr := range []struct {
				name string
				cfg  *tls.Config
			}{{"ws", nil}, {"wss", pk.clientTLS(nil)}} {
				expectTarget(t, p, tr.cfg, tokens["vm1"], "vm1")
				expectTarget(t, p, tr.cfg, tokens["vm2"], "vm2")
				expectRefused(t, p, tr.cfg, "/websockify", 403, "Token not present")
				expectRefused(t, p, tr.cfg, "/websockify?token=nosuch", 403, "Token 'nosuch' not found")
			}
		})
	}
}

// TestTokenTransports: one plugin through every other way in and out: a
// unix listening socket, worker processes, the Host header, a cookie, and a
// TLS target (--ssl-target).
func TestTokenTransports(t *testing.T) {
	addrs := namedTargets(t, "vm1", "vm2")
	args, tokens := tokenFileSetup("TokenFile")(t, addrs)

	t.Run("unix-listen", func(t *testing.T) {
		p := launchProxy(t, proxyConfig{UnixListen: filepath.Join(shortTempDir(t), "ws.sock"), Args: args})
		expectTarget(t, p, nil, tokens["vm2"], "vm2")
		expectRefused(t, p, nil, "/?token=nosuch", 403, "Token 'nosuch' not found")
	})
	t.Run("workers", func(t *testing.T) {
		p := launchProxy(t, proxyConfig{Args: append([]string{"--workers", "2"}, args...)})
		for i := 0; i < 6; i++ { // the kernel spreads them over both workers
			expectTarget(t, p, nil, tokens["vm1"], "vm1")
		}
		expectRefused(t, p, nil, "/?token=nosuch", 403, "Token 'nosuch' not found")
	})
	t.Run("host-token", func(t *testing.T) {
		p := launchProxy(t, proxyConfig{Args: append([]string{"--host-token"}, args...)})
		r := expectRefusedHost(t, p, "tok-vm1:6080")
		defer r.c.conn.Close()
		got, err := r.c.readN(4)
		if err != nil || string(got) != "vm1\n" {
			t.Fatalf("Host token: greeting %q, %v", got, err)
		}
		expectRefused(t, p, nil, "/?token="+tokens["vm1"], 403, "Token 'localhost' not found") // the query is not read
	})
	t.Run("cookie", func(t *testing.T) {
		p := launchProxy(t, proxyConfig{Args: args})
		r, err := upgradeTo(p, nil, "/websockify", "Cookie: theme=dark; token="+tokens["vm2"])
		if err != nil || r.status != 101 {
			t.Fatalf("cookie token: %v, status %d %q", err, r.status, r.body)
		}
		defer r.c.conn.Close()
		if got, err := r.c.readN(4); err != nil || string(got) != "vm2\n" {
			t.Fatalf("cookie token: greeting %q, %v", got, err)
		}
	})
	t.Run("ssl-target", func(t *testing.T) {
		pk := newPKI(t)
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pk.server}})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go namedHandler("tlsvm")(&tconn{Conn: c, done: make(chan struct{})})
			}
		}()
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		path := filepath.Join(t.TempDir(), "tokens")
		writeFile(t, path, "secure: localhost:"+port+"\n")
		p := launchProxy(t, proxyConfig{
			Args: []string{"--ssl-target", "--token-plugin", "TokenFile", "--token-source", path},
			Env:  []string{"SSL_CERT_FILE=" + pk.caFile},
		})
		expectTarget(t, p, nil, "secure", "tlsvm")
		if !waitLog(p, "connecting to: localhost:"+port+" (using SSL)", 5*time.Second) {
			t.Errorf("the dial's log line does not say SSL")
		}
	})
}

// expectRefusedHost upgrades with host as the Host header and wants a 101.
func expectRefusedHost(t *testing.T, p *proxy, host string) tokenReply {
	t.Helper()
	conn, err := p.dial()
	if err != nil {
		t.Fatal(err)
	}
	req := hybiReq{Path: "/", Host: host, Protocol: modeBinary}
	req.Fill()
	c, err := handshakeHyBi(conn, req, nil)
	if err != nil {
		conn.Close()
		t.Fatalf("Host %q: %v", host, err)
	}
	return tokenReply{c: c, status: 101}
}

// TestTokenFileChanges: a TokenFile sees edits, new files and removed files
// in its directory without a restart; bad lines are logged with file and
// line and skipped.
func TestTokenFileChanges(t *testing.T) {
	addrs := namedTargets(t, "vm1", "vm2", "vm3")
	dir := t.TempDir()
	a := filepath.Join(dir, "a.conf")
	writeFile(t, a, "one: "+addrs["vm1"]+"\nthis line is bad\n# fine\ntwo: "+addrs["vm2"]+"\n")
	p := launchProxy(t, proxyConfig{Args: []string{"--token-plugin", "TokenFile", "--token-source", dir}})
	expectTarget(t, p, nil, "one", "vm1")
	expectTarget(t, p, nil, "two", "vm2")
	if !waitLog(p, a+" on line 2", 5*time.Second) && !waitLog(p, a+":2", time.Second) {
		t.Errorf("the bad line was not logged with its file and line")
	}

	// An edit in place: one now goes to vm3.
	writeFile(t, a, "one: "+addrs["vm3"]+"\n")
	expectTarget(t, p, nil, "one", "vm3")
	expectRefused(t, p, nil, "/?token=two", 403, "Token 'two' not found")
	// A new file, then its removal.
	b := filepath.Join(dir, "b.conf")
	writeFile(t, b, "three: "+addrs["vm2"]+"\n")
	expectTarget(t, p, nil, "three", "vm2")
	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	expectRefused(t, p, nil, "/?token=three", 403, "Token 'three' not found")
}

// TestTokenBackendsFail: a Redis that stops and an HTTP API that hangs cost
// new clients a 502 or 504 and a log line, quickly, never a hang; sessions
// already open carry on.
func TestTokenBackendsFail(t *testing.T) {
	addrs := namedTargets(t, "vm1")
	t.Run("redis stopped", func(t *testing.T) {
		r := startRedis(t)
		r.do(t, "SET", "vm1", addrs["vm1"])
		p := launchProxy(t, proxyConfig{Args: []string{"--token-plugin", "TokenRedis", "--token-source", r.addr}})
		open, err := upgradeTo(p, nil, "/?token=vm1")
		if err != nil || open.status != 101 {
			t.Fatalf("before the stop: %v %d", err, open.status)
		}
		defer open.c.conn.Close()
		if got, err := open.c.readN(4); err != nil || string(got) != "vm1\n" {
			t.Fatalf("greeting %q, %v", got, err)
		}
		r.stop()
		start := time.Now()
		rr := expectRefused(t, p, nil, "/?token=vm1", 502, "token lookup failed")
		if d := time.Since(start); d > 6*time.Second {
			t.Errorf("a stopped Redis took %v to refuse", d)
		}
		if !strings.Contains(p.stderr.String(), r.addr) {
			t.Errorf("the log does not name the failed backend %s", r.addr)
		}
		_ = rr
		mustEcho(t, open.c, []byte("still here"))
	})
	t.Run("api hangs", func(t *testing.T) {
		var hang atomic.Bool
		apiURL := tokenAPI(t, addrs, false, &hang)
		p := launchProxy(t, proxyConfig{Args: []string{"--token-plugin", "BaseTokenAPI", "--token-source", apiURL}})
		open, err := upgradeTo(p, nil, "/?token=api-vm1")
		if err != nil || open.status != 101 {
			t.Fatalf("before the hang: %v %d", err, open.status)
		}
		defer open.c.conn.Close()
		if got, err := open.c.readN(4); err != nil || string(got) != "vm1\n" {
			t.Fatalf("greeting %q, %v", got, err)
		}
		hang.Store(true)
		start := time.Now()
		expectRefused(t, p, nil, "/?token=api-vm1", 504, "token lookup failed")
		if d := time.Since(start); d > 8*time.Second {
			t.Errorf("a hanging API took %v to refuse", d)
		}
		mustEcho(t, open.c, []byte("still here"))
	})
}

// TestTokenJWTRefusals: tokens with a bad signature, expired, not yet valid,
// or a JWE sealed for another key are refused with a 403.
func TestTokenJWTRefusals(t *testing.T) {
	addrs := namedTargets(t, "vm1")
	k := newJWTKey(t)
	other := newJWTKey(t)
	p := launchProxy(t, proxyConfig{Args: []string{"--token-plugin", "JWTTokenApi", "--token-source", k.pubFile}})
	expectTarget(t, p, nil, k.sign(t, addrs["vm1"], time.Now().Add(-time.Minute), time.Now().Add(time.Hour)), "vm1")
	for name, tok := range map[string]string{
		"bad signature": other.sign(t, addrs["vm1"], time.Time{}, time.Time{}),
		"expired":       k.sign(t, addrs["vm1"], time.Time{}, time.Now().Add(-time.Minute)),
		"not yet valid": k.sign(t, addrs["vm1"], time.Now().Add(time.Hour), time.Time{}),
		"garbage":       "not.a.jwt",
		"wrong JWE key": sealJWE(t, &other.priv.PublicKey, k.sign(t, addrs["vm1"], time.Time{}, time.Time{})),
	} {
		t.Run(name, func(t *testing.T) {
			expectRefused(t, p, nil, "/?token="+urlEscape(tok), 403, "not found")
		})
	}
}

// sealJWE encrypts a JWS for pub (RSA-OAEP-256, A256GCM).
func sealJWE(t *testing.T, pub *rsa.PublicKey, jws string) string {
	enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: jose.RSA_OAEP_256, Key: pub},
		(&jose.EncrypterOptions{}).WithContentType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := enc.Encrypt([]byte(jws))
	if err != nil {
		t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTokenJWE: a JWE wrapping a JWS, decrypted and verified with the one
// RSA private key in the key file, as the original does.
func TestTokenJWE(t *testing.T) {
	addrs := namedTargets(t, "vm1")
	k := newJWTKey(t)
	der, err := x509.MarshalPKCS8PrivateKey(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "jwt-private.pem")
	writeFile(t, keyFile, string(pemBlock("PRIVATE KEY", der)))
	p := launchProxy(t, proxyConfig{Args: []string{"--token-plugin", "JWTTokenApi", "--token-source", keyFile}})
	tok := sealJWE(t, &k.priv.PublicKey, k.sign(t, addrs["vm1"], time.Time{}, time.Now().Add(time.Hour)))
	expectTarget(t, p, nil, tok, "vm1")
}

// TestTokenPluginErrors: an unknown plugin (a user's own Python class) and
// a malformed source stop start-up with exit 2 and a reason.
func TestTokenPluginErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--token-plugin", "mymodule.MyPlugin", "--token-source", "x"}, "TokenFile"},
		{[]string{"--token-plugin", "TokenRedis", "--token-source", "h:notaport"}, "TokenRedis"},
		{[]string{"--token-source", "x"}, "--token-plugin"},
		{[]string{"--host-token"}, "--token-plugin"},
		{[]string{"--token-plugin", "TokenFile", "--token-source", "x", "127.0.0.1:5900"}, "target"},
		{[]string{"--auth-plugin", "Nope", "127.0.0.1:1"}, "BasicHTTPAuth"},
		{[]string{"--web-auth", "--auth-plugin", "ExpectOrigin"}, "--web"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, binPath, append([]string{"127.0.0.1:" + strconv.Itoa(freePort(t, "127.0.0.1"))}, tc.args...)...)
		out, err := cmd.CombinedOutput()
		cancel()
		code := -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != 2 || !strings.Contains(string(out), tc.want) {
			t.Errorf("%v: exit %d, output %q; want exit 2 naming %q", tc.args, code, out, tc.want)
		}
	}
}

// TestAuthPlugins: each auth plugin over ws:// and wss://, and --web-auth
// guarding the web files too.
func TestAuthPlugins(t *testing.T) {
	pk := newPKI(t)
	echo := startEcho(t)
	wss := pk.clientTLS(nil)
	t.Run("BasicHTTPAuth", func(t *testing.T) {
		web := t.TempDir()
		writeFile(t, filepath.Join(web, "index.html"), "hello")
		p := startProxy(t, echo.addr, "--cert", pk.bundleFile, "--auth-plugin", "BasicHTTPAuth",
			"--auth-source", "alice:s3cr:et", "--web", web, "--web-auth")
		good := "Authorization: Basic " + b64("alice:s3cr:et")
		for _, cfg := range []*tls.Config{nil, wss} {
			r := expectRefused(t, p, cfg, "/", 401, "authentication failed")
			if got := r.header.Get("WWW-Authenticate"); got != `Basic realm="Websockify"` {
				t.Errorf("WWW-Authenticate %q", got)
			}
			expectRefused(t, p, cfg, "/", 401, "", "Authorization: Basic "+b64("alice:wrong"))
			expectRefused(t, p, cfg, "/", 403, "", "Authorization: Bearer abc")
			r = expectRefused(t, p, cfg, "/", 101, "", good)
			mustEcho(t, r.c, []byte("authorized"))
			r.c.conn.Close()
		}
		// --web-auth: files need the credentials too.
		get := func(auth string) int {
			req, _ := http.NewRequest("GET", "http://127.0.0.1:"+strconv.Itoa(p.port)+"/index.html", nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if s := get(""); s != 401 {
			t.Errorf("web file without credentials: %d, want 401", s)
		}
		if s := get(strings.TrimPrefix(good, "Authorization: ")); s != 200 {
			t.Errorf("web file with credentials: %d, want 200", s)
		}
	})
	t.Run("ExpectOrigin", func(t *testing.T) {
		p := startProxy(t, echo.addr, "--cert", pk.bundleFile, "--auth-plugin", "websockify.auth_plugins.ExpectOrigin",
			"--auth-source", "https://good.example http://also.example")
		for _, cfg := range []*tls.Config{nil, wss} {
			expectRefused(t, p, cfg, "/", 403, "Invalid Origin Header", "Origin: https://evil.example")
			expectRefused(t, p, cfg, "/", 403, "got None")
			r := expectRefused(t, p, cfg, "/", 101, "", "Origin: http://also.example")
			mustEcho(t, r.c, []byte("same origin"))
			r.c.conn.Close()
		}
	})
	t.Run("ClientCertCNAuth", func(t *testing.T) {
		p := startProxy(t, echo.addr, "--cert", pk.bundleFile, "--verify-client", "--cafile", pk.caFile,
			"--auth-plugin", "ClientCertCNAuth", "--auth-source", "bob alice")
		r := expectRefused(t, p, pk.clientTLS(&pk.client), "/", 101, "")
		mustEcho(t, r.c, []byte("alice"))
		r.c.conn.Close()
		// A forged header, in either case, over plain ws:// gets nowhere.
		expectRefused(t, p, nil, "/", 403, "no verified client certificate",
			"SSL_CLIENT_S_DN_CN: alice", "ssl_client_s_dn_cn: alice")
	})
	t.Run("ClientCertCNAuth refuses other names", func(t *testing.T) {
		p := startProxy(t, echo.addr, "--cert", pk.bundleFile, "--verify-client", "--cafile", pk.caFile,
			"--auth-plugin", "ClientCertCNAuth", "--auth-source", "bob")
		expectRefused(t, p, pk.clientTLS(&pk.client), "/", 403, "CN 'alice' not allowed")
	})
}

// TestTokenTargetDown: a token whose target refuses the connection gets its
// 101 and then a 1011 close, as a fixed target that is down does.
func TestTokenTargetDown(t *testing.T) {
	down := closedPort(t)
	tokens := filepath.Join(t.TempDir(), "tokens")
	writeFile(t, tokens, "down: "+down+"\n")
	p := launchProxy(t, proxyConfig{Args: []string{"--token-plugin", "TokenFile", "--token-source", tokens}})
	r, err := upgradeTo(p, nil, "/?token=down")
	if err != nil || r.status != 101 {
		t.Fatalf("upgrade: %v %d", err, r.status)
	}
	defer r.c.conn.Close()
	code, _, _, err := r.c.expectClose()
	if err != nil || code != 1011 {
		t.Errorf("close %d, %v; want 1011", code, err)
	}
	if !waitLog(p, "Failed to connect to "+down, 5*time.Second) {
		t.Errorf("no log line naming the target that is down")
	}
}
