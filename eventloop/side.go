package eventloop

import (
	"crypto/tls"
	"time"

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
// only while its peer has nothing queued, so what the proxy holds for a
// direction is at most one read, whatever the speeds of the two peers; the
// kernel's socket buffers, megabytes each, do the rest.
//
// Closing never loses what was queued: the side stops being read, sends its
// queue (within flushTimeout), shuts down its write side, then reads and
// drops whatever the peer still sends until EOF (within lingerTimeout), and
// only then closes. A close over unread input would make the kernel send a
// reset, which discards what the peer had not yet read.
type side struct {
	sess     *session
	c        gnet.Conn // nil until the target is connected
	fd       int
	isClient bool

	out  outQueue // bytes for the socket that the kernel has not taken
	held []byte   // client input the session could not use yet

	// A TLS transport, once its handshake is done (tls.go).
	tls  *tls.Conn
	wire *tlsWire

	reading    bool       // EPOLLIN is in gnet's registration
	blocked    bool       // the last write would block: wait for the drain poller
	stage      closeStage // how far closing has gone
	closeAsked bool       // gnet was asked to close it
	gone       bool       // gnet closed it: nothing more to do with it
	registered bool       // in the drain poller
	armed      uint32     // events armed there
	deadline   int64      // unix nanos: end of the flush or linger stage
	err        error      // why a write failed, for the log
}

type closeStage uint8

const (
	open      closeStage = iota
	flushing             // the session ended: sending the queue, reading nothing
	lingering            // write side shut down: reading and dropping until EOF
)

func (sd *side) attach(c gnet.Conn) {
	sd.c = c
	sd.fd = c.Fd()
	sd.reading = true // gnet registers new connections for reading
	c.SetContext(sd)
}

func (sd *side) loop() *loop { return sd.sess.l }

// send writes a, then b, to the socket: as much as the kernel takes now,
// the rest queued (copied). A TLS side encrypts them as one record.
func (sd *side) send(a, b []byte) {
	if sd.gone || sd.c == nil {
		return
	}
	if sd.tls != nil {
		_, _ = sd.tls.Write(sd.loop().join(a, b)) // records go to sd.out (tlsWire)
		sd.flush()
		return
	}
	if sd.out.len() == 0 && !sd.blocked {
		l := sd.loop()
		iov := appendIovec(appendIovec(l.iov[:0], a), b)
		n, err := writev(sd.fd, iov)
		clear(iov)
		if err != nil && err != unix.EAGAIN {
			sd.failed(err)
			return
		}
		k := min(n, len(a))
		a, n = a[k:], n-k
		b = b[min(n, len(b)):]
	}
	sd.out.add(a)
	sd.out.add(b)
	if sd.out.len() > 0 {
		sd.block()
	}
}

// sendv writes the buffers of iov in order, as send does.
func (sd *side) sendv(bufs [][]byte) {
	if sd.gone || sd.c == nil || len(bufs) == 0 {
		return
	}
	if sd.tls != nil || len(bufs) <= 2 {
		for len(bufs) > 0 {
			var b []byte
			if len(bufs) > 1 {
				b = bufs[1]
			}
			sd.send(bufs[0], b)
			bufs = bufs[min(2, len(bufs)):]
		}
		return
	}
	if sd.out.len() == 0 && !sd.blocked {
		l := sd.loop()
		iov := l.iov[:0]
		for _, b := range bufs {
			iov = appendIovec(iov, b)
		}
		n, err := writev(sd.fd, iov)
		clear(iov)
		if err != nil && err != unix.EAGAIN {
			sd.failed(err)
			return
		}
		for n > 0 && len(bufs) > 0 {
			k := min(n, len(bufs[0]))
			bufs[0] = bufs[0][k:]
			n -= k
			if len(bufs[0]) == 0 {
				bufs = bufs[1:]
			}
		}
	}
	for _, b := range bufs {
		sd.out.add(b)
	}
	if sd.out.len() > 0 {
		sd.block()
	}
}

// flush writes what is queued, as far as the kernel takes it.
func (sd *side) flush() {
	l := sd.loop()
	for sd.out.len() > 0 && !sd.blocked && !sd.gone {
		iov := sd.out.iovecs(l.iov[:0], iovMax)
		want := 0
		for _, v := range iov {
			want += int(v.Len)
		}
		n, err := writev(sd.fd, iov)
		clear(iov)
		if err != nil && err != unix.EAGAIN {
			sd.failed(err)
			return
		}
		sd.out.discard(n)
		if n < want {
			sd.block()
		}
	}
}

// block notes that the socket is full and asks the drain poller to say
// when it is not.
func (sd *side) block() {
	sd.blocked = true
	sd.loop().watch(sd, sd.watchEvents())
}

// watchEvents is what the drain poller should watch on this side: room to
// write when blocked, and for a client that is not being read because its
// target is backed up, its hanging up (gnet would not notice until it reads).
func (sd *side) watchEvents() uint32 {
	var ev uint32
	if sd.blocked {
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
	if sd.err == nil {
		sd.err = err
	}
	sd.out.reset()
	sd.blocked = false
	sd.closeNow()
}

// setReading turns reading of the socket on or off.
func (sd *side) setReading(on bool) {
	if sd.reading == on || sd.gone || sd.c == nil || sd.closeAsked {
		return
	}
	if err := setReading(sd.loop().epfd, sd.fd, on); err != nil {
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
	sd.held = nil
	if sd.tls != nil {
		_ = sd.tls.CloseWrite()
	}
	sd.flush()
	sd.setReading(false)
	if sd.out.len() == 0 {
		sd.shutWrite()
		return
	}
	sd.deadline = sd.loop().flushing.add(time.Now().UnixNano(), sd)
}

// shutWrite sends FIN after everything queued, then reads and drops what
// the peer still sends until it closes too.
func (sd *side) shutWrite() {
	if sd.gone || sd.closeAsked {
		return
	}
	if err := unix.Shutdown(sd.fd, unix.SHUT_WR); err != nil {
		sd.closeNow()
		return
	}
	sd.stage = lingering
	sd.setReading(true)
	sd.deadline = sd.loop().lingering.add(time.Now().UnixNano(), sd)
}

// flushExpired closes a side whose peer did not take its queue in time.
func (sd *side) flushExpired(at int64) {
	if sd.stage == flushing && sd.deadline == at && !sd.gone {
		sd.sess.debugf("%s: output not taken within %v, closing", sd.sess.addr, flushTimeout)
		sd.out.reset()
		sd.closeNow()
	}
}

// lingerExpired closes a side whose peer did not close in time.
func (sd *side) lingerExpired(at int64) {
	if sd.stage == lingering && sd.deadline == at && !sd.gone {
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
	sd.out.reset()
	sd.held = nil
	sd.blocked = false
	sd.tls = nil
	sd.wire = nil
}
