package main

import (
	"fmt"
	"math"
	"strings"

	"github.com/gowebsockify/websockify/codec"
	"github.com/gowebsockify/websockify/limits"
	"github.com/spf13/pflag"
)

// Bounds of --max-request-head: below the smaller, a browser's own upgrade
// request would not fit; above the larger, a client could make each
// connection hold a megabyte before it has said anything useful.
const (
	minRequestHead = 256
	maxRequestHead = 1 << 20
)

// limitFlags are the options against abuse (not in the original).
type limitFlags struct {
	sessions, sessionsPerIP *int
	handshakesPerIP         *float64
	requestHead             *int
	frameSize               *int64
}

func addLimitFlags(fs *pflag.FlagSet) limitFlags {
	const perWorker = " (with --workers, per worker)"
	return limitFlags{
		sessions: fs.Int("max-sessions", 0,
			"refuse upgrades with 503 while `N` WebSocket sessions are open; 0: no limit"+perWorker),
		sessionsPerIP: fs.Int("max-sessions-per-ip", 0,
			"refuse upgrades with 429 from a client address with `N` sessions open; 0: no limit"+perWorker),
		handshakesPerIP: fs.Float64("max-handshakes-per-ip", 0,
			"refuse with 429 a client address's new connections (upgrades and web alike) beyond `RATE` a second, in bursts of up to max(1, RATE); 0: no limit"+perWorker),
		requestHead: fs.Int("max-request-head", codec.MaxHeaderBytes,
			fmt.Sprintf("answer 431 and close when a request head (request line and headers) exceeds `BYTES`, %d to %d", minRequestHead, maxRequestHead)),
		frameSize: fs.Int64("max-frame-size", 0,
			"close with 1009 (Hixie: close) a session whose client sends a data frame carrying more than `BYTES`; 0: no limit"),
	}
}

// config checks the options and returns the limits they set.
func (f limitFlags) config() (limits.Config, error) {
	for name, v := range map[string]int64{"max-sessions": int64(*f.sessions), "max-sessions-per-ip": int64(*f.sessionsPerIP),
		"max-frame-size": *f.frameSize} {
		if v < 0 {
			return limits.Config{}, fmt.Errorf("--%s must not be negative", name)
		}
	}
	if r := *f.handshakesPerIP; r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
		return limits.Config{}, fmt.Errorf("--max-handshakes-per-ip must be a rate of 0 (no limit) or more a second")
	}
	if h := *f.requestHead; h < minRequestHead || h > maxRequestHead {
		return limits.Config{}, fmt.Errorf("--max-request-head must be between %d and %d bytes", minRequestHead, maxRequestHead)
	}
	return limits.Config{
		MaxSessions:      *f.sessions,
		MaxSessionsPerIP: *f.sessionsPerIP,
		HandshakesPerIP:  *f.handshakesPerIP,
		MaxRequestHead:   *f.requestHead,
		MaxFrameSize:     uint64(*f.frameSize),
	}, nil
}

// limitsBanner is the start-up banner's line for the limits that are set
// ("" for none; the request head cap only when not the default).
func limitsBanner(c limits.Config, workers int) string {
	var parts []string
	add := func(on bool, format string, v any) {
		if on {
			parts = append(parts, fmt.Sprintf(format, v))
		}
	}
	add(c.MaxSessions > 0, "max-sessions=%d", c.MaxSessions)
	add(c.MaxSessionsPerIP > 0, "max-sessions-per-ip=%d", c.MaxSessionsPerIP)
	add(c.HandshakesPerIP > 0, "max-handshakes-per-ip=%g", c.HandshakesPerIP)
	add(c.MaxRequestHead != codec.MaxHeaderBytes && c.MaxRequestHead > 0, "max-request-head=%d", c.MaxRequestHead)
	add(c.MaxFrameSize > 0, "max-frame-size=%d", c.MaxFrameSize)
	if len(parts) == 0 {
		return ""
	}
	per := ""
	if workers > 1 {
		per = " (each worker its own)"
	}
	return "Limits" + per + ": " + strings.Join(parts, ", ")
}
