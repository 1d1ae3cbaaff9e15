package eventloop

import (
	"crypto/tls"
	"time"
	"unsafe"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// side is one socket of a session, the client's or the target's, on the
// session's loop: what waits to be written to it, whether it is read, and
// how it closes.
//
// Writes go straight to the socket; what the kernel does not take is queued
// (outq.go) and written when the drain poller says the socket can take
// more (drain.go). Reading follows one rule (session.sync): a side is read
// only when its peer can take a whole read at once, with nothing queued and
// room for it in its socket buffer. So reads can be large (few system calls
// and wakeups per byte) while what the proxy holds for a direction is
// usually nothing and never more than one read, whatever the speeds of the
// two peers: the kernel's socket buffers, megabytes each, hold the rest.
//
// Closing never loses what was queued: the side stops being read, sends its
// queue (within flushTimeout), shuts down its write side, then reads and
// drops whatever the peer still sends until EOF (within lingerTimeout), and
// only then closes. A close over unread input would make the kernel send a
// reset, which discards what the peer had not yet read.
type side struct {
	sess *session
	c    gnet.Conn  // nil until the target is connected
	x    *sideState // what a busy side needs; nil for an idle plain socket

	fd       int32
	room     int32 // bytes its socket buffer takes now, as far as is known
	sndbuf   int32 // its socket's send buffer, when room was measured
	wantRoom int32 // a read of the peer waits for this much room (drain poller)
	armed    uint32
	stage    closeStage // how far closing has gone

	isClient   bool
	reading    bool // EPOLLIN is in gnet's registration
	blocked    bool // the last write would block: wait for the drain poller
	yielding   bool // not read for a while: it took a whole read on a shared loop
	closeAsked bool // gnet was asked to close it
	gone       bool // gnet closed it: nothing more to do with it
	registered bool // in the drain poller
}

// sideState is the part of a side that an idle plain socket does not need,
// allocated when first needed and dropped when no longer (shrink): a held
// session costs a few words per socket.
type sideState struct {
	out      outQueue  // bytes for the socket that the kernel has not taken
	held     []byte    // client input the session could not use yet
	tls      *tls.Conn // a TLS transport, once its handshake is done (tls.go)
	wire     *tlsWire
	deadline int64 // unix nanos: end of the flush or linger stage
	err      error // why a write failed, for the log
}

func (sd *side) state() *sideState {
	if sd.x == nil {
		sd.x = &sideState{}
	}
	return sd.x
}

// shrink drops the side's state once it holds nothing.
func (sd *side) shrink() {
	if x := sd.x; x != nil && x.out.len() == 0 && x.held == nil && x.tls == nil && x.err == nil && sd.stage == open {
		sd.x = nil
	}
}

// queued is how many bytes wait to be written to the socket.
func (sd *side) queued() int {
	if sd.x == nil {
		return 0
	}
	return sd.x.out.len()
}

// queue copies p to the end of what waits to be written.
func (sd *side) queue(p []byte) {
	if len(p) > 0 {
		sd.state().out.add(p)
	}
}

func (sd *side) tlsConn() *tls.Conn {
	if sd.x == nil {
		return nil
	}
	return sd.x.tls
}

func (sd *side) heldLen() int {
	if sd.x == nil {
		return 0
	}
	return len(sd.x.held)
}

func (sd *side) setErr(err error) {
	if x := sd.state(); x.err == nil {
		x.err = err
	}
}

type closeStage uint8

const (
	open      closeStage = iota
	flushing             // the session ended: sending the queue, reading nothing
	lingering            // write side shut down: reading and dropping until EOF
)

func (sd *side) attach(c gnet.Conn) {
	sd.c = c
	sd.fd = int32(c.Fd())
	sd.reading = true // gnet registers new connections for reading
	c.SetContext(sd)
}

func (sd *side) loop() *loop { return sd.sess.l }

// send writes a, then b, to the socket, as sendv does.
func (sd *side) send(a, b []byte) {
	bufs := [2][]byte{a, b}
	sd.sendv(bufs[:])
}

// sendv writes bufs in order: as much as the kernel takes now, the rest
// queued (copied). A TLS side encrypts them as one record. The elements of
// bufs are resliced.
func (sd *side) sendv(bufs [][]byte) {
	if sd.gone || sd.c == nil {
		return
	}
	l := sd.loop()
	if tc := sd.tlsConn(); tc != nil {
		_, _ = tc.Write(l.join(bufs)) // records are queued (tlsWire)
		sd.flush()
		return
	}
	if sd.queued() == 0 && !sd.blocked {
		iov := l.iov[:0]
		total := 0
		for _, b := range bufs {
			iov = appendIovec(iov, b)
			total += len(b)
		}
		n, err := writev(int(sd.fd), iov)
		clear(iov)
		if err != nil && err != unix.EAGAIN {
			sd.failed(err)
			return
		}
		sd.wrote(n, n == total)
		for i := range bufs {
			k := min(n, len(bufs[i]))
			bufs[i] = bufs[i][k:]
			n -= k
		}
	}
	for _, b := range bufs {
		sd.queue(b)
	}
	if sd.queued() > 0 {
		sd.block()
	}
}

// flush writes what is queued, as far as the kernel takes it.
func (sd *side) flush() {
	l := sd.loop()
	for sd.queued() > 0 && !sd.blocked && !sd.gone {
		iov := sd.x.out.iovecs(l.iov[:0], iovMax)
		want := 0
		for _, v := range iov {
			want += int(v.Len)
		}
		n, err := writev(int(sd.fd), iov)
		clear(iov)
		if err != nil && err != unix.EAGAIN {
			sd.failed(err)
			return
		}
		sd.x.out.discard(n)
		sd.wrote(n, n == want)
		if n < want {
			sd.block()
		}
	}
}

// writeCost is roughly what the kernel charges a write against the socket
// buffer beyond its bytes (an skb's own size).
const writeCost = 1 << 10

// wrote keeps room up to date after a write of n bytes, complete or not.
func (sd *side) wrote(n int, complete bool) {
	if complete {
		sd.room -= int32(min(n+writeCost, 1<<30))
	} else {
		sd.room = 0
	}
}

// hasRoom reports whether the socket can take n bytes at once: nothing is
// queued for it and its buffer has room. When room is short the drain
// poller is asked to say when the socket is writable again (sync arms it).
// A socket whose whole buffer is smaller than two reads is judged against
// half its buffer, so that it is read at all.
func (sd *side) hasRoom(n int) bool {
	switch {
	case sd.gone || sd.c == nil || sd.blocked || sd.queued() > 0 || sd.wantRoom > 0:
		return false
	case sd.sndbuf > 0 && int(sd.room) >= min(n, int(sd.sndbuf)/2):
		return true // known without asking: writes since the last look are counted
	}
	sd.measureRoom()
	if int(sd.room) >= min(n, int(sd.sndbuf)/2) {
		return true
	}
	sd.wantRoom = int32(n)
	sd.loop().stats.ReadPaused()
	return false
}

// measureRoom reads the socket buffer's size and use (SO_MEMINFO: for TCP
// the bytes queued, for unix sockets the bytes allocated).
func (sd *side) measureRoom() {
	var mi [unix.SK_MEMINFO_VARS]uint32
	size := uint32(unsafe.Sizeof(mi))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(sd.fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&mi)), uintptr(unsafe.Pointer(&size)), 0)
	if e != 0 {
		sd.room, sd.sndbuf = 1<<30, 1<<30 // unknown: let the queue bound it
		return
	}
	used := max(mi[unix.SK_MEMINFO_WMEM_QUEUED], mi[unix.SK_MEMINFO_WMEM_ALLOC])
	sd.sndbuf = int32(min(mi[unix.SK_MEMINFO_SNDBUF], 1<<30))
	sd.room = sd.sndbuf - int32(min(used, 1<<30))
}

