package main

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/gowebsockify/websockify/eventloop"
	"github.com/gowebsockify/websockify/metrics"
	"github.com/gowebsockify/websockify/workers"
	"github.com/prometheus/client_golang/prometheus"
)

// checkMetricsListen refuses a --metrics-listen address that does not
// parse, or that is the proxy's own listen address: metrics are never
// served on the public port. It returns the address to listen on, a unix
// socket's path made absolute (a daemon changes directory).
func checkMetricsListen(addr string, cfg *eventloop.Config) (string, error) {
	network, address, err := metrics.ParseAddr(addr)
	if err != nil {
		return "", fmt.Errorf("--metrics-listen %s: %v", addr, err)
	}
	if network == "unix" {
		address = absPath(address)
	}
	clash := false
	switch {
	case network == "unix":
		clash = cfg.ListenUnix != "" && address == cfg.ListenUnix
	case cfg.ListenUnix == "" && len(cfg.Listeners) == 0:
		clash = metrics.SameTCPAddress(address, cfg.ListenAddr)
	}
	if clash {
		return "", fmt.Errorf("--metrics-listen %s: that is the proxy's listen address; metrics need an address of their own", addr)
	}
	if network == "unix" {
		return "unix:" + address, nil
	}
	return address, nil
}

// startMetrics serves --metrics-listen, if given, and returns what stops it.
// A process that proxies (alone, or as a worker) counts in its own
// registry, which a worker serves on its private socket for the parent;
// the parent of --workers serves every worker's metrics from the address.
func (p *process) startMetrics() (stop func(), err error) {
	addr := p.opts.metricsListen
	if addr == "" {
		return func() {}, nil
	}
	warn := func(format string, args ...any) { p.cfg.Log.Warnf(format, args...) }
	var gatherer prometheus.Gatherer
	var ws *metrics.Workers
	var l net.Listener
	switch {
	case p.opts.workers > 1 && !workers.IsWorker():
		if ws, err = metrics.NewWorkers(p.opts.workers, warn); err != nil {
			return nil, fmt.Errorf("--metrics-listen: %v", err)
		}
		gatherer = ws.Gatherer()
	default:
		m := metrics.New(version)
		p.cfg.Metrics = m
		p.cfg.Tokens = m.CountLookups(p.cfg.Tokens)
		p.cfg.Auth = m.CountAuth(p.cfg.Auth)
		gatherer = m.Gatherer()
		if workers.IsWorker() {
			slot, _ := workers.Slot()
			var ok bool
			if l, ok, err = metrics.WorkerListen(slot); err != nil {
				return nil, fmt.Errorf("--metrics-listen: the worker's socket: %v", err)
			} else if !ok {
				return nil, errors.New("--metrics-listen: the parent named no socket for this worker")
			}
		}
	}
	if l == nil {
		if l, err = metrics.Listen(addr); err != nil {
			if ws != nil {
				ws.Close()
			}
			return nil, fmt.Errorf("--metrics-listen %s: %v", addr, err)
		}
	}
	srv := metrics.Serve(l, gatherer, warn)
	return func() {
		_ = srv.Close() // and the listener: a unix socket's file goes with it
		if ws != nil {
			ws.Close()
		}
	}, nil
}

// exitMetricsFailed reports a metrics listener that could not start.
func (p *process) exitMetricsFailed(err error) {
	p.daemonReady(err)
	p.cfg.Log.Close()
	fmt.Fprintf(os.Stderr, "websockify: %v\n", err)
	if p.prog != nil {
		p.prog.Stop()
	}
	os.Exit(1)
}
