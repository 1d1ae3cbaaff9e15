package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// A hold over several target ports, as a deployment with many VNC servers
// runs: the tool starts echo targets on -target-ports ports of 127.0.0.1,
// writes a TokenFile mapping token tK to the K-th of them, and the holders'
// sessions ask for the tokens in turn. One (source, destination) pair takes
// at most about 64,000 connections, and every connection from the proxy to a
// target shares the source address 127.0.0.1, so 100,000 sessions need more
// than one destination port.

// tokenFilePlaceholder is where -proxy-cmd takes the TokenFile's path.
const tokenFilePlaceholder = "{token_file}"

// checkHold checks the hold mode's own flags.
func (c *settings) checkHold() error {
	if c.targetPorts == 0 {
		c.targetPorts = 1 // settings built without the flags
	}
	if c.targetPorts < 1 {
		return errors.New("-target-ports must be at least 1")
	}
	if c.proxyProcs < -1 {
		return errors.New("-proxy-procs must be -1 (from --workers), 0 (forking) or a count")
	}
	if c.aliveSample < 0 {
		return errors.New("-alive-sample must not be negative (0: every session)")
	}
	if c.targetPorts > 1 {
		if c.proxyCmd == "" || c.relay {
			return errors.New("-target-ports needs -proxy-cmd: the tool writes the TokenFile the proxy is started with")
		}
		if !strings.Contains(c.proxyCmd, tokenFilePlaceholder) {
			return fmt.Errorf("-target-ports %d: -proxy-cmd must pass %s, as in --token-plugin TokenFile --token-source %s", c.targetPorts, tokenFilePlaceholder, tokenFilePlaceholder)
		}
		if c.path != "" {
			return errors.New("-target-ports chooses each session's token itself: leave out -path")
		}
	}
	return nil
}

// holdToken is the token of the k-th target port.
func holdToken(k int) string { return fmt.Sprintf("t%d", k) }

// startTokenTargets starts echo targets on cfg.targetPorts ports, each with
// its share of the sessions, writes the TokenFile and returns the first
// target and the proxy command with the file's path in it. Sessions opened
// through e.client (the warm-up) use the first token.
func startTokenTargets(cfg *settings, kind string) (*targetProc, string, error) {
	dir, err := os.MkdirTemp("", "loadtest-hold-")
	if err != nil {
		return nil, "", err
	}
	atCleanup(func() { _ = os.RemoveAll(dir) })
	var first *targetProc
	var lines strings.Builder
	per := (cfg.conns + cfg.targetPorts - 1) / cfg.targetPorts
	for k := range cfg.targetPorts {
		t, err := startTargets(kind, "127.0.0.1:0", targetBytes(cfg), per)
		if err != nil {
			return nil, "", err
		}
		if first == nil {
			first = t
		}
		fmt.Fprintf(&lines, "%s: %s\n", holdToken(k), t.addr)
	}
	file := filepath.Join(dir, "tokens")
	if err := os.WriteFile(file, []byte(lines.String()), 0o644); err != nil {
		return nil, "", err
	}
	// A file stamped just now may still change within its mtime tick, so
	// TokenFile re-reads it on every lookup until it is older: the first
	// sessions would each parse it and leave garbage in the proxy's heap
	// that the curve then shows shrinking. The file is written once and
	// for all, so it may as well look a minute old.
	old := time.Now().Add(-time.Minute)
	if err := os.Chtimes(file, old, old); err != nil {
		return nil, "", err
	}
	cfg.path = "/?token=" + holdToken(0)
	return first, strings.ReplaceAll(cfg.proxyCmd, tokenFilePlaceholder, file), nil
}

// holderCount is how many holder children hold conns sessions: enough that
// none opens more than sessionsPerHolder, and a multiple of the target
// ports, so that each port gets the same number of holders.
func holderCount(conns, ports int) int {
	n := (conns + sessionsPerHolder - 1) / sessionsPerHolder
	if ports > 1 {
		n = (n + ports - 1) / ports * ports
	}
	return max(1, n)
}

// holderURL is the proxy URL holder i dials: with several target ports,
// holders take the tokens in turn.
func holderURL(e *env, i int) string {
	if e.cfg.targetPorts <= 1 {
		return e.client.url.String()
	}
	u := *e.client.url
	u.Path, u.RawPath, u.RawQuery = "/", "", "token="+holdToken(i%e.cfg.targetPorts)
	return u.String()
}

// aliveShare is what one of holders holders re-checks after the reading:
// all it holds (0) when sample is 0, else its part of sample.
func aliveShare(sample, holders, holding int) int {
	if sample == 0 {
		return 0
	}
	return min(holding, max(1, sample/holders))
}