// roomReady runs when the drain poller says a socket that was short of
// room is writable: its peer is read again. If the kernel's idea of
// writable still leaves less room than wanted, one read is let through
// anyway, which the queue then bounds, rather than asking again at once.
func (sd *side) roomReady() {
	if sd.wantRoom == 0 {
		return
	}
	need := sd.wantRoom
	sd.wantRoom = 0
	sd.measureRoom()
	sd.room = max(sd.room, need)
}

// block notes that the socket is full and asks the drain poller to say
// when it is not.
func (sd *side) block() {
	if !sd.blocked {
		sd.loop().stats.ReadPaused()
	}
	sd.blocked = true
	sd.loop().watch(sd, sd.watchEvents())
}

// watchEvents is what the drain poller should watch on this side: room to
// write when blocked, and for a client that is not being read because its
// target is backed up, its hanging up (gnet would not notice until it reads).
func (sd *side) watchEvents() uint32 {
	var ev uint32
	if sd.blocked || sd.wantRoom > 0 {
		ev |= unix.EPOLLOUT
	}
	if sd.isClient && sd.stage == open && !sd.reading && sd.sess.relaying() {
		ev |= unix.EPOLLRDHUP
	}
	return ev
}

// failed handles a write error: the connection is broken, so nothing queued
// can be delivered. gnet closes it and the session hears of it in OnClose.
func (sd *side) failed(err error) {
	sd.setErr(err)
	sd.x.out.reset() // setErr made x
	sd.blocked = false
	sd.closeNow()
}

