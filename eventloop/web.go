package eventloop

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/gowebsockify/websockify/codec"
	"github.com/gowebsockify/websockify/webserver"
	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/pool/goroutine"
)

// Web requests (--web).
//
// The filesystem work of a request (stat, open, read) may block, so it runs
// on gnet's worker pool, never on the loop; the answer comes back to the
// loop with Execute. A file larger than webserver.InlineMax is sent in
// fileChunk pieces, each read off the loop and written on it, the next one
// only once the client has taken the previous one, so a download holds at
// most one chunk whatever the file's size. A file is open only while its
// session serves it, and a web session never dials, so the descriptors
// reserved for a dial at admission cover it.
//
// After the response the machine reads the next request head (keep-alive),
// which may well be a WebSocket upgrade, or the session closes.

const fileChunk = 64 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, fileChunk); return &b }}

// serveWeb builds the response to the machine's web request off the loop.
func (s *session) serveWeb() {
	req := s.m.WebRequest()
	web := s.l.srv.web
	el := s.l.el
	s.state().webPending = true
	err := goroutine.DefaultWorkerPool.Submit(func() {
		resp := web.Serve(req, time.Now())
		ready := gnet.RunnableFunc(func(context.Context) error {
			s.responseReady(resp)
			return nil
		})
		if el.Execute(context.Background(), ready) != nil && resp.File != nil {
			_ = resp.File.Close()
		}
	})
	if err != nil {
		s.x.webPending = false
		s.act(s.m.WebFailed(err, s))
	}
}

// responseReady runs on the loop when a response has been built.
func (s *session) responseReady(resp *webserver.Response) {
	x := s.state()
	x.webPending = false
	if s.ended {
		if resp.File != nil {
			_ = resp.File.Close()
		}
		s.sync()
		return
	}
	s.m.WebStatus(resp.Status, s)
	s.client.send(resp.Head, resp.Body)
	x.keepAlive = resp.KeepAlive
	if resp.File != nil {
		x.file, x.fileLeft = resp.File, resp.FileSize
		s.pumpFile()
	} else {
		s.webDone()
	}
	s.sync()
}

// pumpFile reads the next chunk of the file being served, off the loop,
// once the client has taken the previous ones; otherwise the drain poller
// calls it again (session.sideReady).
func (s *session) pumpFile() {
	x := s.x
	if x == nil || x.chunkPending || x.file == nil || s.ended || s.client.queued() > 0 {
		return
	}
	x.chunkPending = true
	f, n := x.file, min(x.fileLeft, fileChunk)
	el := s.l.el
	err := goroutine.DefaultWorkerPool.Submit(func() {
		bp := chunkPool.Get().(*[]byte)
		buf := (*bp)[:n]
		_, err := io.ReadFull(f, buf)
		read := gnet.RunnableFunc(func(context.Context) error {
			s.chunkRead(buf, err)
			chunkPool.Put(bp)
			return nil
		})
		if el.Execute(context.Background(), read) != nil {
			_ = f.Close()
			chunkPool.Put(bp)
		}
	})
	if err != nil {
		x.chunkPending = false
		s.fileFailed(err)
	}
}

// chunkRead runs on the loop with the next piece of the file.
func (s *session) chunkRead(buf []byte, err error) {
	x := s.state()
	x.chunkPending = false
	switch {
	case s.ended:
		s.closeFile()
	case err != nil:
		s.fileFailed(err)
	default:
		s.client.send(buf, nil) // copied where the kernel does not take it
		x.fileLeft -= int64(len(buf))
		if x.fileLeft > 0 {
			s.pumpFile()
		} else {
			s.closeFile()
			s.webDone()
		}
	}
	s.sync()
}

// fileFailed ends a download cut short (the file shrank, say): the
// Content-Length already sent cannot be honoured, so the connection closes.
func (s *session) fileFailed(err error) {
	name := s.x.file.Name()
	s.closeFile()
	s.act(s.m.WebFailed(fmt.Errorf("reading %s: %v", name, err), s))
}

func (s *session) closeFile() {
	if x := s.x; x != nil && x.file != nil && !x.chunkPending {
		_ = x.file.Close()
		x.file = nil
	}
}

// webDone tells the machine the response is out: it reads the next
// request (perhaps already held) or closes.
func (s *session) webDone() {
	step := s.m.WebDone(s.x != nil && s.x.keepAlive)
	s.act(step)
	if step == codec.Continue {
		s.fromClient(nil) // a pipelined request
	}
}
