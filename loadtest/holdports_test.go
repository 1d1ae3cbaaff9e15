package main

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// A hold over four target ports through our proxy's TokenFile: every
// holder asks for its own token, so every session held and echoing again
// after the reading proves all four tokens led to their targets; the memory
// per session comes from the curve's slope.
func TestHoldOverFourTargetPorts(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "websockify")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/websockify").CombinedOutput(); err != nil {
		t.Fatalf("building the proxy: %v\n%s", err, out)
	}
	cfg := &settings{mode: "hold", proxyCmd: bin + " --token-plugin TokenFile --token-source {token_file} {listen}", label: "ours",
		target: "127.0.0.1:0", opTimeout: 20 * time.Second, rampTimeout: 60 * time.Second, dialParallel: 8, maxFail: 5,
		conns: 400, settle: 200 * time.Millisecond, targetPorts: 4, proxyProcs: -1}
	r := runMode(t, cfg)
	if r.ConnsOpen != 400 || r.Holders != 4 || r.AliveChecked != 400 || r.AliveOK != 400 {
		t.Fatalf("want 400 held by 4 holders, every one echoing again: %s", summarize(r))
	}
	if r.MemFit == nil || r.MemFit.Points < minFitPoints {
		t.Fatalf("no slope fitted: %+v", r.MemFit)
	}
	if len(r.MemCurve) < minFitPoints+1 || r.MemCurve[len(r.MemCurve)-1].Sessions != 400 {
		t.Errorf("raw series %+v: want the readings up to the settled one at 400", r.MemCurve)
	}
}

// With the flags' zero values (as the relay test builds them) a hold still
// runs on one port, and -target-ports needs a proxy command with the file.
func TestCheckHoldDefaults(t *testing.T) {
	c := &settings{mode: "hold", relay: true}
	if err := c.checkHold(); err != nil || c.targetPorts != 1 {
		t.Fatalf("zero settings: %v, %d ports", err, c.targetPorts)
	}
}
