package eventloop

import (
	"fmt"
	"net"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// bindProbe binds addr without SO_REUSEPORT, which fails while anyone
// listens there, and never listens itself: a probe that listened, however
// briefly, would complete the handshakes of clients that arrive just then
// and reset them when it closed.
func bindProbe(addr string) error {
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return err
	}
	family, sa := unix.AF_INET6, unix.Sockaddr(&unix.SockaddrInet6{Port: ta.Port})
	if ip4 := ta.IP.To4(); ip4 != nil {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: ta.Port, Addr: [4]byte(ip4)}
	} else if ta.IP != nil {
		sa6 := &unix.SockaddrInet6{Port: ta.Port, Addr: [16]byte(ta.IP.To16())}
		if ta.Zone != "" {
			if ifi, err := net.InterfaceByName(ta.Zone); err == nil {
				sa6.ZoneId = uint32(ifi.Index)
			}
		}
		sa = sa6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("listen tcp %s: %w", addr, err)
	}
	defer unix.Close(fd)
	// As gnet's listeners: SO_REUSEADDR (so a port in TIME_WAIT is free)
	// and, for the all-addresses form, both IPv4 and IPv6.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if family == unix.AF_INET6 && ta.IP == nil {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fmt.Errorf("listen tcp %s: bind: %w", addr, err)
	}
	return nil
}

// foreignListener reports whether a socket of a process other than those
// in pids listens on the same local address as one
// of theirs.
//
// checkAddressFree refuses a port that is already taken, but two processes
// that both check before either binds would then both bind with
// SO_REUSEPORT and silently split the clients between them. Once bound,
// each looks for the other in /proc/net/tcp{,6} (the namespace's sockets,
// with their inodes) against its own socket inodes (/proc/PID/fd): the
// later one always sees the earlier, so at least one of them stops. With
// --workers the parent runs this check over all its workers' sockets.
func foreignListener(pids ...int) bool {
	own := map[string]bool{}
	for _, pid := range pids {
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		entries, err := os.ReadDir(dir)
		if err != nil {
			return false
		}
		for _, e := range entries {
			link, err := os.Readlink(dir + "/" + e.Name())
			if err == nil && strings.HasPrefix(link, "socket:[") {
				own[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
			}
		}
	}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		ours := map[string]bool{}   // local addresses we listen on
		others := map[string]bool{} // local addresses others listen on
		for _, line := range strings.Split(string(data), "\n")[1:] {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			if own[f[9]] {
				ours[f[1]] = true
			} else {
				others[f[1]] = true
			}
		}
		for addr := range ours {
			if others[addr] {
				return true
			}
		}
	}
	return false
}

// CheckSoleListeners fails when a process other than pids listens on addr,
// which pids listen on with SO_REUSEPORT (see foreignListener).
func CheckSoleListeners(addr string, pids ...int) error {
	if foreignListener(pids...) {
		return fmt.Errorf("listen tcp %s: address already in use (another process listens on it with SO_REUSEPORT)", addr)
	}
	return nil
}
