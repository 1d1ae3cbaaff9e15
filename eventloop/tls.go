package eventloop

// TLS as a transport under a session, on the loop.
//
// crypto/tls can be driven from buffers. Its reads go through tlsWire,
// which hands it the bytes the loop read and, when they are used up,
// returns an error whose Temporary() is true: crypto/tls does not treat that
// as fatal, keeps a partial record in its buffer and returns the error to
// the caller, which simply waits for the next read. Its writes go to the
// side's output queue, which the loop flushes with the same backpressure as
// any other bytes. So a TLS session is a session like any other: the same
// steps (codec.Session), the same sockets on the same loop, the same
// bounded memory.
//
// Only the handshake blocks, so it runs on a goroutine (one per handshake
// in flight, not per session): the client's socket stays on the loop with
// reading turned off, and the goroutine reads and writes a duplicate of its
// descriptor with ordinary blocking I/O and a deadline. When it is done the
// loop closes the duplicate and reads the socket again. For --ssl-target the
// handshake runs on the dialing goroutine, before the target joins the loop.

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// tlsWire is the net.Conn under a crypto/tls connection.
type tlsWire struct {
	// blocking is the handshake's connection, used on its goroutine; the
	// loop sets it to nil before it drives the connection itself.
	blocking net.Conn
	in       []byte // ciphertext the loop read and crypto/tls has not taken yet
	sd       *side  // where records go once on the loop
}

// errWouldBlock tells crypto/tls that the loop has no more bytes for now.
type wouldBlockError struct{}

func (wouldBlockError) Error() string   { return "no more bytes until the next read" }
func (wouldBlockError) Timeout() bool   { return false }
func (wouldBlockError) Temporary() bool { return true }

var errWouldBlock net.Error = wouldBlockError{}

func (w *tlsWire) Read(p []byte) (int, error) {
	if w.blocking != nil {
		return w.blocking.Read(p)
	}
	if len(w.in) == 0 {
		return 0, errWouldBlock
	}
	n := copy(p, w.in)
	w.in = w.in[n:]
	return n, nil
}

func (w *tlsWire) Write(p []byte) (int, error) {
	if w.blocking != nil {
		return w.blocking.Write(p)
	}
	if w.sd != nil && !w.sd.gone {
		w.sd.queue(p) // flushed by whoever called crypto/tls
	}
	return len(p), nil
}

func (w *tlsWire) Close() error {
	if w.blocking != nil {
		return w.blocking.Close()
	}
	return nil
}

func (w *tlsWire) LocalAddr() net.Addr {
	if w.blocking != nil {
		return w.blocking.LocalAddr()
	}
	return nil
}

func (w *tlsWire) RemoteAddr() net.Addr {
	if w.blocking != nil {
		return w.blocking.RemoteAddr()
	}
	return nil
}

func (w *tlsWire) SetDeadline(t time.Time) error {
	if w.blocking != nil {
		return w.blocking.SetDeadline(t)
	}
	return nil
}

func (w *tlsWire) SetReadDeadline(t time.Time) error {
	if w.blocking != nil {
		return w.blocking.SetReadDeadline(t)
	}
	return nil
}

func (w *tlsWire) SetWriteDeadline(t time.Time) error {
	if w.blocking != nil {
		return w.blocking.SetWriteDeadline(t)
	}
	return nil
}

// prefixedConn reads pre before reading the connection: the bytes the loop
// had already taken off the socket.
type prefixedConn struct {
	net.Conn
	pre []byte
}

func (c *prefixedConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// startTLS runs the server handshake of the client on a goroutine; prefix
// is what the loop already read of it. The client is not read meanwhile.
func (s *session) startTLS(prefix []byte) {
	c := &s.client
	c.setReading(false)
	nc, err := dupConn(c.c)
	if err != nil {
		s.act(s.m.TLSFailed(err, s))
		return
	}
	wire := &tlsWire{blocking: &prefixedConn{Conn: nc, pre: bytes.Clone(prefix)}, sd: c}
	tc := tls.Server(wire, s.l.srv.cfg.TLS)
	s.state().handshake = nc
	el := s.l.el
	go func() {
		_ = nc.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
		err := tc.Handshake()
		done := gnet.RunnableFunc(func(context.Context) error {
			s.tlsDone(tc, wire, err)
			return nil
		})
		if el.Execute(context.Background(), done) != nil {
			_ = nc.Close() // the engine is stopping
		}
	}()
}

// dupConn returns a net.Conn on a duplicate of c's descriptor.
func dupConn(c gnet.Conn) (net.Conn, error) {
	fd, err := c.Dup()
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "client")
	nc, err := net.FileConn(f) // dups again
	_ = f.Close()
	return nc, err
}

// tlsDone runs on the loop when the client's handshake is over.
func (s *session) tlsDone(tc *tls.Conn, wire *tlsWire, err error) {
	if x := s.x; x != nil && x.handshake != nil {
		_ = x.handshake.Close()
		x.handshake = nil
	}
	wire.blocking = nil
	switch {
	case s.ended:
	case err != nil:
		s.act(s.m.TLSFailed(err, s))
	default:
		c := &s.client
		cx := c.state()
		cx.tls, cx.wire = tc, wire
		if st := tc.ConnectionState(); len(st.PeerCertificates) > 0 {
			cn := st.PeerCertificates[0].Subject.CommonName
			s.state().clientCN = cn
			s.debugf("%s: client certificate CN '%s'", s.addr(), cn)
		}
		s.m.TLSReady()
		s.readTLS(c, nil) // what came with the handshake's last flight
	}
	s.sync()
}

// handshakeTarget runs the client handshake of --ssl-target over the dialed
// connection, on the dialing goroutine; the returned connection is then
// driven by the loop.
func handshakeTarget(ctx context.Context, conn net.Conn, base *tls.Config, network, addr string) (*tls.Conn, *tlsWire, error) {
	wire := &tlsWire{blocking: conn}
	tc := tls.Client(wire, targetTLSConfig(base, network, addr))
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, nil, err
	}
	wire.blocking = nil
	return tc, wire, nil
}

// targetTLSConfig is base (--ssl-target's) with the server name set to the
// target's host when the caller left it empty.
func targetTLSConfig(base *tls.Config, network, addr string) *tls.Config {
	tc := base
	if tc.ServerName != "" || network != "tcp" {
		return tc
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return tc
	}
	tc = tc.Clone()
	tc.ServerName = host
	return tc
}

// readTLS decrypts what the loop read from a TLS side (in, which crypto/tls
// takes whole before this returns) and delivers the plaintext.
func (s *session) readTLS(sd *side, in []byte) {
	w, tc := sd.x.wire, sd.x.tls
	w.in = in
	plain := s.l.plain
	k := 0
	for !sd.gone && sd.stage == open {
		n, err := tc.Read(plain[k:])
		k += n
		if k > 0 && (k == len(plain) || err != nil) {
			s.deliver(sd, plain[:k])
			k = 0
		}
		if err != nil {
			if !errors.Is(err, errWouldBlock) {
				s.tlsEnded(sd, err)
			}
			break
		}
		if n == 0 {
			break
		}
	}
	w.in = nil
	if !sd.gone {
		sd.flush() // crypto/tls may have answered something (a key update)
	}
}

// tlsEnded handles a TLS side whose peer sent close_notify (io.EOF) or a
// fatal alert, or whose records did not decrypt.
func (s *session) tlsEnded(sd *side, err error) {
	if s.ended {
		return
	}
	if sd.isClient {
		s.act(s.m.ClientGone(s))
	} else {
		s.act(s.m.TargetClosed(err, s))
	}
}
