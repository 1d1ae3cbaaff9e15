package main

import (
	"strings"
	"testing"
)

// The hold table and the targets use the slope of the memory curve, show
// the kernel's slab figures, and the biggest hold's limit checks are listed.
func TestReportHoldUsesSlopeAndSlab(t *testing.T) {
	w := &Result{Mode: "hold", Label: "ours-workers", Commit: "c1", ConnsWanted: 100000, ConnsOpen: 100000, AliveChecked: 100000, AliveOK: 100000,
		PerSession: &perSession{PrivateDirty: -300}, MemAfter: &memSnapshot{Procs: 13},
		MemFit:    &memFit{BytesPerSession: 1900, InterceptBytes: 40 << 20, R2: 0.9991, Points: 21},
		Slab:      &slabUse{TCP: 10000, Files: 5600, Epoll: 400, Total: 16000},
		Preflight: []string{"ok: net.ipv4.ip_local_port_range 32768-60999 has 28232 ports for 25000 connections per target port (+1000 spare)", `raised for the run: x (net.ipv4.tcp_mem, was "1 2 3", now "4 5 6")`}}
	got := reportOf([]*Result{w})
	for _, want := range []string{
		"| ours-workers | 100000 of 100000 | 1900 B | R² 0.9991 over 21 readings, intercept 40.0 MiB | -300 B |",
		"| 15.6 KiB (10000 B + 5600 B + 400 B) | 100000 of 100000 |",
		"#### Kernel limits for 100000 sessions (ours-workers)",
		"- raised for the run: x (net.ipv4.tcp_mem",
		"1 of the limits had to move",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if row := targetRow(got, "≥ 100000 sessions held with --workers"); !strings.Contains(row, "100000 held, 1900 B private dirty each | met") {
		t.Errorf("scale target row %q", row)
	}
}
