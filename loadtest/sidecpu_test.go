package main

import (
	"os"
	"testing"
)

func TestCPUListLen(t *testing.T) {
	for list, want := range map[string]int{"0": 1, "0-1": 2, "0,2-5": 5, "1,3": 2, "": -1, "a-b": -1, "3-1": -1} {
		if got := cpuListLen(list); got != want {
			t.Errorf("cpuListLen(%q) = %d, want %d", list, got, want)
		}
	}
}

// The client's CPU is this process's: busy work in a window must show.
func TestSideMeterReadsClientCPU(t *testing.T) {
	e := &env{}
	m := startSide(e)
	x := 0
	for i := 0; i < 200_000_000; i++ {
		x += i ^ (x >> 3)
	}
	m.record(e)
	if len(e.clientCPU) != 1 || e.clientCPU[0] < 20 {
		t.Fatalf("client CPU %v after a busy loop (x=%d), want one figure of at least 20%%", e.clientCPU, x)
	}
	if len(e.targetCPU) != 0 {
		t.Fatalf("target CPU %v without a target", e.targetCPU)
	}
	if cpusAllowed(os.Getpid()) == "" {
		t.Fatal("no Cpus_allowed_list for this process")
	}
}
