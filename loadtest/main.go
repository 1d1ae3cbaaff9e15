// Command loadtest drives real WebSocket sessions through a websockify-style
// proxy (ours, Python's, or anything speaking the same command line) to
// targets it runs itself, and measures what a proxy costs: single-connection
// throughput, round-trip latency under many connections, session set-up rate,
// memory per idle session and per stalled session.
//
// Usage:
//
//	loadtest throughput -proxy-cmd 'bin/websockify {listen} {target}' -dir down -bytes 1073741824
//	loadtest echo       -proxy-cmd '...' -conns 1000 -duration 5s -repeat 3
//	loadtest setup      -proxy-cmd '...' -concurrency 50 -duration 5s -repeat 3
//	loadtest hold       -proxy-cmd '...' -conns 9900
//	loadtest <mode>     -relay ...            (the built-in TCP relay, raw TCP client)
//	loadtest <mode>     -proxy ws://127.0.0.1:P/ -target 127.0.0.1:T   (proxy started by hand)
//	loadtest soak       -proxy-cmd '...' -duration 30m   (verified traffic plus faults; leak check)
//	loadtest slow       -proxy-cmd '...' -bytes N -rate R (slow consumer: the proxy's memory)
//	loadtest stall      -proxy-cmd '...' -conns 1000  (stalled readers: memory, CPU, then every byte checked)
//	loadtest openloop   -proxy-cmd '...' -conns 200 -rates 1k,2k,4k  (latency at a fixed offered rate)
//	loadtest relay      LISTEN TARGET         (the plain io.Copy relay on its own)
//	loadtest report     -in results.jsonl -md BENCHMARKS.md
//	loadtest setup      -proxy-cmd 'bin/websockify --token-plugin TokenFile --token-source F {listen}' -target 127.0.0.1:T -path '/?token=NAME'
//	loadtest freeport   -n 2                  (free loopback ports for a fixed -target, a Redis server)
//
// Every mode prints one human-readable summary; with -json it prints one JSON
// object on stdout instead and the summary goes to stderr. All traffic stays
// on 127.0.0.0/8 and every phase has a deadline.
//
// The target (echo server, byte source or byte sink) always runs in a child
// process (this binary re-executed with the hidden "target" subcommand): with
// 9,900 held sessions the client and the target each need ~9,900 sockets, and
// the per-process limit is 20,000.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"syscall"
)

func usage() {
	fmt.Fprintf(os.Stderr, `usage: loadtest MODE [flags]

modes:
  throughput   one connection, N bytes down (target -> client) or up (client -> target)
  echo         many connections doing small request/response round trips
  setup        connection churn: handshake, one echo byte, close, repeat
  hold         open N idle sessions and measure the proxy's memory per session
  soak         long run of verified echo, bulk, churn, slow-reader, half-close and
               fragmented traffic (some over wss with -wss-share) plus faults; fails on
               any corrupted byte, a descriptor/goroutine/session leak or a steady RSS climb
  slow         slow consumer: the target sends N bytes, the client reads at R bytes/s;
               the proxy's peak memory, every byte verified
  openloop     latency at fixed offered rates (open loop, full histograms)
  stall        N sessions whose client stopped reading while the target streams:
               the proxy's memory per session once flat, its CPU meanwhile, then
               every session reads on and must get the right bytes
  relay        run the plain TCP relay: loadtest relay LISTEN TARGET
  report       turn JSON results into the tables of BENCHMARKS.md
  plot         draw proxy memory against sessions held (PNG) from hold results
  freeport     print free TCP ports on 127.0.0.1, outside the ephemeral range, for
               targets and servers a script starts at a known port

run "loadtest MODE -h" for the flags of a mode.
`)
}

func main() {
	raiseNofileLimit()
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	mode, args := os.Args[1], os.Args[2:]
	var err error
	switch mode {
	case "throughput", "echo", "setup", "hold", "stall", "openloop":
		err = runMeasurement(mode, args)
	case "soak":
		err = soakMain(args)
	case "slow":
		err = slowMain(args)
	case "relay":
		err = relayMain(args)
	case "target":
		err = targetMain(args)
	case "holder":
		err = holderMain(args)
	case "report":
		err = reportMain(args)
	case "plot":
		err = plotMain(args)
	case "freeport":
		err = freePortMain(args)
	case "-h", "-help", "--help", "help":
		usage()
		return
	default:
		fmt.Fprintf(os.Stderr, "loadtest: unknown mode %q\n", mode)
		usage()
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadtest %s: %v\n", mode, err)
		os.Exit(1)
	}
}

// raiseNofileLimit lifts the soft open-files limit to the hard one. Go does
// this on its own since 1.19, but only for itself: calling Setrlimit
// explicitly also makes children (the proxy, the target) inherit it.
func raiseNofileLimit() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}
