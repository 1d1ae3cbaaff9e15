package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"
	"time"
)

// relayMain runs the protocol-free reference: a TCP relay that accepts,
// dials the target and copies both ways with io.Copy, which on Linux becomes
// splice(2) between the two sockets. It is what loopback, the client and the
// target can do with no WebSocket framing at all; a WebSocket proxy is judged
// by how close it gets.
//
// Its command line mirrors websockify's positional form, so it runs from the
// same template: loadtest relay [host:]port target_host:target_port.
func relayMain(args []string) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: loadtest relay [host:]port target_host:target_port")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return errors.New("need a listen address and a target")
	}
	listen, target := fs.Arg(0), fs.Arg(1)
	if _, _, err := net.SplitHostPort(listen); err != nil {
		listen = net.JoinHostPort("127.0.0.1", listen)
	}
	if err := checkLoopback(listen); err != nil {
		return err
	}
	if err := checkLoopback(target); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	logger := log.New(os.Stderr, "relay: ", log.LstdFlags)
	logger.Printf("relaying %s to %s", ln.Addr(), target)
	var lastAcceptLog time.Time
	for {
		c, err := ln.Accept()
		if err != nil {
			if isTemporary(err) {
				// Typically EMFILE: say so once a second, not per attempt.
				if time.Since(lastAcceptLog) > time.Second {
					logger.Printf("accept: %v", err)
					lastAcceptLog = time.Now()
				}
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		go relayConn(c.(*net.TCPConn), target, logger)
	}
}

func relayConn(client *net.TCPConn, target string, logger *log.Logger) {
	d, err := net.DialTimeout("tcp", target, 10*time.Second)
	if err != nil {
		logger.Printf("dial %s: %v", target, err)
		client.Close()
		return
	}
	server := d.(*net.TCPConn)
	var wg sync.WaitGroup
	wg.Add(2)
	// Each direction ends with a half-close so EOF travels on as EOF; the
	// sockets close once both directions are done.
	go func() {
		defer wg.Done()
		_, _ = io.Copy(server, client)
		_ = server.CloseWrite()
	}()
	go func() {
		defer wg.Done()
		_, _ = io.Copy(client, server)
		_ = client.CloseWrite()
	}()
	wg.Wait()
	client.Close()
	server.Close()
}
