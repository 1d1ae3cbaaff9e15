package main

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// freePortMain prints n free TCP ports on 127.0.0.1, one a line, for what a
// script starts at a port it must know in advance (a target named in a token
// file, a Redis server). Ports are taken below the kernel's ephemeral range
// when it leaves room, so that no outgoing connection is given one as its
// source port between this check and the bind; each port is held until all
// are found, so they differ. The race with other programs remains.
func freePortMain(args []string) error {
	fs := flag.NewFlagSet("freeport", flag.ContinueOnError)
	n := fs.Int("n", 1, "how many ports")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *n > 100 {
		return errors.New("-n: want 1 to 100")
	}
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	lo := ephemeralLow()
	const from = 10000
	for len(held) < *n {
		var ln net.Listener
		for try := 0; try < 200 && lo-from > 100; try++ {
			port := from + rand.IntN(lo-from)
			if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
				ln = l
				break
			}
		}
		if ln == nil { // no room below the range: the kernel's choice
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			ln = l
		}
		held = append(held, ln)
	}
	for _, ln := range held {
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	}
	return nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768 when
// it cannot be read).
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 32768
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return lo
}
