package main

import (
	"strings"
	"testing"
	"time"
)

// One-connection and many-connection throughput land in separate tables,
// each compared with the relay's run over the same number of connections;
// results written before -conns existed count as one connection.
func TestReportThroughputTables(t *testing.T) {
	tput := func(label, dir string, conns int, samples ...float64) *Result {
		return &Result{Mode: "throughput", Label: label, Dir: dir, ConnsWanted: conns, Bytes: 1 << 20,
			MBps: newSpread(samples), ProxyCPU: newSpread([]float64{50, 60}), Time: "2026-11-27T15:00:00Z"}
	}
	failed := tput("node", "up", 100, 30)
	failed.Error = "run 2: proxy died"
	all := []*Result{
		tput("relay", "down", 0, 1000, 900, 1100), tput("relay", "up", 0, 800),
		tput("ours", "down", 1, 800, 700, 900), tput("ours", "up", 1, 400),
		tput("relay", "down", 100, 2000), tput("relay", "up", 100, 1000),
		tput("ours", "down", 100, 1000), failed,
	}
	var b strings.Builder
	writeReport(&b, all, &reportFlags{order: "ours,python,node,relay", ours: "ours", goVersion: "go1.x", nodeVersion: "0.7.1"})
	got := b.String()
	one, many, ok := strings.Cut(got, "### Throughput, 100 connections at once")
	if !ok || !strings.Contains(one, "### Throughput, one connection") {
		t.Fatalf("missing a throughput table:\n%s", got)
	}
	for _, want := range []string{
		"| ours | 800 [700–900] | 0.80 | 400 | 0.50 | 1.0 MiB | 3 / 1 | 55 [50–60] / 55 [50–60] |",
		"| python | not measured yet |",
		"| throughput down, one connection, ≥ 0.8 × relay | 0.80 × relay | met |",
		"Node websockify 0.7.1",
	} {
		if !strings.Contains(one, want) {
			t.Errorf("one-connection part lacks %q:\n%s", want, one)
		}
	}
	for _, want := range []string{
		"| ours | 1000 | 0.50 | not measured yet | - |",
		"| node | not measured yet | - | 30 (then failed, see below) | 0.030 |",
		"- node, throughput up, 100 connections failed: run 2: proxy died",
	} {
		if !strings.Contains(many, want) {
			t.Errorf("100-connection part lacks %q:\n%s", want, many)
		}
	}
}

// -conns through the relay: every connection's share arrives, and the rate
// is over all of them.
func TestThroughputManyConnsThroughRelay(t *testing.T) {
	for _, dir := range []string{"down", "up"} {
		cfg := &settings{mode: "throughput", relay: true, target: "127.0.0.1:0", opTimeout: 20 * time.Second,
			repeat: 2, dir: dir, nbytes: 4<<20 + 3, frameSize: 64 << 10, conns: 10}
		r := runMode(t, cfg)
		if r.MBps == nil || len(r.MBps.Samples) != 2 || r.ConnsOpen != 10 || r.Bytes != (4<<20+3)/10*10 {
			t.Fatalf("throughput %s over 10: %s", dir, summarize(r))
		}
	}
}
