package main

import (
	"strings"
	"syscall"
	"testing"
)

func TestNeedsOfSpreadsOverPortsAndWorkers(t *testing.T) {
	cfg := &settings{conns: 100000, targetPorts: 4, proxyProcs: -1, proxyCmd: "bin/websockify --workers 12 --token-plugin TokenFile --token-source {token_file} {listen}"}
	n := needsOf(cfg)
	if n.perPair != 25000 || n.proxyProcs != 12 {
		t.Errorf("per pair %d, proxy processes %d: want 25000 and 12", n.perPair, n.proxyProcs)
	}
	if n.perProcFDs > 20000 || n.perProcFDs < 2*100000/12 {
		t.Errorf("%d descriptors per proxy process: want between an even share and the 20,000 limit", n.perProcFDs)
	}
	cfg.proxyCmd = "bin/websockify --workers=3 {listen} {target}"
	if n := needsOf(cfg); n.proxyProcs != 3 {
		t.Errorf("--workers=3 read as %d processes", n.proxyProcs)
	}
	cfg.proxyProcs = 0 // forking
	if n := needsOf(cfg); n.proxyProcs != 0 || n.perProcFDs != sessionsPerTarget+fdSlack {
		t.Errorf("forking proxy: %+v", n)
	}
}

// A hold that cannot fit is refused before anything starts, naming what to
// change. Only reads the machine's settings (tune is false).
func TestPreflightRefusesWhatCannotFit(t *testing.T) {
	cfg := &settings{conns: 100000, targetPorts: 1, proxyProcs: 1, proxyCmd: "bin/websockify {listen} {target}"}
	lines, err := preflight(cfg, false)
	if err == nil {
		t.Fatalf("100,000 sessions to one port through one process accepted: %q", lines)
	}
	wants := []string{"2 with the range widened", "-tune-kernel"}
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil && rl.Max < 200000 {
		wants = append(wants, "--workers")
	}
	for _, want := range wants {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal does not mention %q: %v", want, err)
		}
	}
	cfg = &settings{conns: 100, targetPorts: 1, proxyProcs: -1, proxyCmd: "bin/websockify {listen} {target}"}
	lines, err = preflight(cfg, false)
	if err != nil {
		t.Fatalf("100 sessions refused: %v", err)
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "ok: net.ipv4.ip_local_port_range") {
		t.Errorf("checks said %q", lines)
	}
}

func TestHolderCountAndTokens(t *testing.T) {
	for _, c := range []struct{ conns, ports, want int }{{5000, 1, 1}, {50000, 1, 7}, {100000, 4, 16}, {6000, 4, 4}} {
		if got := holderCount(c.conns, c.ports); got != c.want {
			t.Errorf("holderCount(%d, %d) = %d, want %d", c.conns, c.ports, got, c.want)
		}
	}
	if aliveShare(0, 4, 100) != 0 || aliveShare(100, 4, 10) != 10 || aliveShare(100, 4, 1000) != 25 {
		t.Error("aliveShare")
	}
	bad := []settings{
		{mode: "hold", targetPorts: 4, proxyCmd: "bin/websockify {listen} {target}"},
		{mode: "hold", targetPorts: 4, proxyURL: "ws://127.0.0.1:1/"},
		{mode: "hold", targetPorts: -1},
		{mode: "hold", targetPorts: 1, aliveSample: -1},
	}
	for _, c := range bad {
		if err := c.checkHold(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
