package metrics

import (
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ParseAddr reads a --metrics-listen address: PORT or HOST:PORT for TCP
// (HOST defaults to 127.0.0.1: metrics are for the operator, not the
// clients; give 0.0.0.0, [::] or an empty host, ":PORT", for every
// address), or a path with a slash in it, such as /run/websockify.sock or
// ./m.sock, for a unix socket (unix:PATH also works).
func ParseAddr(addr string) (network, address string, err error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok || strings.Contains(addr, "/") {
		if !ok {
			path = addr
		}
		if path == "" {
			return "", "", errors.New("empty unix socket path")
		}
		return "unix", path, nil
	}
	host, portText := "127.0.0.1", addr
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		host, portText = strings.Trim(addr[:i], "[]"), addr[i+1:]
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 1 || port > 65535 {
		return "", "", fmt.Errorf("bad port %q", portText)
	}
	return "tcp", net.JoinHostPort(host, portText), nil
}

// SameTCPAddress reports whether two TCP listen addresses ("host:port",
// an empty host meaning every address) would take the same port: the same
// port, and the same host or either one a wildcard.
func SameTCPAddress(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wild(ha) || wild(hb)
}

// Listen binds a --metrics-listen address. A unix socket file left by a
// dead process is replaced; one that answers is in use.
func Listen(addr string) (net.Listener, error) {
	network, address, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		removeStaleSocket(address)
	}
	return net.Listen(network, address)
}

func removeStaleSocket(path string) {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = c.Close()
		return // alive: the bind will say it is in use
	}
	_ = os.Remove(path)
}

// Serve serves g on l until l is closed: /metrics in Prometheus's formats,
// and / a page pointing there. It runs net/http on its own goroutines, never
// on the event loops. errorf receives what goes wrong while gathering.
func Serve(l net.Listener, g prometheus.Gatherer, errorf func(format string, args ...any)) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      printfLogger(errorf),
		ErrorHandling: promhttp.ContinueOnError, // what could be gathered is still served
		Timeout:       30 * time.Second,
	}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(indexPage))
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(printfWriter(errorf), "", 0),
	}
	go func() { _ = srv.Serve(l) }()
	return srv
}

const indexPage = `<!DOCTYPE html>
<html><head><title>websockify metrics</title></head>
<body><h1>websockify</h1><p><a href="/metrics">Metrics</a></p></body></html>
`

// printfLogger adapts errorf to promhttp's logger.
type printfLogger func(format string, args ...any)

func (f printfLogger) Println(v ...any) {
	f("metrics: %s", strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}

// printfWriter adapts errorf to net/http's log.Logger.
type printfWriter func(format string, args ...any)

func (f printfWriter) Write(p []byte) (int, error) {
	f("metrics: %s", strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
