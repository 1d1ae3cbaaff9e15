package main

import (
	"errors"
	"flag"
	"fmt"
	"image/color"
	"math"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// plotMain is the "plot" mode: it draws the proxies' memory against the
// sessions they held, from the memory curves of hold results, as a PNG.
//
//	loadtest plot -out bench/memory.png bench/results/*.jsonl
func plotMain(args []string) error {
	fs := flag.NewFlagSet("plot", flag.ContinueOnError)
	out := fs.String("out", "memory.png", "PNG file to write")
	title := fs.String("title", "Proxy memory against sessions held", "title of the plot")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("no results files given (usage: loadtest plot -out FILE.png RESULTS.jsonl ...)")
	}
	var holds []*Result
	for _, path := range fs.Args() {
		rs, err := readResults(path)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if r.Mode == "hold" && len(r.MemCurve) > 1 {
				holds = append(holds, r)
			}
		}
	}
	if len(holds) == 0 {
		return errors.New("no hold results with a memory curve in the files given")
	}
	return writeMemoryPlot(*out, *title, sortedHolds(holds))
}

// plotColors tell the proxies apart; the dashed grey line is the 2 KiB per
// session aim.
var plotColors = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
	color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
}

// writeMemoryPlot draws one line per hold result: the proxy's private dirty
// memory (its whole process tree) above its idle memory, against sessions
// open. Idle memory is the intercept of the line fitted to the curve (the
// reading before the first session for results without a fit): a heap that
// is still shrinking from start-up when the ramp begins would otherwise put
// the first points below zero, off a log axis. Both axes are logarithmic: the proxies
// differ by three orders of magnitude in memory per session and by two in
// how many sessions they reach.
func writeMemoryPlot(path, title string, holds []*Result) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "sessions held"
	p.Y.Label.Text = "proxy memory above idle (private dirty, MiB)"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = ticks125{}, ticks125{}
	p.Legend.Top, p.Legend.Left = true, true
	p.Add(plotter.NewGrid())

	const mib = 1 << 20
	maxSessions, minY := 0.0, 0.0
	for i, r := range holds {
		base := r.MemCurve[0].PrivateDirty
		if f := r.MemFit; f != nil && f.Points >= minFitPoints {
			base = int64(f.InterceptBytes)
		}
		var pts plotter.XYs
		for _, m := range r.MemCurve {
			above := float64(m.PrivateDirty-base) / mib
			if m.Sessions <= 0 || above <= 0 {
				continue // no room for zero on a log axis
			}
			pts = append(pts, plotter.XY{X: float64(m.Sessions), Y: above})
			maxSessions = max(maxSessions, float64(m.Sessions))
			if minY == 0 || above < minY {
				minY = above
			}
		}
		if len(pts) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return err
		}
		c := plotColors[i%len(plotColors)]
		line.Color, points.Color = c, c
		line.Width = vg.Points(1.5)
		points.Shape = draw.CircleGlyph{}
		p.Add(line, points)
		p.Legend.Add(legendName(r), line, points)
	}
	if maxSessions == 0 {
		return errors.New("no memory readings above the idle baseline to plot")
	}
	// The aim: 2 KiB per idle session.
	aim := plotter.NewFunction(func(x float64) float64 { return x * 2048 / mib })
	aim.Color = color.Gray{Y: 0x80}
	aim.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	aim.XMin, aim.XMax = max(10, minY*mib/2048), maxSessions
	p.Add(aim)
	p.Legend.Add("2 KiB per session", aim)
	p.X.Min = 10
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}

// ticks125 marks a logarithmic axis at 1, 2 and 5 times each power of ten,
// all labelled: the ranges plotted here can fall between two powers of ten,
// where plot.LogTicks would print no label at all.
type ticks125 struct{}

func (ticks125) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi; e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if v < lo || v > hi {
				continue
			}
			label := strconv.FormatFloat(v, 'f', -1, 64)
			if v >= 1000 {
				label = strconv.FormatFloat(v/1000, 'f', -1, 64) + "k"
			}
			ts = append(ts, plot.Tick{Value: v, Label: label})
		}
	}
	return ts
}

// legendName is the proxy's label with what it reached.
func legendName(r *Result) string {
	name := fmt.Sprintf("%s: %d sessions", r.Label, r.ConnsOpen)
	if r.PerSession != nil {
		name += fmt.Sprintf(", %s each", fmtBytes(heldBytesPerSession(r)))
	}
	if r.StopReason != "" {
		name += " (stopped)"
	}
	return name
}

// sortedHolds orders hold results by label, for a stable legend.
func sortedHolds(rs []*Result) []*Result {
	out := slices.Clone(rs)
	slices.SortStableFunc(out, func(a, b *Result) int { return strings.Compare(a.Label, b.Label) })
	return out
}
