// Command websockify-demo shows websockify working without a server of your
// own: it starts an echo service on a loopback port, runs bin/websockify on
// 127.0.0.1:6080 in front of it, checks one round trip, and tells you what to
// try next. websockify also serves the embedded web/ folder (websock.js, its
// test page and the telnet client wstelnet.html) with --web, so a browser can
// try the proxy too.
// `websockify-demo client [url]` is a line-based WebSocket client for typing
// at it.
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/gowebsockify/websockify/web"
	"github.com/gowebsockify/websockify/wsclient"
)

const listen = "127.0.0.1:6080"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "client" {
		url := "ws://" + listen + "/"
		if len(os.Args) > 2 {
			url = os.Args[2]
		}
		if err := client(url); err != nil {
			fmt.Fprintln(os.Stderr, "websockify-demo:", err)
			os.Exit(1)
		}
		return
	}
	if err := serve(); err != nil {
		fmt.Fprintln(os.Stderr, "websockify-demo:", err)
		os.Exit(1)
	}
}

func serve() error {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()

	// --web needs a directory: write the embedded files to a temporary one.
	webRoot, err := os.MkdirTemp("", "websockify-demo-web-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(webRoot)
	if err := os.CopyFS(webRoot, web.Files); err != nil {
		return fmt.Errorf("writing the web files: %w", err)
	}

	self, err := os.Executable()
	if err != nil {
		return err
	}
	bin := filepath.Join(filepath.Dir(self), "websockify")
	proxy := exec.Command(bin, "--web", webRoot, listen, echo.Addr().String())
	proxy.Stdout, proxy.Stderr = os.Stdout, os.Stderr
	if err := proxy.Start(); err != nil {
		return fmt.Errorf("starting %s: %w (run `make` first)", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- proxy.Wait() }()

	if err := selfCheck("ws://" + listen + "/"); err != nil {
		_ = proxy.Process.Kill()
		return fmt.Errorf("self-check failed: %w", err)
	}
	fmt.Printf(`
websockify is running on ws://%s/ in front of an echo service at %s.
The round trip check passed. Next:
  - open in a browser:    http://%s/tests/websock_test.html  (websock.js test; ?mode=base64 too)
  - telnet client page:   http://%s/wstelnet.html  (for websockify in front of a telnet server)
  - type lines at it:     bin/websockify-demo client
  - point any WebSocket client (subprotocol "binary" or "base64") at ws://%s/
  - use your own target:  bin/websockify 6080 HOST:PORT   (a VNC server for noVNC)
Press Ctrl-C to stop.
`, listen, echo.Addr(), listen, listen, listen)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sigs:
		_ = proxy.Process.Signal(syscall.SIGTERM)
		<-exited
		return nil
	case err := <-exited:
		return fmt.Errorf("websockify exited: %v", err)
	}
}

// selfCheck waits for the proxy and sends one message through it.
func selfCheck(url string) error {
	var conn *wsclient.Conn
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if conn, err = wsclient.Dial(context.Background(), url, wsclient.Options{Protocol: "binary", Timeout: time.Second, IOTimeout: 5 * time.Second}); err == nil {
			break
		}
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	msg := []byte("hello through websockify")
	if err := conn.Send(msg); err != nil {
		return err
	}
	got, err := conn.ReadMessage()
	if err != nil {
		return err
	}
	if string(got) != string(msg) {
		return fmt.Errorf("echo mismatch: %q", got)
	}
	return nil
}

// client sends each line of stdin as a binary message and prints what comes back.
func client(url string) error {
	conn, err := wsclient.Dial(context.Background(), url, wsclient.Options{Protocol: "binary", Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer conn.Close()
	go func() {
		for {
			msg, err := conn.ReadMessage()
			if err != nil {
				fmt.Fprintln(os.Stderr, "connection closed:", err)
				os.Exit(0)
			}
			fmt.Printf("< %s", msg)
		}
	}()
	fmt.Fprintf(os.Stderr, "connected to %s; type lines, Ctrl-D to quit\n", url)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if err := conn.Send(append(in.Bytes(), '\n')); err != nil {
			return err
		}
	}
	return nil
}
