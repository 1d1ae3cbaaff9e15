package main

import (
	"crypto/tls"
	"io"
	"os"
	"path/filepath"
	"slices"
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
		{args: []string{"--web-auth", "6080", "a:1"}, wantErr: "you must use --auth-plugin to use --web-auth"},
		{args: []string{"--web", "/nonexistent-web-root", "6080", "a:1"}, wantErr: "--web /nonexistent-web-root: not a directory"},
		{args: []string{"--web", "/", "--file-only", "6080", "a:1"}, listen: ":6080", target: "a:1"},
		{args: []string{"6080", "--"}, wantErr: "no program to wrap after --"},
		{args: []string{"6080", "127.0.0.1:5900", "--", "prog"}, wantErr: "a target address cannot be given with a wrapped program (--)"},
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

func TestParseCiphers(t *testing.T) {
	tests := []struct {
		in   string
		want []uint16
		bad  bool
	}{
		{in: "", want: nil},
		{in: "ECDHE-RSA-AES128-GCM-SHA256", want: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}},
		{in: "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305:AES128-GCM-SHA256", want: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_RSA_WITH_AES_128_GCM_SHA256}},
		{in: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", want: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}},
		{in: "ECDHE-RSA-AES128-GCM-SHA256:NOPE", bad: true},
		{in: "HIGH:!aNULL", bad: true},
		{in: "TLS_AES_128_GCM_SHA256", bad: true}, // TLS 1.3: not configurable in Go
	}
	for _, tt := range tests {
		got, err := parseCiphers(tt.in)
		if (err != nil) != tt.bad || !slices.Equal(got, tt.want) {
			t.Errorf("parseCiphers(%q) = %v, %v", tt.in, got, err)
		}
	}
}

func TestParseSSLVersion(t *testing.T) {
	tests := []struct {
		in   string
		want uint16
		bad  bool
	}{
		{in: "default", want: 0},
		{in: "tlsv1_1", want: tls.VersionTLS11},
		{in: "tlsv1_2", want: tls.VersionTLS12},
		{in: "tlsv1_3", want: tls.VersionTLS13},
		{in: "sslv3", bad: true},
	}
	for _, tt := range tests {
		got, err := parseSSLVersion(tt.in)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("parseSSLVersion(%q) = %v, %v", tt.in, got, err)
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
