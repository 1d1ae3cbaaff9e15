package eventloop

import (
	"context"
	"sync"

	"golang.org/x/sys/unix"
)

// drainPoller tells a loop when a socket it waits on can take bytes again
// (EPOLLOUT) or when a paused client hung up (EPOLLRDHUP).
//
// gnet calls no handler when a socket becomes writable: it writes its own
// outbound buffer, which we never use (outq.go). So the sockets that have
// bytes queued are also registered, one-shot, in an epoll descriptor of our
// own, and one goroutine waits on it and queues the ready ones onto their
// loop with Execute. A stalled session costs nothing until its peer moves:
// no polling tick visits it.
//
// Registrations are EPOLLONESHOT: each fires once and is re-armed by the
// loop only if it still needs one, so a socket that stays writable does not
// wake anyone twice. Events are matched to sockets by descriptor number on
// the loop goroutine, which owns the table; an event for a socket that has
// gone since, or whose number now belongs to another, only makes that loop
// try a write that has nothing to do or would block, which is harmless.
type drainPoller struct {
	epfd int
	stop int // eventfd that ends run

	mu    sync.Mutex
	loops []*loop // by loop.idx
}

// hangupEvents are the drain poller's events that mean the peer is gone or
// going.
const hangupEvents = unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLERR

// stopMark is the Pad of the stop eventfd's registration.
const stopMark = -1

func newDrainPoller() (*drainPoller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(stop), Pad: stopMark}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, stop, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(stop)
		return nil, err
	}
	return &drainPoller{epfd: epfd, stop: stop}, nil
}

// addLoop gives l its index in the poller's events.
func (p *drainPoller) addLoop(l *loop) {
	p.mu.Lock()
	l.idx = len(p.loops)
	p.loops = append(p.loops, l)
	p.mu.Unlock()
}

// run waits for events until close is called.
func (p *drainPoller) run() {
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return
		}
		p.mu.Lock()
		for _, ev := range events[:n] {
			if ev.Pad == stopMark {
				p.mu.Unlock()
				unix.Close(p.epfd)
				unix.Close(p.stop)
				return
			}
			if int(ev.Pad) < len(p.loops) {
				p.loops[ev.Pad].ready(readyFD{fd: ev.Fd, events: ev.Events})
			}
		}
		p.mu.Unlock()
	}
}

func (p *drainPoller) close() {
	var one = [8]byte{1}
	_, _ = unix.Write(p.stop, one[:])
}

// readyFD is one event of the drain poller.
type readyFD struct {
	fd     int32
	events uint32
}

// ready queues an event for the loop's next drain pass; it runs on the
// poller's goroutine.
func (l *loop) ready(r readyFD) {
	l.readyMu.Lock()
	l.readyFDs = append(l.readyFDs, r)
	queue := !l.readyQueued
	l.readyQueued = true
	l.readyMu.Unlock()
	if queue {
		_ = l.el.Execute(context.Background(), drainPass{l})
	}
}

// drainPass runs on the loop: it hands each ready socket to its session.
type drainPass struct{ l *loop }

func (d drainPass) Run(context.Context) error {
	l := d.l
	l.readyMu.Lock()
	fds := l.readyFDs
	l.readyFDs = l.spareFDs[:0]
	l.spareFDs = fds
	l.readyQueued = false
	l.readyMu.Unlock()
	for i, r := range fds {
		if sd := l.watched[r.fd]; sd != nil {
			sd.armed = 0 // one-shot: it fired
			sd.sess.sideReady(sd, r.events)
		}
		fds[i] = readyFD{}
	}
	return nil
}

// watch arms the one-shot registration of sd for events (EPOLLOUT,
// EPOLLRDHUP or both); it runs on the loop.
func (l *loop) watch(sd *side, events uint32) {
	if events == 0 || sd.armed == events || sd.gone {
		return
	}
	op := unix.EPOLL_CTL_MOD
	if !sd.registered {
		op = unix.EPOLL_CTL_ADD
	}
	ev := unix.EpollEvent{Events: events | unix.EPOLLONESHOT, Fd: sd.fd, Pad: int32(l.idx)}
	if err := unix.EpollCtl(l.srv.drain.epfd, op, int(sd.fd), &ev); err != nil {
		l.srv.cfg.Log.Errorf("drain poller: epoll_ctl fd %d: %v", sd.fd, err)
		return
	}
	if !sd.registered {
		sd.registered = true
		l.watched[sd.fd] = sd
	}
	sd.armed = events
}

// unwatch removes sd before its descriptor is closed.
func (l *loop) unwatch(sd *side) {
	if !sd.registered {
		return
	}
	_ = unix.EpollCtl(l.srv.drain.epfd, unix.EPOLL_CTL_DEL, int(sd.fd), nil)
	if l.watched[sd.fd] == sd {
		delete(l.watched, sd.fd)
	}
	sd.registered = false
	sd.armed = 0
}
