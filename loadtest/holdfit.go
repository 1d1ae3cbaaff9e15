package main

import "math"

// memFit is a least-squares line through the proxy's private dirty memory
// against sessions held, read at several counts during a hold's ramp. Its
// slope is what one more session costs; a single reading before the ramp
// and one after it cannot say that, because the heap before (warm-up
// sessions just closed, not yet collected) may be larger than the heap
// afterwards, which made 5,000 sessions look like they freed memory.
type memFit struct {
	BytesPerSession float64 `json:"bytes_per_session"` // slope
	InterceptBytes  float64 `json:"intercept_bytes"`   // the line at 0 sessions: the proxy's own memory
	R2              float64 `json:"r2"`                // 1: every reading on the line
	ResidualBytes   float64 `json:"residual_bytes"`    // root mean square distance of the readings from the line
	Points          int     `json:"points"`            // readings the line was fitted to
}

// minFitPoints is the fewest readings a slope is trusted from.
const minFitPoints = 3

// fitMemory fits private dirty against sessions over the readings taken with
// sessions open. The reading at 0 is left out when enough others remain: it
// is taken as the holders start, before the proxy has settled from the
// warm-up. Nil when there are too few distinct counts for a line.
func fitMemory(curve []memPoint) *memFit {
	var pts []memPoint
	for _, p := range curve {
		if p.Sessions > 0 {
			pts = append(pts, p)
		}
	}
	if len(pts) < minFitPoints {
		pts = curve
	}
	if len(pts) < 2 {
		return nil
	}
	xs, ys := make([]float64, len(pts)), make([]float64, len(pts))
	for i, p := range pts {
		xs[i], ys[i] = float64(p.Sessions), float64(p.PrivateDirty)
	}
	l, ok := fitLine(xs, ys)
	if !ok {
		return nil
	}
	return &memFit{BytesPerSession: l.slope, InterceptBytes: l.intercept, R2: l.r2, ResidualBytes: l.rms, Points: len(pts)}
}

// line is a least-squares fit y = intercept + slope*x.
type line struct {
	slope, intercept float64
	r2               float64 // 1: every point on the line
	rms              float64 // root mean square distance of the points from the line
}

// fitLine fits a line through the points (xs[i], ys[i]); false when there
// are fewer than two points or all share one x.
func fitLine(xs, ys []float64) (line, bool) {
	if len(xs) < 2 || len(xs) != len(ys) {
		return line{}, false
	}
	n := float64(len(xs))
	var sx, sy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
	}
	mx, my := sx/n, sy/n
	var sxx, sxy, syy float64
	for i := range xs {
		dx, dy := xs[i]-mx, ys[i]-my
		sxx += dx * dx
		sxy += dx * dy
		syy += dy * dy
	}
	if sxx == 0 {
		return line{}, false
	}
	l := line{slope: sxy / sxx}
	l.intercept = my - l.slope*mx
	var ssRes float64
	for i := range xs {
		d := ys[i] - (l.intercept + l.slope*xs[i])
		ssRes += d * d
	}
	l.rms = math.Sqrt(ssRes / n)
	l.r2 = 1
	if syy > 0 {
		l.r2 = 1 - ssRes/syy
	}
	return l, true
}

// heldBytesPerSession is a hold result's proxy memory per session: the
// slope of its memory curve when there is one, else (results from before
// the fit) the difference of the readings before and after over sessions.
func heldBytesPerSession(r *Result) float64 {
	if r.MemFit != nil && r.MemFit.Points >= minFitPoints {
		return r.MemFit.BytesPerSession
	}
	if r.PerSession != nil {
		return r.PerSession.PrivateDirty
	}
	return 0
}
