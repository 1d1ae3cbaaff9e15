package wrap

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procNet is where the kernel lists sockets; a variable so a test can take
// it away and exercise the fallback.
var procNet = "/proc/net"

// ipv6Settle is how long WaitListening waits for an IPv4 listener once it
// has found an IPv6 one alone.
const ipv6Settle = 500 * time.Millisecond

// pickLoopbackPort returns a port free on 127.0.0.1, and on ::1 too where
// IPv6 is available, since rebind.so moves IPv6 binds there.
func pickLoopbackPort() (int, error) {
	for range 20 {
		l4, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("picking a loopback port for the wrapped program: %w", err)
		}
		port := l4.Addr().(*net.TCPAddr).Port
		l6, err := net.Listen("tcp6", net.JoinHostPort("::1", strconv.Itoa(port)))
		l4.Close()
		if err == nil {
			l6.Close()
			return port, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return port, nil // no IPv6 loopback: 127.0.0.1 is all that counts
		}
	}
	return 0, errors.New("picking a loopback port for the wrapped program: no port free on both 127.0.0.1 and ::1")
}

// WaitListening waits up to timeout for the program to listen on its
// loopback port, and points TargetAddr at [::1] if that is the only
// loopback address it listens on. It fails when the time runs out (the
// program never binds its port, or binds it late), when the program ends
// first in Exit mode, or when Stop is called.
//
// It looks at the kernel's socket tables rather than connecting, so the
// program sees no stray connection; only without /proc does it connect.
//
// A timeout is best logged as a warning while websockify keeps serving, as
// the original does (it never checks): a slow program may still bind, each
// client that comes too early gets a failed connection to the target, and
// in Exit mode Exited still reports a program that ended.
func (p *Program) WaitListening(timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	var settle <-chan time.Time
	for {
		ipv4, ipv6 := loopbackListeners(p.port)
		if ipv4 {
			return nil
		}
		if ipv6 && settle == nil {
			// A dual-stack program often binds its IPv6 socket first; give
			// its IPv4 one a moment before settling for ::1.
			settle = time.After(ipv6Settle)
		}
		select {
		case <-settle:
			p.targetIPv6()
			return nil
		case <-poll.C:
		case <-deadline.C:
			if ipv6 {
				p.targetIPv6()
				return nil
			}
			return fmt.Errorf("'%s' is not listening on 127.0.0.1:%d or [::1]:%d after %v: it should listen on port %d, where rebind.so moves it from",
				p.command, p.port, p.port, timeout, p.cfg.ListenPort)
		case <-p.ended:
			p.mu.Lock()
			status := p.exitStatus
			p.mu.Unlock()
			return fmt.Errorf("'%s' exited with status %d before listening on port %d", p.command, status, p.cfg.ListenPort)
		case <-p.stopping:
			return fmt.Errorf("'%s' was stopped before listening on port %d", p.command, p.cfg.ListenPort)
		}
	}
}

// targetIPv6 points TargetAddr at [::1].
func (p *Program) targetIPv6() {
	p.mu.Lock()
	p.target = net.JoinHostPort("::1", strconv.Itoa(p.port))
	p.mu.Unlock()
}

// loopbackListeners tells whether a TCP socket listens on port where a
// connection to 127.0.0.1 reaches it, and where one to ::1 does.
func loopbackListeners(port int) (ipv4, ipv6 bool) {
	v4, err4 := readListeners(filepath.Join(procNet, "tcp"))
	v6, err6 := readListeners(filepath.Join(procNet, "tcp6"))
	if err4 != nil && err6 != nil {
		return dialListeners(port)
	}
	for _, addr := range append(v4, v6...) {
		if int(addr.Port()) != port {
			continue
		}
		ip := addr.Addr()
		switch {
		case ip.Unmap() == netip.AddrFrom4([4]byte{127, 0, 0, 1}), ip.Unmap() == netip.IPv4Unspecified():
			ipv4 = true
		case ip == netip.IPv6Loopback(), ip == netip.IPv6Unspecified():
			ipv6 = true
		}
	}
	return ipv4, ipv6
}

// readListeners returns the local addresses of the listening sockets in
// /proc/net/tcp or tcp6.
func readListeners(path string) ([]netip.AddrPort, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var listeners []netip.AddrPort
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		// "sl local_address rem_address st ...", local as ADDR:PORT in hex.
		fields := strings.Fields(lines.Text())
		if len(fields) < 4 || fields[3] != "0A" { // 0A: TCP_LISTEN
			continue
		}
		if addr, ok := parseProcAddr(fields[1]); ok {
			listeners = append(listeners, addr)
		}
	}
	return listeners, lines.Err()
}

// parseProcAddr parses /proc/net/tcp's "0100007F:1F90". The kernel prints
// the address as 32-bit words in host byte order, so each word is laid
// back in memory order to give the address's bytes.
func parseProcAddr(text string) (netip.AddrPort, bool) {
	hexAddr, hexPort, ok := strings.Cut(text, ":")
	if !ok || (len(hexAddr) != 8 && len(hexAddr) != 32) {
		return netip.AddrPort{}, false
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	raw, err := hex.DecodeString(hexAddr)
	if err != nil {
		return netip.AddrPort{}, false
	}
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(raw[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	ip, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(ip, uint16(port)), true
}

// dialListeners answers loopbackListeners by connecting, when /proc/net
// cannot be read.
func dialListeners(port int) (ipv4, ipv6 bool) {
	try := func(host string) bool {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), 200*time.Millisecond)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}
	if try("127.0.0.1") {
		return true, false
	}
	return false, try("::1")
}
