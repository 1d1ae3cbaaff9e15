package eventloop

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Read pausing.
//
// gnet v2.9.7 has no call to stop reading a connection, and bytes that
// OnTraffic leaves unconsumed are kept without limit, so pausing is built
// here: a paused connection's registration on its loop's epoll descriptor is
// changed (EPOLL_CTL_MOD) to drop EPOLLIN. Why this is safe:
//
//   - The engine runs level-triggered (EdgeTriggeredIO off): a MOD fully
//     decides what wakes the loop. In edge-triggered mode gnet re-queues reads
//     itself and a MOD could not pause anything.
//   - In the default build gnet stores the fd itself as the epoll user data
//     and looks the connection up by it, so a MOD that keeps data == fd keeps
//     gnet's bookkeeping intact. (The poll_opt build tag stores a pointer
//     instead; discoverEpoll refuses to work when fdinfo shows data != fd.)
//   - gnet changes a registration itself only when its outbound buffer fills
//     or drains, and we never write through it (outq.go): after a
//     connection is opened, its registration is ours alone. EPOLLOUT is never
//     set here; writability is watched by the drain poller (drain.go).
//   - Every MOD is made on the loop goroutine, and never after the
//     connection's OnClose: descriptor numbers are reused.

// setReading turns reading of the connection fd on or off on the epoll
// descriptor epfd.
func setReading(epfd, fd int, reading bool) error {
	var m uint32
	if reading {
		m = unix.EPOLLIN | unix.EPOLLPRI
	}
	ev := unix.EpollEvent{Events: m, Fd: int32(fd)}
	return unix.EpollCtl(epfd, unix.EPOLL_CTL_MOD, fd, &ev)
}

// discoverEpoll finds the epoll descriptor that has fd registered, by reading
// /proc/self/fdinfo of every eventpoll descriptor. It runs once per event
// loop (the result is cached), from the first OnOpen on that loop.
func discoverEpoll(fd int) (int, error) {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1, err
	}
	fdText := strconv.Itoa(fd)
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || link != "anon_inode:[eventpoll]" {
			continue
		}
		info, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(info))
		for sc.Scan() {
			// "tfd:       15 events:       1b data:                f  pos:0 ino:..."
			f := bytes.Fields(sc.Bytes())
			if len(f) < 2 || string(f[0]) != "tfd:" || string(f[1]) != fdText {
				continue
			}
			for i := 0; i+1 < len(f); i++ {
				if string(f[i]) == "data:" {
					data, err := strconv.ParseUint(string(f[i+1]), 16, 64)
					if err != nil || data != uint64(fd) {
						return -1, fmt.Errorf("epoll user data %s is not the fd %d: gnet built with poll_opt is not supported", f[i+1], fd)
					}
					return n, nil
				}
			}
		}
	}
	return -1, fmt.Errorf("no epoll descriptor holds fd %d", fd)
}
