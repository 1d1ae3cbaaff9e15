package eventloop

import (
	"github.com/gowebsockify/websockify/limits"
)

// setUpLimits gives every session the limits of cfg.Limits (package limits
// keeps the counts; codec.Session asks it once a request head is complete).
// The limiter exists even with no session limit set: it is what logs a
// burst of oversized request heads in one line.
func (s *server) setUpLimits() {
	lc := s.cfg.Limits
	s.limiter = limits.New(lc, func(msg string) { s.cfg.Log.Warnf("%s", msg) })
	s.sessionCfg.Limiter = s.limiter
	if s.cfg.Metrics != nil {
		s.limiter.CountRefusals(func(name string) limits.Counter { return s.cfg.Metrics.LimitRefusal(name) })
	}
	s.sessionCfg.MaxRequestHead = lc.MaxRequestHead
	s.sessionCfg.MaxFrame = lc.MaxFrameSize
	// A head is read whole before it is parsed: the client is read on
	// until it is in (or too large), plus a Hixie-76 challenge.
	s.holdLimit = max(holdLimit, lc.MaxRequestHead+64)
}
