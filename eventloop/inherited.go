package eventloop

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// Inherited listeners (--inetd, systemd socket activation) are sockets some
// other process bound: gnet listens only on addresses it binds itself, so
// for these the loops run as a gnet client engine (loops with no listener)
// and one goroutine per listener accepts and hands each client to a loop
// with Enroll. The rest of a session is the same as for gnet's own
// listeners: OnOpen sees the client, with its descriptor budget already
// reserved by the accepting goroutine.

// acceptedClient is the context an accepted client joins a loop with.
type acceptedClient struct {
	reserved int64 // what admit reserved of the descriptor budget
}

// serveInherited runs the loops as a client engine and accepts on
// cfg.Listeners until the server stops.
func (s *server) serveInherited(opts []gnet.Option) error {
	cli, err := gnet.NewClient(s, opts...)
	if err != nil {
		return err
	}
	listeners := make([]net.Listener, 0, len(s.cfg.Listeners))
	for _, f := range s.cfg.Listeners {
		ln, err := net.FileListener(f)
		_ = f.Close() // FileListener keeps its own descriptor
		if err != nil {
			closeAll(listeners)
			return fmt.Errorf("inherited descriptor %d is not a listening socket: %w", f.Fd(), err)
		}
		listeners = append(listeners, ln)
	}
	stopped := make(chan struct{})
	s.engineMu.Lock()
	s.stopEngine = func() {
		closeAll(listeners) // the accepting goroutines end
		_ = cli.Stop()
		close(stopped)
	}
	s.engineMu.Unlock()
	if err := cli.Start(); err != nil { // calls OnBoot
		closeAll(listeners)
		return err
	}
	if s.stopping.Load() {
		go s.drainAndStop() // a signal or a failed OnBoot came first
	}
	for _, ln := range listeners {
		go s.acceptFrom(cli, ln)
	}
	<-stopped
	return nil
}

// acceptFrom accepts clients on ln for as long as it is open.
func (s *server) acceptFrom(cli *gnet.Client, ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or a client gone before accept: refuse
			// nothing already open, try again shortly.
			s.cfg.Log.refusal(fmt.Sprintf("accept: %v", err))
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if !s.accepting() {
			_ = conn.Close()
			continue
		}
		reserved := s.budget.admit()
		if reserved == 0 {
			s.cfg.Log.refusal("open-file limit reached: refusing new clients until sessions end")
			_ = conn.Close()
			continue
		}
		// Enroll takes a duplicate of the descriptor and closes conn.
		if _, err := cli.EnrollContext(conn, &acceptedClient{reserved: reserved}); err != nil {
			s.budget.add(-reserved)
			s.cfg.Log.Errorf("cannot hand a client to an event loop: %v", err)
		}
	}
}

func closeAll(listeners []net.Listener) {
	for _, ln := range listeners {
		_ = ln.Close()
	}
}