// setReading turns reading of the socket on or off.
func (sd *side) setReading(on bool) {
	if sd.reading == on || sd.gone || sd.c == nil || sd.closeAsked {
		return
	}
	if err := setReading(sd.loop().epfd, int(sd.fd), on); err != nil {
		sd.sess.debugf("epoll_ctl: %v", err)
		return
	}
	sd.reading = on
}

// startClosing begins closing this side: stop reading, send what is queued
// (a TLS side adds its close_notify), then shut down writing and linger.
func (sd *side) startClosing() {
	if sd.gone || sd.c == nil || sd.stage != open {
		return
	}
	sd.stage = flushing
	x := sd.state()
	x.held = nil
	if x.tls != nil {
		_ = x.tls.CloseWrite()
	}
	sd.flush()
	if sd.queued() == 0 {
		sd.shutWrite() // reads on, to drop what the peer still sends
		return
	}
	sd.setReading(false)
	x.deadline = sd.loop().flushing.add(time.Now().UnixNano(), sd)
}

// shutWrite sends FIN after everything queued, then reads and drops what
// the peer still sends until it closes too.
func (sd *side) shutWrite() {
	if sd.gone || sd.closeAsked {
		return
	}
	if err := unix.Shutdown(int(sd.fd), unix.SHUT_WR); err != nil {
		sd.closeNow()
		return
	}
	sd.stage = lingering
	sd.setReading(true)
	sd.state().deadline = sd.loop().lingering.add(time.Now().UnixNano(), sd)
}

// flushExpired closes a side whose peer did not take its queue in time.
func (sd *side) flushExpired(at int64) {
	if sd.stage == flushing && sd.x.deadline == at && !sd.gone {
		sd.sess.debugf("%s: output not taken within %v, closing", sd.sess.addr(), flushTimeout)
		sd.x.out.reset()
		sd.closeNow()
	}
}

// yieldExpired lets a side that yielded its loop be read again.
func (sd *side) yieldExpired(int64) {
	if sd.yielding {
		sd.yielding = false
		if !sd.gone {
			sd.sess.sync()
		}
	}
}

// lingerExpired closes a side whose peer did not close in time.
func (sd *side) lingerExpired(at int64) {
	if sd.stage == lingering && sd.x.deadline == at && !sd.gone {
		sd.closeNow()
	}
}

// closeNow has gnet close the socket; OnClose follows.
func (sd *side) closeNow() {
	if sd.gone || sd.c == nil || sd.closeAsked {
		return
	}
	sd.closeAsked = true
	sd.loop().unwatch(sd)
	_ = sd.c.Close()
}

// closed is called from OnClose: the descriptor is about to be closed.
func (sd *side) closed() {
	sd.gone = true
	sd.loop().unwatch(sd)
	if sd.x != nil {
		sd.x.out.reset()
		sd.x.held = nil
		sd.x.tls, sd.x.wire = nil, nil
	}
	sd.blocked = false
	sd.wantRoom = 0
}
