package eventloop

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/gowebsockify/websockify/codec"
	"golang.org/x/sys/unix"
)

func TestDeadlineQueueFiresInOrderAndCompacts(t *testing.T) {
	q := deadlineQueue[*session]{d: time.Second}
	sessions := make([]*session, 3000)
	for i := range sessions {
		sessions[i] = &session{}
		if at := q.add(int64(i), sessions[i]); at != int64(i)+int64(time.Second) {
			t.Fatalf("add returned %d", at)
		}
	}
	var fired []*session
	collect := func(s *session, at int64) {
		if want := int64(len(fired)) + int64(time.Second); at != want {
			t.Fatalf("fired with at %d, want %d", at, want)
		}
		fired = append(fired, s)
	}

	q.expire(int64(time.Second)-1, collect) // nothing due yet
	if len(fired) != 0 {
		t.Fatalf("fired %d before due", len(fired))
	}
	q.expire(int64(time.Second)+1999, collect) // entries 0..1999 are due
	if len(fired) != 2000 {
		t.Fatalf("fired %d, want 2000", len(fired))
	}
	for i, s := range fired {
		if s != sessions[i] {
			t.Fatalf("fired out of order at %d", i)
		}
	}
	if q.head != 0 || len(q.items) != 1000 {
		t.Fatalf("not compacted: head %d, len %d", q.head, len(q.items))
	}
	q.expire(int64(10*time.Second), collect)
	if len(fired) != 3000 {
		t.Fatalf("fired %d, want 3000", len(fired))
	}
	fired = fired[:0]
	q.add(0, &session{}) // an emptied queue reuses its slice from the start
	if q.head != 0 || len(q.items) != 1 {
		t.Fatalf("after reuse: head %d, len %d", q.head, len(q.items))
	}
}

func TestDiscoverEpollFindsTheRegisteringDescriptor(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	other, _ := unix.EpollCreate1(unix.EPOLL_CLOEXEC) // an epoll without the fd
	defer unix.Close(other)
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(epfd)

	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fds[0])}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fds[0], &ev); err != nil {
		t.Fatal(err)
	}
	got, err := discoverEpoll(fds[0])
	if err != nil || got != epfd {
		t.Fatalf("discoverEpoll = %d, %v; want %d", got, err, epfd)
	}
	if _, err := discoverEpoll(fds[1]); err == nil {
		t.Fatal("found an epoll for an fd registered nowhere")
	}

	// User data that is not the fd (gnet's poll_opt build) must be refused.
	ev2 := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fds[1]) + 1000}
	if err := unix.EpollCtl(other, unix.EPOLL_CTL_ADD, fds[1], &ev2); err != nil {
		t.Fatal(err)
	}
	if _, err := discoverEpoll(fds[1]); err == nil {
		t.Fatal("accepted epoll user data that is not the fd")
	}
}

func TestForeignListenerSeesAnotherProcessSharingThePort(t *testing.T) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if foreignListener(os.Getpid()) {
		t.Fatal("our own listener counted as foreign")
	}

	// Another process joins the port, as a second websockify would.
	port := ln.Addr().(*net.TCPAddr).Port
	other := exec.Command("python3", "-c", `
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("listening", flush=True)
time.sleep(30)
`, strconv.Itoa(port))
	out, err := other.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Process.Kill(); _ = other.Wait() }()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "listening\n" {
		t.Fatalf("helper process: %q, %v", line, err)
	}
	if !foreignListener(os.Getpid()) {
		t.Fatal("another process listening on our port was not seen")
	}
}

func TestOutQueueKeepsOrderAcrossChunks(t *testing.T) {
	var q outQueue
	var want []byte
	for i := 0; i < 50; i++ {
		p := make([]byte, i*997%(3*outChunkSize))
		for j := range p {
			p[j] = byte(i + j)
		}
		q.add(p)
		want = append(want, p...)
	}
	if q.len() != len(want) {
		t.Fatalf("len %d, want %d", q.len(), len(want))
	}
	var got []byte
	for q.len() > 0 {
		iov := q.iovecs(nil, 3)
		n := 0
		for _, v := range iov {
			b := unsafe.Slice(v.Base, v.Len)
			take := min(len(b), 5000) // a short write
			got = append(got, b[:take]...)
			n += take
			if take < len(b) {
				break
			}
		}
		q.discard(n)
	}
	if string(got) != string(want) {
		t.Fatal("bytes out differ from bytes in")
	}
	if q.chunks != nil || q.off != 0 {
		t.Fatalf("an empty queue keeps %d chunks, offset %d", len(q.chunks), q.off)
	}
}

func TestSessionListAddRemove(t *testing.T) {
	var sl sessionList
	ss := []*session{{}, {}, {}, {}}
	for _, s := range ss {
		sl.add(s)
	}
	sl.remove(ss[0]) // tail
	sl.remove(ss[3]) // head
	sl.remove(ss[3]) // twice: no effect
	sl.remove(&session{})
	var left []*session
	for s := sl.head; s != nil; s = s.next {
		left = append(left, s)
	}
	if sl.n != 2 || len(left) != 2 || left[0] != ss[2] || left[1] != ss[1] {
		t.Fatalf("left %d (%d listed)", sl.n, len(left))
	}
}

// The payloads of one client read go to the target in one writev: a long
// payload never forces out what is gathered (it once did, whenever it was
// longer than the room kept for short copies, so 64 KiB frames went out a
// writev each).
func TestTargetGatherFull(t *testing.T) {
	l := &loop{targetIov: make([][]byte, 0, 4), smallBytes: make([]byte, 0, 2*codec.MaxUnaliasedPayload)}
	big := make([]byte, 64<<10)
	for i := 0; i < 4; i++ {
		if l.targetGatherFull(len(big)) {
			t.Fatalf("payload %d of 64 KiB: flush asked with %d of %d gathered", i, len(l.targetIov), cap(l.targetIov))
		}
		l.targetIov = append(l.targetIov, big)
	}
	if !l.targetGatherFull(len(big)) {
		t.Error("a full iovec was not flushed")
	}
	l.targetIov = l.targetIov[:1]
	l.smallBytes = append(l.smallBytes, make([]byte, 2*codec.MaxUnaliasedPayload-1)...)
	if !l.targetGatherFull(codec.MaxUnaliasedPayload) {
		t.Error("a short payload that does not fit its copies' room was not flushed")
	}
	if l.targetGatherFull(1) || l.targetGatherFull(len(big)) {
		t.Error("flush asked for a payload that fits")
	}
}
