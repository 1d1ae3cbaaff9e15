// Helpers for the noVNC tests: a real TigerVNC server (Xvnc) per test, X
// clients that draw on its screen, and reading noVNC's canvas in a tab.
package test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The X programs the noVNC tests run; scripts/install-test-deps.sh installs
// their Debian packages.
const (
	xvncPath     = "/usr/bin/Xvnc"     // tigervnc-standalone-server
	xsetrootPath = "/usr/bin/xsetroot" // x11-xserver-utils
	xtermPath    = "/usr/bin/xterm"    // xterm
	// xterm's default font "fixed" is this one, which Xvnc reads from disk.
	xtermFont = "/usr/share/fonts/X11/misc/6x13-ISO8859-1.pcf.gz" // xfonts-base
)

// The screen every Xvnc starts with: the root window in rootColour.
const (
	screenW, screenH = 800, 600
	rootColour       = "#3060a0"
)

var rootRGB = rgb{0x30, 0x60, 0xa0}

// rgb is one pixel's colour.
type rgb struct{ R, G, B int }

func (c rgb) String() string { return fmt.Sprintf("#%02x%02x%02x", c.R, c.G, c.B) }

// near reports whether c is within a few steps of want on every channel: the
// canvas holds the server's pixels exactly, but a little slack keeps a
// colour-managed canvas from failing the test.
func (c rgb) near(want rgb) bool {
	d := func(a, b int) bool { return a-b <= 3 && b-a <= 3 }
	return d(c.R, want.R) && d(c.G, want.G) && d(c.B, want.B)
}

// requireFile fails the test when a file the noVNC tests need is missing.
func requireFile(t testing.TB, path, pkg string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s is missing (%v): `make test` installs it (%s, via scripts/install-test-deps.sh)", path, err, pkg)
	}
}

// xvnc is a running Xvnc: an X server whose screen is served over RFB.
type xvnc struct {
	display string // ":N"
	rfbAddr string // where VNC clients (the proxy) connect
	log     *lockedBuffer
}

// startXvnc starts Xvnc on a free display with its RFB port on 127.0.0.1,
// no authentication (noVNC then connects without a password) and every
// client shared, paints the root window rootColour, and stops the server when
// the test ends.
func startXvnc(t testing.TB) *xvnc {
	t.Helper()
	requireFile(t, xvncPath, "Debian package tigervnc-standalone-server")
	requireFile(t, xsetrootPath, "Debian package x11-xserver-utils")

	// -displayfd lets Xvnc pick a free display number and write it to the
	// pipe once it accepts X clients, so parallel tests never race for one.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	port := freePort(t, "127.0.0.1")
	x := &xvnc{rfbAddr: "127.0.0.1:" + strconv.Itoa(port), log: &lockedBuffer{}}
	cmd := exec.Command(xvncPath,
		"-displayfd", "3",
		"-rfbport", strconv.Itoa(port),
		"-interface", "127.0.0.1", // RFB on 127.0.0.1 only
		"-nolisten", "tcp", // X clients over the unix socket only
		"-SecurityTypes", "None",
		"-AlwaysShared", // 20 tabs share one screen
		"-geometry", fmt.Sprintf("%dx%d", screenW, screenH),
		"-depth", "24",
		"-desktop", "websockify-test",
	)
	cmd.ExtraFiles = []*os.File{w} // fd 3
	cmd.Stdout, cmd.Stderr = x.log, x.log
	if err := cmd.Start(); err != nil {
		w.Close()
		t.Fatalf("starting Xvnc: %v", err)
	}
	w.Close()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		stopProcess(cmd, done)
		if t.Failed() {
			t.Logf("Xvnc %s log:\n%s", x.display, truncate(x.log.String(), 8000))
		}
	})

	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		got <- strings.TrimSpace(line)
	}()
	select {
	case n := <-got:
		if _, err := strconv.Atoi(n); err != nil {
			t.Fatalf("Xvnc did not start (display %q); log:\n%s", n, x.log.String())
		}
		x.display = ":" + n
	case <-time.After(15 * time.Second):
		t.Fatalf("Xvnc did not report a display within 15s; log:\n%s", x.log.String())
	}
	// Make sure the RFB port accepts before the proxy's first client comes:
	// a refused client would fail the test for the wrong reason.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", x.rfbAddr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Xvnc not accepting RFB on %s: %v; log:\n%s", x.rfbAddr, err, x.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	x.setRoot(t, rootColour)
	return x
}

// stopProcess ends a child started by a test: SIGTERM, then SIGKILL after a
// second.
func stopProcess(cmd *exec.Cmd, done <-chan struct{}) {
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// command prepares name to run as a client of this X server.
func (x *xvnc) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "DISPLAY="+x.display)
	return cmd
}

// setRoot paints the root window in colour (an X colour name or #rrggbb).
func (x *xvnc) setRoot(t testing.TB, colour string) {
	t.Helper()
	if out, err := x.command(xsetrootPath, "-solid", colour).CombinedOutput(); err != nil {
		t.Fatalf("xsetroot -solid %s on %s: %v\n%s", colour, x.display, err, out)
	}
}

