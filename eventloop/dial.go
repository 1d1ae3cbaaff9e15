package eventloop

import (
	"context"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// wholePortRange gives a socket about to connect a per-socket source port
// range as wide as the system's. Every session dials the same target, so
// only the source port tells those connections apart, and Linux picks it
// preferring ports of one parity (leaving the others to bind): once that
// half is used up, about 32,000 sessions with the widest range, each dial
// scans all of it before trying the other half, and set-ups slow to a crawl.
// A per-socket range, even the system's own, turns the preference off
// (measured on Linux 6.18; kernels without the option refuse it, which is
// harmless).
func wholePortRange(_, _ string, rc syscall.RawConn) error {
	_ = rc.Control(func(fd uintptr) {
		// high<<16 | low: 1-65535 is clamped to the system's range.
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_LOCAL_PORT_RANGE, 65535<<16|1)
	})
	return nil
}

// dialTarget connects to a target (the configured one, or the one a token
// named), trying every resolved
// address in order (and skipping the resolver for an IP literal); with -6
// the IPv6 addresses are tried first. One address at a time: Go's "happy
// eyeballs" would race two sockets, one more than the descriptor budget
// reserves for a dial.
func (srv *server) dialTarget(ctx context.Context, network, addr string) (net.Conn, error) {
	// ctx carries the timeout. SO_KEEPALIVE with the system's timings, as
	// the original sets it; each timing would cost a syscall per session.
	d := net.Dialer{
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1},
		FallbackDelay:   -1,
	}
	if network == "tcp" {
		d.Control = wholePortRange
	}
	if network == "unix" || !srv.cfg.PreferIPv6 {
		return d.DialContext(ctx, network, addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("no address for %s", host)
	}
	sortIPv6First(ips)
	for _, ip := range ips {
		var c net.Conn
		if c, err = d.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), port)); err == nil {
			return c, nil
		}
	}
	return nil, err
}

func sortIPv6First(ips []net.IPAddr) {
	v6 := make([]net.IPAddr, 0, len(ips))
	v4 := make([]net.IPAddr, 0, len(ips))
	for _, ip := range ips {
		if ip.IP.To4() == nil {
			v6 = append(v6, ip)
		} else {
			v4 = append(v4, ip)
		}
	}
	copy(ips, append(v6, v4...))
}

// dialReserve is how many descriptors a dial may hold at once beyond the
// client's: the dialed socket and gnet's dup of it (Enroll), plus, for a
// target given by name, the resolver's two sockets (A and AAAA queries run
// together). A token may name any target, so with a token plugin every dial
// may resolve a name.
func dialReserve(cfg Config) int64 {
	if cfg.Tokens != nil {
		return 4
	}
	if cfg.TargetNetwork == "tcp" {
		host, _, err := net.SplitHostPort(cfg.TargetAddr)
		if err == nil && net.ParseIP(host) == nil {
			return 4
		}
	}
	return 2
}
