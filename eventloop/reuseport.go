package eventloop

import (
	"os"
	"strings"
)

// foreignListener reports whether a socket of another process listens on
// the same local address as one of ours.
//
// checkAddressFree refuses a port that is already taken, but two processes
// that both check before either binds would then both bind with
// SO_REUSEPORT and silently split the clients between them. Once bound,
// each looks for the other in /proc/net/tcp{,6} (the namespace's sockets,
// with their inodes) against its own socket inodes (/proc/self/fd): the
// later one always sees the earlier, so at least one of them stops.
func foreignListener() bool {
	own := map[string]bool{}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return false
	}
	for _, e := range entries {
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && strings.HasPrefix(link, "socket:[") {
			own[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
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
