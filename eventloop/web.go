package eventloop

import (
	"context"
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
// loop with Execute. Meanwhile the session is in the serving state and
// parses nothing more. A file larger than webserver.InlineMax is streamed in
// fileChunk pieces, each read off the loop and written on it, the next one
// only once the client's outbound buffer is below fileLowWater, so a
// download costs at most about fileChunk+fileLowWater bytes of memory
// whatever the file's size. A file is open only while its session serves
// it, and a web session never dials, so the fds reserved for a dial at
// admission cover it.
//
// After the response the session reads the next request head (keep-alive),
// which may well be a WebSocket upgrade, or closes once flushed.

const (
	fileChunk    = 256 << 10
	fileLowWater = 256 << 10
)

var chunkPool = sync.Pool{New: func() any { b := make([]byte, fileChunk); return &b }}

// serve answers a request that is not an upgrade, off the loop.
func (s *session) serve(req *codec.Request) {
	s.state = serving
	web := s.l.srv.web
	err := goroutine.DefaultWorkerPool.Submit(func() {
		resp := web.Serve(req, time.Now())
		err := s.l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			s.responseReady(req, resp)
			return nil
		}))
		if err != nil && resp.File != nil {
			_ = resp.File.Close()
		}
	})
	if err != nil {
		s.refuse(&codec.HTTPError{Status: 503, Reason: "Service Unavailable"})
	}
}

// responseReady runs on the loop when a response has been built.
func (s *session) responseReady(req *codec.Request, resp *webserver.Response) {
	if s.clientGone || s.state != serving {
		if resp.File != nil {
			_ = resp.File.Close()
		}
		return
	}
	s.logf(`"%s %s %s" %d -`, req.Method, req.Target, req.Proto, resp.Status)
	if resp.Body != nil {
		s.writevClient(resp.Head, resp.Body)
	} else {
		s.writeClient(resp.Head)
	}
	s.keepAlive = resp.KeepAlive
	if resp.File != nil {
		s.file, s.fileLeft = resp.File, resp.FileSize
		s.pumpFile()
		return
	}
	s.responseSent()
}

// pumpFile reads the next chunk of the file being served, off the loop,
// when the client has taken most of the previous ones; otherwise it waits
// for the tick (poll) to try again.
func (s *session) pumpFile() {
	if s.chunkPending || s.file == nil {
		return
	}
	if s.client.OutboundBuffered() >= fileLowWater {
		s.l.wait(s)
		return
	}
	s.chunkPending = true
	f, n := s.file, min(s.fileLeft, fileChunk)
	err := goroutine.DefaultWorkerPool.Submit(func() {
		bp := chunkPool.Get().(*[]byte)
		buf := (*bp)[:n]
		_, err := io.ReadFull(f, buf)
		eerr := s.l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			s.chunkRead(buf, err)
			chunkPool.Put(bp)
			return nil
		}))
		if eerr != nil {
			_ = f.Close()
			chunkPool.Put(bp)
		}
	})
	if err != nil {
		s.chunkPending = false
		s.fileFailed(err)
	}
}

// chunkRead runs on the loop with the next piece of the file.
func (s *session) chunkRead(buf []byte, err error) {
	s.chunkPending = false
	if s.clientGone || s.state != serving {
		s.closeFile()
		return
	}
	if err != nil {
		s.fileFailed(err)
		return
	}
	s.writeClient(buf) // gnet copies what it cannot write at once
	s.fileLeft -= int64(len(buf))
	if s.fileLeft > 0 {
		s.pumpFile()
		return
	}
	s.closeFile()
	s.responseSent()
}

// fileFailed ends a download cut short (the file shrank, say): the
// Content-Length already sent cannot be honoured, so the connection closes.
func (s *session) fileFailed(err error) {
	s.logf("%s: reading %s: %v", s.addr, s.file.Name(), err)
	s.closeFile()
	s.finish()
}

func (s *session) closeFile() {
	if s.file != nil && !s.chunkPending {
		_ = s.file.Close()
		s.file = nil
	}
}

// responseSent goes back to reading requests, or closes.
func (s *session) responseSent() {
	if !s.keepAlive {
		s.finish()
		return
	}
	s.startReading()
	if s.clientPaused {
		s.resumeClient()
	}
	if s.client.InboundBuffered() > 0 {
		s.readRequest() // a pipelined request
	}
}

// startReading enters the reading state with a fresh request-head deadline,
// which also bounds how long an idle keep-alive connection stays open.
func (s *session) startReading() {
	s.state = reading
	now := time.Now().UnixNano()
	s.headBy = now + int64(requestHeadTimeout)
	s.l.requestHead.add(now, s)
}
