package codec

import (
	"errors"
	"testing"
)

// TestSessionEnd: each way a session closes records its End, and the first
// reason stays when more follow.
func TestSessionEnd(t *testing.T) {
	fresh := func(cfg SessionConfig) (*Session, *recorder) {
		s := NewSession(&cfg, "10.0.0.1")
		return &s, &recorder{}
	}
	cases := []struct {
		name string
		want End
		run  func(t *testing.T) *Session
	}{
		{"bad request", EndBadRequest, func(t *testing.T) *Session {
			s, r := fresh(testSessionConfig)
			s.FromClient([]byte("NONSENSE\r\n\r\n"), r)
			return s
		}},
		{"not an upgrade", EndNotUpgrade, func(t *testing.T) *Session {
			s, r := fresh(testSessionConfig)
			s.FromClient([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), r)
			return s
		}},
		{"ssl-only", EndNotTLS, func(t *testing.T) *Session {
			cfg := testSessionConfig
			cfg.SSLOnly = true
			s, r := fresh(cfg)
			s.FromClient([]byte(upgradeRequest), r)
			return s
		}},
		{"no certificate", EndNoCert, func(t *testing.T) *Session {
			cfg := testSessionConfig
			cfg.TLSAvailable = false
			s, r := fresh(cfg)
			s.FromClient([]byte{0x16, 0x03, 0x01, 0x00, 0x10}, r)
			return s
		}},
		{"first byte", EndFirstByteTimeout, func(t *testing.T) *Session {
			s, r := fresh(testSessionConfig)
			s.FirstByteExpired(r)
			return s
		}},
		{"token missing", EndTokenMissing, func(t *testing.T) *Session {
			cfg := testSessionConfig
			cfg.Tokens = TokenFromQuery
			s, r := fresh(cfg)
			s.FromClient([]byte(upgradeRequest), r)
			return s
		}},
		{"token not found", EndTokenNotFound, func(t *testing.T) *Session {
			cfg := testSessionConfig
			cfg.Tokens = TokenFromQuery
			s, r := fresh(cfg)
			req := "GET /?token=x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Key: DKURYVK9cRFul1vOZVA56Q==\r\nSec-WebSocket-Version: 13\r\n\r\n"
			if _, step := s.FromClient([]byte(req), r); step != Route {
				t.Fatalf("step %v, want route", step)
			}
			s.RouteFailed(ErrTokenNotFound, r)
			return s
		}},
		{"lookup failed", EndLookupFailed, func(t *testing.T) *Session {
			cfg := testSessionConfig
			cfg.Tokens = TokenFromQuery
			s, r := fresh(cfg)
			req := "GET /?token=x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Key: DKURYVK9cRFul1vOZVA56Q==\r\nSec-WebSocket-Version: 13\r\n\r\n"
			s.FromClient([]byte(req), r)
			s.RouteFailed(errors.New("redis down"), r)
			return s
		}},
		{"client closed", EndClientClosed, func(t *testing.T) *Session {
			s, r := relaying(t, upgradeRequest)
			s.FromClient([]byte{0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8}, r)
			s.TargetClosed(nil, r) // too late to count
			return s
		}},
		{"protocol error", EndProtocolError, func(t *testing.T) *Session {
			s, r := relaying(t, upgradeRequest)
			s.FromClient([]byte{0x82, 0x05, 'h', 'e', 'l', 'l', 'o'}, r) // unmasked
			return s
		}},
		{"target closed", EndTargetClosed, func(t *testing.T) *Session {
			s, r := relaying(t, upgradeRequest)
			s.TargetClosed(nil, r)
			return s
		}},
		{"client gone", EndClientGone, func(t *testing.T) *Session {
			s, r := relaying(t, upgradeRequest)
			s.ClientGone(r)
			return s
		}},
		{"target unreachable", EndTargetUnreachable, func(t *testing.T) *Session {
			s, r := fresh(testSessionConfig)
			s.FromClient([]byte(upgradeRequest), r)
			s.DialFailed(errors.New("refused"), r)
			return s
		}},
		{"shutdown", EndShutdown, func(t *testing.T) *Session {
			s, r := relaying(t, upgradeRequest)
			s.Shutdown(r)
			return s
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := c.run(t)
			if s.Phase() != Closed || s.End() != c.want {
				t.Fatalf("phase %v, end %v; want closed, %v", s.Phase(), s.End(), c.want)
			}
		})
	}
	if EndShutdown.String() != "shutdown" || NumEnds.String() != "unknown" {
		t.Errorf("names: %q %q", EndShutdown, NumEnds)
	}
}
