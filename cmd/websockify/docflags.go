package main

// The man page and the shell completions are generated from the flag set
// parseArgs builds (hidden flags --print-man-page and --print-completion,
// which `make build` runs), so a flag added there is documented and
// completed without anyone remembering to. This file holds the hook and
// what the flag set cannot say about a flag's value: which flags take a
// file or a directory, and which take one of a fixed set of words.

import (
	"fmt"
	"io"
	"strings"

	"github.com/gowebsockify/websockify/auth"
	"github.com/gowebsockify/websockify/token"
	"github.com/spf13/pflag"
)

// docFlags are the hidden flags that print generated documentation.
type docFlags struct {
	manPage    *bool
	completion *string
}

// addDocFlags adds the hidden documentation flags to fs. They are hidden so
// --help, the man page and the completions leave them out: they are for
// the build, not for operators.
func addDocFlags(fs *pflag.FlagSet) docFlags {
	d := docFlags{
		manPage:    fs.Bool("print-man-page", false, "print the man page (roff) and exit"),
		completion: fs.String("print-completion", "", "print the completion script for SHELL (bash or zsh) and exit"),
	}
	_ = fs.MarkHidden("print-man-page")
	_ = fs.MarkHidden("print-completion")
	return d
}

// requested reports whether one of the documentation flags was given.
func (d docFlags) requested() bool {
	return *d.manPage || *d.completion != ""
}

// write prints what was asked for, from every visible flag of fs (parsed,
// so every flag is defined by now). It returns errHelpShown when done, as
// --help does, or a usage error for an unknown shell.
func (d docFlags) write(fs *pflag.FlagSet, out io.Writer) error {
	switch {
	case *d.manPage && *d.completion != "":
		return fmt.Errorf("--print-man-page cannot be combined with --print-completion")
	case *d.manPage:
		writeManPage(out, fs)
	case *d.completion == "bash":
		writeBashCompletion(out, fs)
	case *d.completion == "zsh":
		writeZshCompletion(out, fs)
	default:
		return fmt.Errorf("invalid --print-completion %q: want bash or zsh", *d.completion)
	}
	return errHelpShown
}

// valueKind says what a flag's value is, for completing it.
type valueKind int

const (
	valueOther  valueKind = iota // no completion: a number, an address, a word
	valueFile                    // a file name (sockets and pid files too)
	valueDir                     // a directory name
	valueChoice                  // one of valueChoices(name)
)

// pathFlags are the flags whose value names a file or a directory. A
// flag missing here is completed as free text; TestDocFlagTablesNameFlags
// catches a renamed one.
var pathFlags = map[string]valueKind{
	"unix-target":       valueFile,
	"unix-listen":       valueFile,
	"cert":              valueFile,
	"key":               valueFile,
	"key-password-file": valueFile,
	"cafile":            valueFile,
	"web":               valueDir,
	"target-config":     valueFile, // a file or a directory: file completion offers both
	"token-source":      valueFile,
	"record":            valueFile,
	"log-file":          valueFile,
	"syslog":            valueFile, // a local socket such as /dev/log (or host:port)
	"pid-file":          valueFile,
}

// choiceFlags are the flags whose value is one of a fixed set of words, the
// same words their checks accept (TestChoicesAreAccepted). A name not in
// the flag set is skipped, so an entry may wait for its flag.
var choiceFlags = map[string]func() []string{
	"token-plugin": func() []string { return token.Names },
	"auth-plugin":  func() []string { return auth.Names },
	"wrap-mode":    func() []string { return []string{"exit", "ignore", "respawn"} },
	"ssl-version":  func() []string { return []string{"default", "tlsv1_1", "tlsv1_2", "tlsv1_3"} },
	"log-format":   func() []string { return []string{"text", "json"} },
}

// kindOf says how f's value is completed.
func kindOf(f *pflag.Flag) valueKind {
	if takesNoValue(f) {
		return valueOther
	}
	if _, ok := choiceFlags[f.Name]; ok {
		return valueChoice
	}
	return pathFlags[f.Name]
}

// takesNoValue reports whether f is a switch (--flag, not --flag VALUE).
func takesNoValue(f *pflag.Flag) bool {
	return f.NoOptDefVal != ""
}

// valueName is the placeholder for f's value in the man page: FILE, DIR,
// N for numbers, else the type pflag gives it (upper case), or "" for a
// switch.
func valueName(f *pflag.Flag) string {
	if takesNoValue(f) {
		return ""
	}
	switch kindOf(f) {
	case valueFile:
		return "FILE"
	case valueDir:
		return "DIR"
	case valueChoice:
		return "WORD"
	}
	name, _ := pflag.UnquoteUsage(f)
	switch name {
	case "int", "uint", "int64", "uint64", "int32", "uint32", "float64", "float32":
		return "N"
	case "":
		return "VALUE"
	}
	return strings.ToUpper(name)
}

// defaultShown is f's default as the docs show it, or "" when it is the
// zero value (nothing worth saying).
func defaultShown(f *pflag.Flag) string {
	switch f.DefValue {
	case "", "0", "false", "[]", "0s":
		return ""
	}
	return f.DefValue
}

// visibleFlags is every flag of fs that --help lists, in definition order.
func visibleFlags(fs *pflag.FlagSet) []*pflag.Flag {
	var flags []*pflag.Flag
	fs.VisitAll(func(f *pflag.Flag) {
		if !f.Hidden {
			flags = append(flags, f)
		}
	})
	return flags
}
