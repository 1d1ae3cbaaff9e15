package codec

// Limiter guards the proxy against clients that take more than their share
// (--max-sessions, --max-sessions-per-ip, --max-handshakes-per-ip). A
// Session asks it once a request head is complete, so that every transport
// and every way of choosing a target is covered, and with the client's
// address as logged (the real one, once a PROXY header or X-Forwarded-For
// has been read). Its methods run on event loops, several at once: they must
// not block, and they log refusals themselves, a burst at a time, so a
// flood of refused clients is not a flood of log lines.
type Limiter interface {
	// Admit is asked for a request of the client at addr: what says what
	// it counts toward. A nil refusal lets it through (with AdmitSession,
	// a session is then open until Release); otherwise the refusal (429 or
	// 503, with Retry-After) is sent and the connection closed.
	Admit(addr string, what Admission) (refusal *HTTPError)
	// Release ends a session that Admit let in with AdmitSession.
	Release(addr string)
	// HeadTooLarge notes a request head refused with 431, for the log.
	HeadTooLarge(addr string)
}

// Admission says what a request counts toward.
type Admission uint8

const (
	// AdmitHandshake: the first request of a connection, an upgrade or a
	// web request, counts toward the address's handshakes per second
	// (requests that follow on a kept-alive connection do not).
	AdmitHandshake Admission = 1 << iota
	// AdmitSession: an upgrade, an open session until Release.
	AdmitSession
)

// maxHead is the most bytes a request head may take.
func (s *Session) maxHead() int {
	if s.cfg.MaxRequestHead > 0 {
		return s.cfg.MaxRequestHead
	}
	return MaxHeaderBytes
}

// admit asks the Limiter about a complete request head; a refused request
// has been answered (the owner closes once it is sent).
func (s *Session) admit(req *Request, out Peer) (refused bool) {
	var what Admission
	if !s.handshook {
		what |= AdmitHandshake
	}
	if req.IsWebSocket() && !s.admitted {
		what |= AdmitSession
	}
	s.handshook = true
	if what == 0 {
		return false
	}
	if refusal := s.cfg.Limiter.Admit(s.addr, what); refusal != nil {
		// The Limiter logs refusals a burst at a time; per client, only -v.
		s.debugf(out, `"%s %s %s" %d - (%s)`, req.Method, printable(req.Target), req.Proto, refusal.Status, refusal.Reason)
		s.endAs(EndLimited)
		out.ToClient(refusal.Response())
		return true
	}
	if what&AdmitSession != 0 {
		s.admitted, s.admittedAs = true, s.addr
	}
	return false
}

// refuseHead answers a request head that could not be parsed. One that is
// too large is logged by the Limiter, a burst at a time.
func (s *Session) refuseHead(err error, out Peer) Step {
	he, ok := err.(*HTTPError)
	if !ok || he.Status != 431 {
		s.endAs(EndBadRequest)
		return s.refuse(out, err)
	}
	s.endAs(EndHeadTooLarge)
	if s.cfg.Limiter == nil {
		return s.refuse(out, err)
	}
	s.debugf(out, "%s: code %d, message %s", s.addr, he.Status, he.Reason)
	s.cfg.Limiter.HeadTooLarge(s.addr)
	out.ToClient(he.Response())
	return s.close()
}

// release gives back the session Admit let in, once, however it ended.
func (s *Session) release() {
	if s.admitted {
		s.admitted = false
		s.cfg.Limiter.Release(s.admittedAs)
	}
}
