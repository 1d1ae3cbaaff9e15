package main

import (
	"io"
	"testing"

	"github.com/gowebsockify/websockify/limits"
)

func TestLimitFlags(t *testing.T) {
	tests := []struct {
		args    []string
		want    limits.Config
		wantErr string
	}{
		{args: nil, want: limits.Config{MaxRequestHead: 16384}},
		{args: []string{"--max-sessions", "100", "--max-sessions-per-ip=10", "--max-handshakes-per-ip", "0.5",
			"--max-request-head", "4096", "--max-frame-size", "1048576"},
			want: limits.Config{MaxSessions: 100, MaxSessionsPerIP: 10, HandshakesPerIP: 0.5, MaxRequestHead: 4096, MaxFrameSize: 1 << 20}},
		{args: []string{"--max-sessions", "-1"}, wantErr: "--max-sessions must not be negative"},
		{args: []string{"--max-sessions-per-ip", "-3"}, wantErr: "--max-sessions-per-ip must not be negative"},
		{args: []string{"--max-frame-size", "-1"}, wantErr: "--max-frame-size must not be negative"},
		{args: []string{"--max-handshakes-per-ip", "-0.1"}, wantErr: "--max-handshakes-per-ip must be a rate of 0 (no limit) or more a second"},
		{args: []string{"--max-handshakes-per-ip", "NaN"}, wantErr: "--max-handshakes-per-ip must be a rate of 0 (no limit) or more a second"},
		{args: []string{"--max-request-head", "0"}, wantErr: "--max-request-head must be between 256 and 1048576 bytes"},
		{args: []string{"--max-request-head", "-5"}, wantErr: "--max-request-head must be between 256 and 1048576 bytes"},
		{args: []string{"--max-request-head", "2000000"}, wantErr: "--max-request-head must be between 256 and 1048576 bytes"},
	}
	for _, tt := range tests {
		opts, err := parseArgs(append(tt.args, "6080", "127.0.0.1:5900"), io.Discard)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("%q: error %v, want %q", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil || opts.Limits != tt.want {
			t.Errorf("%q: %+v, %v; want %+v", tt.args, opts.Limits, err, tt.want)
		}
	}
}

func TestLimitsBanner(t *testing.T) {
	for _, tt := range []struct {
		c       limits.Config
		workers int
		want    string
	}{
		{limits.Config{MaxRequestHead: 16384}, 1, ""},
		{limits.Config{MaxSessions: 5, HandshakesPerIP: 0.5, MaxRequestHead: 16384}, 1, "Limits: max-sessions=5, max-handshakes-per-ip=0.5"},
		{limits.Config{MaxSessionsPerIP: 3, MaxRequestHead: 4096, MaxFrameSize: 100}, 2,
			"Limits (each worker its own): max-sessions-per-ip=3, max-request-head=4096, max-frame-size=100"},
	} {
		if got := limitsBanner(tt.c, tt.workers); got != tt.want {
			t.Errorf("limitsBanner(%+v, %d) = %q, want %q", tt.c, tt.workers, got, tt.want)
		}
	}
}
