package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gowebsockify/websockify/auth"
	"github.com/gowebsockify/websockify/token"
	"github.com/spf13/pflag"
)

// generated is what parseArgs prints for args (--help, or a hidden
// documentation flag), which must end it as --help does.
func generated(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if _, err := parseArgs(args, &out); err != errHelpShown {
		t.Fatalf("parseArgs(%q) = %v, want errHelpShown", args, err)
	}
	return out.String()
}

// helpFlags are the flags --help lists, long names and shorthands, read
// from its output: the list every generated document must cover.
func helpFlags(t *testing.T) (long []string, short []string) {
	t.Helper()
	help := generated(t, "--help")
	for _, line := range strings.Split(help, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.HasPrefix(fields[0], "-") {
			continue
		}
		if len(fields[0]) == 3 && strings.HasSuffix(fields[0], ",") { // "-v, --verbose"
			short = append(short, strings.TrimSuffix(fields[0], ","))
			fields = fields[1:]
		}
		if strings.HasPrefix(fields[0], "--") {
			long = append(long, fields[0])
		}
	}
	if len(long) < 30 {
		t.Fatalf("only %d flags read from --help:\n%s", len(long), help)
	}
	return long, short
}

func TestHelpHidesDocFlags(t *testing.T) {
	help := generated(t, "--help")
	for _, hidden := range []string{"--print-man-page", "--print-completion"} {
		if strings.Contains(help, hidden) {
			t.Errorf("--help lists the hidden %s", hidden)
		}
	}
}

func TestManPageListsEveryFlag(t *testing.T) {
	page := generated(t, "--print-man-page")
	long, short := helpFlags(t)
	for _, name := range long {
		if !strings.Contains(page, `\fB`+roffEscape(name)+`\fR`) {
			t.Errorf("the man page has no entry for %s", name)
		}
	}
	for _, name := range short {
		if !strings.Contains(page, `\fB`+roffEscape(name)+`\fR, `) {
			t.Errorf("the man page does not give the shorthand %s", name)
		}
	}
	for _, hidden := range []string{"print-man-page", "print-completion"} {
		if strings.Contains(page, roffEscape(hidden)) {
			t.Errorf("the man page lists the hidden --%s", hidden)
		}
	}
	for _, want := range []string{".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", `.SH "TOKEN PLUGINS"`, `.SH "AUTH PLUGINS"`,
		".SH SIGNALS", ".SH FILES", ".SH EXAMPLES", `.SH "SEE ALSO"`, "TokenRedis", "ClientCertCNAuth", "SIGUSR1", "SIGHUP"} {
		if !strings.Contains(page, want) {
			t.Errorf("the man page lacks %q", want)
		}
	}
	// Defaults are shown from the flag set.
	if !strings.Contains(page, "Default: self.pem.") {
		t.Errorf("the man page does not give --cert's default")
	}
}

// TestManPageRenders: groff reads the page without a warning (when groff
// is installed; test/install_test.go renders the installed one with man).
func TestManPageRenders(t *testing.T) {
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Skip("no groff (Debian package groff-base)")
	}
	path := filepath.Join(t.TempDir(), "websockify.1")
	if err := os.WriteFile(path, []byte(generated(t, "--print-man-page")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z", path).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("groff: %v\n%s", err, out)
	}
}

func TestCompletionsListEveryFlag(t *testing.T) {
	long, short := helpFlags(t)
	for _, shell := range []string{"bash", "zsh"} {
		var code []string // the script without its comments, which name the generator
		for _, line := range strings.Split(generated(t, "--print-completion", shell), "\n") {
			if !strings.HasPrefix(strings.TrimSpace(line), "#") {
				code = append(code, line)
			}
		}
		script := strings.Join(code, "\n")
		for _, name := range append(append([]string{}, long...), short...) {
			// A flag is a word of its own: followed by a space, a quote,
			// "=", "[" (zsh's description) or "," / "}" (zsh's {-v,--verbose}).
			found := false
			for _, after := range []string{" ", "'", "=", "[", ",", "}", "|", ")"} {
				if strings.Contains(script, name+after) {
					found = true
					break
				}
			}
			if !found {
				t.Errorf("the %s completion lacks %s", shell, name)
			}
		}
		for _, hidden := range []string{"--print-man-page", "--print-completion"} {
			if strings.Contains(script, hidden+" ") || strings.Contains(script, hidden+"[") || strings.Contains(script, hidden+"=") {
				t.Errorf("the %s completion offers the hidden %s", shell, hidden)
			}
		}
		for flag, choices := range choiceFlags {
			if docFlagSet(t).Lookup(flag) == nil {
				continue
			}
			for _, c := range choices() {
				if !strings.Contains(script, c) {
					t.Errorf("the %s completion does not offer %s for --%s", shell, c, flag)
				}
			}
		}
	}
}

func TestPrintCompletionRejectsUnknownShell(t *testing.T) {
	_, err := parseArgs([]string{"--print-completion", "fish"}, io.Discard)
	if err == nil || err == errHelpShown || !strings.Contains(err.Error(), "want bash or zsh") {
		t.Fatalf("--print-completion fish: %v", err)
	}
}

// docFlagSet is a flag set with the same flags as parseArgs's, for the
// lookups above: the generated man page names them all, so they are read
// back from its OPTIONS entries.
func docFlagSet(t *testing.T) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("docs", pflag.ContinueOnError)
	long, _ := helpFlags(t)
	for _, name := range long {
		fs.String(strings.TrimPrefix(name, "--"), "", "")
	}
	return fs
}

// TestDocFlagTablesNameFlags: every flag the tables describe exists (a
// renamed flag would otherwise silently lose its completion).
func TestDocFlagTablesNameFlags(t *testing.T) {
	fs := docFlagSet(t)
	for name := range pathFlags {
		if fs.Lookup(name) == nil {
			t.Errorf("pathFlags names --%s, which parseArgs does not define", name)
		}
	}
}

// TestChoicesAreAccepted: every word completion offers for a fixed-choice
// flag is one parseArgs accepts.
func TestChoicesAreAccepted(t *testing.T) {
	fs := docFlagSet(t)
	for flag, choices := range choiceFlags {
		if fs.Lookup(flag) == nil {
			continue // waits for its flag
		}
		for _, c := range choices() {
			var err error
			switch flag {
			case "token-plugin": // checked when main builds the plugin
				var p token.Plugin
				if p, err = token.New(c, t.TempDir(), nil); err == nil {
					p.Close()
				} else if !strings.Contains(err.Error(), "unsupported") {
					err = nil // the source, not the name, was refused
				}
			case "auth-plugin":
				_, err = auth.New(c, "user:password")
			default:
				var opts options
				opts, err = parseArgs([]string{"--" + flag, c, "6080", "127.0.0.1:5901"}, io.Discard)
				if err == nil {
					opts.Log.Close()
				}
			}
			if err != nil {
				t.Errorf("--%s %s is offered by completion but refused: %v", flag, c, err)
			}
		}
	}
}
