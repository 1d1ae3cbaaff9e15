package codec

import "strings"

// healthResponse answers a load balancer's probe of --health-path: the
// proxy is up and takes new sessions. A proxy that is shutting down no
// longer accepts connections, so the probe fails at connect.
var healthResponse = []byte("HTTP/1.1 200 OK\r\nServer: " + ServerName +
	"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\nCache-Control: no-store\r\nConnection: close\r\n\r\nOK\n")

// isHealthProbe reports whether req is a GET or HEAD of the health path
// (the query is ignored). Probes come every few seconds from every
// balancer, so they skip auth and are logged only with -v.
func (s *Session) isHealthProbe(req *Request) bool {
	if s.cfg.HealthPath == "" || req.IsWebSocket() || (req.Method != "GET" && req.Method != "HEAD") {
		return false
	}
	path, _, _ := strings.Cut(req.Target, "?")
	return path == s.cfg.HealthPath
}

// answerHealthProbe sends the health response and ends the connection.
func (s *Session) answerHealthProbe(req *Request, out Peer) Step {
	s.debugf(out, `"%s %s %s" 200 - (health probe)`, req.Method, printable(req.Target), req.Proto)
	resp := healthResponse
	if req.Method == "HEAD" {
		resp = resp[:len(resp)-len("OK\n")]
	}
	out.ToClient(resp)
	return s.close()
}
