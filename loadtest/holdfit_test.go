package main

import (
	"math"
	"testing"
)

// The slope ignores a baseline read while the heap was larger: the case
// that made 5,000 sessions come out negative by two readings.
func TestFitMemorySlopeIgnoresHighBaseline(t *testing.T) {
	curve := []memPoint{{Sessions: 0, PrivateDirty: 20 << 20}}
	for n := 500; n <= 5000; n += 500 {
		noise := int64(n%1000) * 3 // a little off the line
		curve = append(curve, memPoint{Sessions: n, PrivateDirty: 8<<20 + int64(n)*1800 + noise})
	}
	f := fitMemory(curve)
	if f == nil {
		t.Fatal("no fit")
	}
	if math.Abs(f.BytesPerSession-1800) > 5 {
		t.Errorf("slope %.1f, want about 1800", f.BytesPerSession)
	}
	if math.Abs(f.InterceptBytes-8<<20) > 16<<10 {
		t.Errorf("intercept %.0f, want about %d", f.InterceptBytes, 8<<20)
	}
	if f.Points != 10 || f.R2 < 0.999 || f.ResidualBytes <= 0 {
		t.Errorf("fit %+v: want 10 points, R² near 1, some residual", *f)
	}
	r := &Result{MemFit: f, PerSession: &perSession{PrivateDirty: -300}}
	if got := heldBytesPerSession(r); got != f.BytesPerSession {
		t.Errorf("heldBytesPerSession = %.1f, want the slope", got)
	}
	r.MemFit = nil
	if got := heldBytesPerSession(r); got != -300 {
		t.Errorf("without a fit heldBytesPerSession = %.1f, want the two-reading figure", got)
	}
}

func TestFitMemoryNeedsTwoCounts(t *testing.T) {
	if f := fitMemory([]memPoint{{Sessions: 100, PrivateDirty: 1}}); f != nil {
		t.Errorf("one reading gave a fit %+v", *f)
	}
	if f := fitMemory([]memPoint{{Sessions: 100, PrivateDirty: 1}, {Sessions: 100, PrivateDirty: 2}}); f != nil {
		t.Errorf("one count gave a fit %+v", *f)
	}
}

func TestSlabPerSessionGroups(t *testing.T) {
	before := slabSnapshot{"TCP": 1000, "filp": 100, "dentry": 50, "eventpoll_epi": 10, "kmalloc-64": 5}
	after := slabSnapshot{"TCP": 1000 + 4*2400, "filp": 100 + 400, "dentry": 50 + 200, "eventpoll_epi": 10 + 300, "kmalloc-64": 105}
	u := slabPerSession(before, after, 1)
	if u == nil {
		t.Fatal("nil")
	}
	if u.TCP != 9600 || u.Files != 600 || u.Epoll != 300 || u.Total != 10500 || u.AllSum != 10600 {
		t.Errorf("got %+v", *u)
	}
	if _, ok := u.After["kmalloc-64"]; ok {
		t.Error("ungrouped caches kept in the result")
	}
	if slabPerSession(nil, after, 1) != nil {
		t.Error("a fit without the before reading")
	}
	if got := readSlabinfo(); got != nil && got["TCP"] <= 0 {
		t.Errorf("/proc/slabinfo read but no TCP cache: %d caches", len(got))
	}
}