// The xterm startXterm opens: 40x8 characters of the default 6x13 font,
// black, with its top-left corner at (xtermX, xtermY) on the screen. There
// is no window manager, so it has no frame and keeps that place, and the
// keyboard goes to whatever window the pointer is in.
const (
	xtermX, xtermY = 200, 150
	xtermCols      = 40
	xtermRows      = 8
	fontW, fontH   = 6, 13
)

// xtermRect is the part of the screen sure to lie inside the xterm whatever
// its exact font: a band across its first text rows.
var xtermRect = [4]int{xtermX + 4, xtermY + 4, 200, 40} // x, y, w, h

// startXterm opens an xterm running /bin/sh, so text typed into it shows on
// the screen and commands typed into it run (with DISPLAY set to this
// server). It is stopped when the test ends.
func (x *xvnc) startXterm(t testing.TB) {
	t.Helper()
	requireFile(t, xtermPath, "Debian package xterm")
	requireFile(t, xtermFont, "Debian package xfonts-base")
	cmd := x.command(xtermPath,
		"-geometry", fmt.Sprintf("%dx%d+%d+%d", xtermCols, xtermRows, xtermX, xtermY),
		"-bg", "black", "-fg", "white", "-e", "/bin/sh")
	log := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting xterm: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		stopProcess(cmd, done)
		if t.Failed() && log.String() != "" {
			t.Logf("xterm output:\n%s", log.String())
		}
	})
}

// ---- noVNC's canvas in a tab ----

// canvasJS finds the canvas noVNC draws the remote screen on.
const canvasJS = `(document.querySelector('#screen canvas') || document.querySelector('canvas'))`

// canvasPixel reads the colour of screen pixel (x, y) from noVNC's canvas; ok
// is false while there is no canvas of the screen's size yet.
func canvasPixel(ctx context.Context, x, y int) (c rgb, ok bool, err error) {
	js := fmt.Sprintf(`(() => {
		const c = %s;
		if (!c || c.width !== %d || c.height !== %d) return [];
		return Array.from(c.getContext('2d').getImageData(%d, %d, 1, 1).data);
	})()`, canvasJS, screenW, screenH, x, y)
	px, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](js))
	if err != nil || len(px) < 3 {
		return rgb{}, false, err
	}
	return rgb{px[0], px[1], px[2]}, true, nil
}

// canvasLitPixels counts the pixels in rect (x, y, w, h) of the canvas that
// are not black: in the xterm, the text drawn there.
func canvasLitPixels(ctx context.Context, rect [4]int) (int, error) {
	js := fmt.Sprintf(`(() => {
		const c = %s;
		if (!c || c.width !== %d) return -1;
		const d = c.getContext('2d').getImageData(%d, %d, %d, %d).data;
		let n = 0;
		for (let i = 0; i < d.length; i += 4) if (d[i] + d[i+1] + d[i+2] > 96) n++;
		return n;
	})()`, canvasJS, screenW, rect[0], rect[1], rect[2], rect[3])
	return chromedp.Run(ctx, chromedp.Evaluate[int](js))
}

// waitPixel waits until canvas pixel (x, y) shows want, and says what it
// last saw if it does not.
func waitPixel(ctx context.Context, x, y int, want rgb) error {
	last := "no canvas yet"
	for {
		c, ok, err := canvasPixel(ctx, x, y)
		if err == nil && ok {
			if c.near(want) {
				return nil
			}
			last = c.String()
		} else if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("canvas pixel (%d,%d) is %s, want %s", x, y, last, want)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitText waits until the text of the element matching sel starts with
// prefix.
func waitText(ctx context.Context, sel, prefix string) error {
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.textContent : ""; })()`, sel)
	last := ""
	for {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err == nil {
			last = s
			if strings.HasPrefix(s, prefix) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s reads %q, want %q…", sel, last, prefix)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// canvasPoint is where screen pixel (x, y) is in the tab's viewport, for
// mouse events.
func canvasPoint(ctx context.Context, x, y int) (float64, float64, error) {
	js := fmt.Sprintf(`(() => {
		const c = %s, r = c.getBoundingClientRect();
		return [r.left + %d * r.width / c.width, r.top + %d * r.height / c.height];
	})()`, canvasJS, x, y)
	p, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](js))
	if err != nil {
		return 0, 0, err
	}
	if len(p) != 2 {
		return 0, 0, fmt.Errorf("canvas position: got %v", p)
	}
	return p[0], p[1], nil
}

// copyTree copies the regular files and folders under src to dst; other
// entries (Debian's novnc has a symlink) are skipped. The noVNC tests serve
// copies with --web, whose server refuses symlinks leading out of its root.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			in, err := os.Open(path)
			if err != nil {
				return err
			}
			defer in.Close()
			out, err := os.Create(target)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, in); err != nil {
				out.Close()
				return err
			}
			return out.Close()
		}
		return nil
	})
}
