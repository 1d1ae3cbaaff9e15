package token

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"fmt"
	"os"
)

// Reloader is implemented by the plugins that read files: Reload reads
// them again now, whether or not their stat changed (websockify's SIGHUP),
// and says what it read, for the log. TokenFile and JWTTokenApi also follow
// their files on their own; ReadOnlyTokenFile reads its file only at start
// and on Reload. The directory plugins, which read per lookup, only check
// that their directory is there.
type Reloader interface {
	Reload() (string, error)
}

// Reload re-parses every file of the source. ReadOnlyTokenFile keeps its
// tokens when the source cannot be read; TokenFile, as when it notices the
// change itself, has none until the source is back.
func (p *tokenFiles) Reload() (string, error) {
	p.reload.Lock()
	defer p.reload.Unlock()
	set := p.load(nil)
	if set.sourceError {
		if !p.live {
			return "", fmt.Errorf("cannot read %s; keeping the %d tokens read before", p.source, len(p.current.Load().targets))
		}
		p.current.Store(set)
		return "", fmt.Errorf("cannot read %s; no tokens until it is back", p.source)
	}
	p.current.Store(set)
	files := ""
	if p.isDir {
		files = fmt.Sprintf(" in %d files", len(set.files))
	}
	return fmt.Sprintf("%s %s: %d tokens%s", p.name, p.source, len(set.targets), files), nil
}

// Reload reads the key file again; a key that cannot be read refuses every
// token until it is fixed, as when the plugin notices the change itself.
func (p *jwtTokenAPI) Reload() (string, error) {
	p.reload.Lock()
	defer p.reload.Unlock()
	state := p.loadKey(nil)
	p.current.Store(state)
	if state.err != nil {
		return "", fmt.Errorf("%v; tokens are refused until it is fixed", state.err)
	}
	return fmt.Sprintf("JWTTokenApi key file %s: %s", p.path, describeJWTKey(state.key)), nil
}

func describeJWTKey(k *jwtKey) string {
	if k.secret != nil {
		return fmt.Sprintf("a %d-byte secret", len(k.secret))
	}
	kind := "public"
	if k.decrypt != nil {
		kind = "private"
	}
	switch k.verify.(type) {
	case *rsa.PublicKey:
		return "an RSA " + kind + " key"
	case *ecdsa.PublicKey:
		return "an ECDSA " + kind + " key"
	case ed25519.PublicKey:
		return "an Ed25519 " + kind + " key"
	}
	return "a " + kind + " key"
}

func (p *tokenFileName) Reload() (string, error) {
	return checkDir("TokenFileName", p.dir)
}

func (p *unixSocketDirectory) Reload() (string, error) {
	return checkDir("UnixDomainSocketDirectory", p.dir)
}

// checkDir is Reload for a plugin that reads its directory per lookup:
// there is nothing to re-read, but the operator learns whether it is there.
func checkDir(name, dir string) (string, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("%s: %v", name, err)
	}
	if !info.IsDir() {
		return "", fmt.Errorf("%s: %s is not a directory", name, dir)
	}
	return fmt.Sprintf("%s %s: read at each lookup, nothing cached", name, dir), nil
}
