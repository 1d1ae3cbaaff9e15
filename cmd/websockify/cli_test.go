package main

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestSplitHostPort(t *testing.T) {
	tests := []struct {
		in, host string
		port     int
		bad      bool
	}{
		{in: "6080", port: 6080},
		{in: ":6080", port: 6080},
		{in: "0.0.0.0:6080", host: "0.0.0.0", port: 6080},
		{in: "[::1]:6080", host: "::1", port: 6080},
		{in: "::1:6080", host: "::1", port: 6080},
		{in: "localhost:5901", host: "localhost", port: 5901},
		{in: "host:", bad: true},
		{in: "host:http", bad: true},
		{in: "70000", bad: true},
	}
	for _, tt := range tests {
		host, port, err := splitHostPort(tt.in)
		if (err != nil) != tt.bad || host != tt.host || port != tt.port {
			t.Errorf("splitHostPort(%q) = %q, %d, %v", tt.in, host, port, err)
		}
	}
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		args    []string
		listen  string
		target  string
		wantErr string
	}{
		{args: []string{"6080", "127.0.0.1:5901"}, listen: ":6080", target: "127.0.0.1:5901"},
		{args: []string{"-v", "127.0.0.1:6080", "--heartbeat", "5", "[::1]:5901"}, listen: "127.0.0.1:6080", target: "[::1]:5901"},
		{args: []string{"--unix-target=/tmp/s", "6080"}, listen: ":6080", target: "/tmp/s"},
		{args: []string{"6080"}, wantErr: "too few arguments"},
		{args: []string{"6080", "a:1", "b:2"}, wantErr: "too many arguments"},
		{args: []string{"--unix-target", "/tmp/s", "6080", "a:1"}, wantErr: "a target address cannot be given with --unix-target"},
		{args: []string{"--web-auth", "6080", "a:1"}, wantErr: "--web-auth is not supported yet"},
		{args: []string{"--web", "/nonexistent-web-root", "6080", "a:1"}, wantErr: "--web /nonexistent-web-root: not a directory"},
		{args: []string{"--web", "/", "--file-only", "6080", "a:1"}, listen: ":6080", target: "a:1"},
		{args: []string{"6080", "--", "prog"}, wantErr: "wrapping a program (-- PROGRAM) is not supported yet"},
		{args: []string{"--timeout", "-1", "6080", "a:1"}, wantErr: "--timeout must not be negative"},
		{args: []string{"--unix-listen", "/tmp/l", "--unix-listen-mode", "999", "6080", "a:1"}, wantErr: `invalid --unix-listen-mode "999": want an octal mode such as 0600`},
	}
	for _, tt := range tests {
		cfg, err := parseArgs(tt.args, io.Discard)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("parseArgs(%q) error = %v, want %q", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil || cfg.ListenAddr != tt.listen || cfg.TargetAddr != tt.target {
			t.Errorf("parseArgs(%q) = listen %q target %q err %v", tt.args, cfg.ListenAddr, cfg.TargetAddr, err)
		}
	}
}

func TestParseArgsWebRoot(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	wd, err := os.Getwd() // dir may itself sit behind a symlink
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args     []string
		root     string
		fileOnly bool
	}{
		{args: []string{"--web", "www", "6080", "a:1"}, root: filepath.Join(wd, "www")},
		{args: []string{"--web=" + wd + "/www", "--file-only", "6080", "a:1"}, root: filepath.Join(wd, "www"), fileOnly: true},
		{args: []string{"6080", "a:1"}},
	}
	for _, tt := range tests {
		cfg, err := parseArgs(tt.args, io.Discard)
		if err != nil || cfg.WebRoot != tt.root || cfg.FileOnly != tt.fileOnly {
			t.Errorf("parseArgs(%q) = root %q file-only %v err %v, want %q %v", tt.args, cfg.WebRoot, cfg.FileOnly, err, tt.root, tt.fileOnly)
		}
	}
}
