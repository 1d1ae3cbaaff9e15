package wsclient

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// server is an in-process gobwas/ws server on 127.0.0.1: it accepts
// subprotocols binary and base64 and runs serve on each connection.
func server(t *testing.T, serve func(net.Conn, ws.Handshake)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				u := ws.Upgrader{Protocol: func(p []byte) bool { return string(p) == "binary" || string(p) == "base64" }}
				hs, err := u.Upgrade(conn)
				if err != nil {
					return
				}
				serve(conn, hs)
			}()
		}
	}()
	return "ws://" + ln.Addr().String() + "/websockify?token=x"
}

// echo sends every data message back as it came.
func echo(conn net.Conn, _ ws.Handshake) {
	for {
		msg, op, err := wsutil.ReadClientData(conn)
		if err != nil {
			return
		}
		if err := wsutil.WriteServerMessage(conn, op, msg); err != nil {
			return
		}
	}
}

func TestDialEcho(t *testing.T) {
	url := server(t, echo)
	for _, tc := range []struct {
		offer, want string
		drop        bool // Options.DropResponse
	}{
		{"", "", false},
		{"binary", "binary", false},
		{"base64", "base64", false},
		{"base64", "base64", true},
	} {
		t.Run(fmt.Sprintf("offer-%s-drop-%v", tc.offer, tc.drop), func(t *testing.T) {
			c, err := Dial(context.Background(), url, Options{Protocol: tc.offer, Timeout: 5 * time.Second, IOTimeout: 5 * time.Second, DropResponse: tc.drop})
			if err != nil {
				t.Fatal(err)
			}
			defer c.NetConn().Close()
			if c.Protocol() != tc.want || c.Base64() != (tc.want == "base64") {
				t.Fatalf("protocol %q base64 %v, want %q", c.Protocol(), c.Base64(), tc.want)
			}
			if (c.Response() == nil) != tc.drop {
				t.Fatalf("response %v with DropResponse %v", c.Response(), tc.drop)
			} else if !tc.drop && c.Response().StatusCode != 101 {
				t.Fatalf("response status %d", c.Response().StatusCode)
			}
			for _, n := range []int{0, 1, 125, 126, 65535, 65536, 200000} {
				p := bytes.Repeat([]byte{0x00, 0xff, 'a'}, n/3+1)[:n]
				if err := c.Send(p); err != nil {
					t.Fatal(err)
				}
				got, err := c.ReadMessage()
				if err != nil || !bytes.Equal(got, p) {
					t.Fatalf("%d bytes: got %d, %v", n, len(got), err)
				}
			}
			if err := c.SendClose(4000, "bye"); err != nil {
				t.Fatal(err)
			}
			var ce *CloseError
			if _, err := c.ReadMessage(); !errors.As(err, &ce) || ce.Code != 4000 { // gobwas echoes the code only
				t.Fatalf("after close: %v, want close 4000", err)
			}
		})
	}
}

// A protocol the client asked for but did not get fails Dial; a wrong
// Sec-WebSocket-Accept fails the handshake.
func TestHandshakeRefusals(t *testing.T) {
	url := server(t, echo)
	if _, err := Dial(context.Background(), url, Options{Protocol: "chat", Timeout: 5 * time.Second, IOTimeout: 5 * time.Second}); err == nil {
		t.Fatal("Dial got a protocol it did not ask for")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = http1Head(conn)
		_, _ = io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bogus\r\n\r\n")
		time.Sleep(time.Second)
	}()
	_, err = Dial(context.Background(), "ws://"+ln.Addr().String()+"/", Options{Timeout: 5 * time.Second, IOTimeout: 5 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "Sec-WebSocket-Accept") {
		t.Fatalf("bad accept key: %v", err)
	}
}

// http1Head reads a request head up to its blank line.
func http1Head(conn net.Conn) (string, error) {
	br := bufio.NewReader(conn)
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		b.WriteString(line)
		if err != nil || line == "\r\n" {
			return b.String(), err
		}
	}
}

// ReadMessage joins fragments, answers pings and reports the close code;
// the server sees the pong.
func TestReadMessageFragmentsPingClose(t *testing.T) {
	pong := make(chan []byte, 1)
	url := server(t, func(conn net.Conn, _ ws.Handshake) {
		for _, f := range []ws.Frame{
			{Header: ws.Header{OpCode: ws.OpBinary, Length: 3}, Payload: []byte("hel")},
			ws.NewPingFrame([]byte("are you there")),
			{Header: ws.Header{Fin: true, OpCode: ws.OpContinuation, Length: 2}, Payload: []byte("lo")},
			ws.NewCloseFrame(ws.NewCloseFrameBody(1011, "gone")),
		} {
			if err := ws.WriteFrame(conn, f); err != nil {
				return
			}
		}
		f, err := ReadFrame(conn)
		if err == nil && f.Op == ws.OpPong {
			pong <- f.Payload
		}
		close(pong)
	})
	c, err := Dial(context.Background(), url, Options{Protocol: "binary", Timeout: 5 * time.Second, IOTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.NetConn().Close()
	if got, err := c.ReadMessage(); err != nil || string(got) != "hello" {
		t.Fatalf("message %q, %v", got, err)
	}
	var ce *CloseError
	if _, err := c.ReadMessage(); !errors.As(err, &ce) || ce.Code != 1011 || ce.Reason != "gone" {
		t.Fatalf("want close 1011 \"gone\", got %v", err)
	}
	if p := <-pong; string(p) != "are you there" {
		t.Fatalf("pong %q", p)
	}
}

// AppendFrame writes what it is told, malformed frames included, and
// ReadFrame reads it back.
func TestAppendFrameReadsBack(t *testing.T) {
	mask := [4]byte{1, 2, 3, 4}
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 100000} {
		for _, tc := range []struct {
			f    Frame
			mask *[4]byte
		}{
			{Frame{Fin: true, Op: ws.OpBinary}, &mask},
			{Frame{Fin: false, Rsv: 4, Op: 0x3}, &mask},
			{Frame{Fin: true, Op: ws.OpText}, nil},
		} {
			tc.f.Payload = bytes.Repeat([]byte{0xa5, 0x01, 0x7f}, n/3+1)[:n]
			orig := append([]byte(nil), tc.f.Payload...)
			wire := AppendFrame([]byte("prefix"), tc.f, tc.mask)
			if !bytes.Equal(tc.f.Payload, orig) {
				t.Fatal("AppendFrame modified the payload")
			}
			if !bytes.HasPrefix(wire, []byte("prefix")) {
				t.Fatal("AppendFrame lost dst")
			}
			r := bytes.NewReader(wire[len("prefix"):])
			got, err := ReadFrame(r)
			if err != nil || r.Len() != 0 {
				t.Fatalf("%d bytes: %v, %d bytes left", n, err, r.Len())
			}
			want := tc.f
			want.Masked = tc.mask != nil
			if got.Fin != want.Fin || got.Rsv != want.Rsv || got.Op != want.Op || got.Masked != want.Masked || !bytes.Equal(got.Payload, orig) {
				t.Fatalf("%d bytes: read %+v, wrote %+v", n, got.Op, want.Op)
			}
		}
	}
}

// discardConn takes the pong a ping asks for.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }

// readConn is a Conn whose server frames are in, one after another.
func readConn(t *testing.T, b64 bool, frames ...ws.Frame) *Conn {
	t.Helper()
	var in bytes.Buffer
	for _, f := range frames {
		if err := ws.WriteFrame(&in, f); err != nil {
			t.Fatal(err)
		}
	}
	return &Conn{nc: discardConn{}, br: bufio.NewReader(&in), base64: b64}
}

// Read gathers payload across frames however a proxy split or merged it,
// skipping pings and pongs, and Discard drops payload the same way.
func TestReadStreamAcrossFrames(t *testing.T) {
	c := readConn(t, false,
		ws.NewBinaryFrame([]byte("hel")),
		ws.NewPongFrame([]byte("p")),
		ws.NewBinaryFrame([]byte("lo wor")),
		ws.NewPingFrame([]byte("p")),
		ws.NewBinaryFrame([]byte("ld!")),
		ws.NewCloseFrame(nil),
	)
	got := make([]byte, 5)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello" {
		t.Fatalf("first read: %q, %v", got, err)
	}
	if err := c.Discard(6); err != nil { // " world"
		t.Fatalf("discard: %v", err)
	}
	if err := c.Discard(2); err != io.ErrUnexpectedEOF {
		t.Fatalf("discard past the close frame: %v", err)
	}
}

// Base64 text split across frames anywhere decodes to the bytes sent.
func TestReadStreamBase64AcrossFrames(t *testing.T) {
	c := readConn(t, true,
		ws.NewTextFrame([]byte("aGVs")), // "hel"
		ws.NewPingFrame([]byte("p")),
		ws.NewTextFrame([]byte("bG8gd2")),
		ws.NewTextFrame([]byte("9ybGQ=")), // "lo world"
		ws.NewCloseFrame(ws.NewCloseFrameBody(1011, "gone")),
	)
	got := make([]byte, 11)
	if n, err := io.ReadFull(c, got); err != nil || string(got[:n]) != "hello world" {
		t.Fatalf("read %q, %v", got[:n], err)
	}
	var ce *CloseError
	if _, err := c.Read(got[:1]); !errors.As(err, &ce) || ce.Code != 1011 || ce.Reason != "gone" {
		t.Fatalf("want close 1011, got %v", err)
	}
}

// A server's frame must not be masked or carry RSV bits.
func TestReadRejectsClientStyleFrames(t *testing.T) {
	mask := [4]byte{9, 9, 9, 9}
	for name, wire := range map[string][]byte{
		"masked": AppendFrame(nil, Frame{Fin: true, Op: ws.OpBinary, Payload: []byte("x")}, &mask),
		"rsv1":   AppendFrame(nil, Frame{Fin: true, Rsv: 4, Op: ws.OpBinary, Payload: []byte("x")}, nil),
	} {
		c := &Conn{nc: discardConn{}, br: bufio.NewReader(bytes.NewReader(wire))}
		if _, err := c.ReadMessage(); err == nil {
			t.Errorf("%s: ReadMessage accepted it", name)
		}
	}
}

// The Hixie-76 example of draft-hixie-thewebsocketprotocol-76, page 9.
func TestHixie76Answer(t *testing.T) {
	ans := Hixie76Answer("3e6b263  4 17 80", "17  9 G`ZD9   2 2b 7X 3 /r90", []byte("WjN}|M(6"))
	if string(ans[:]) != "n`9eBk9z$R8pOtVb" {
		t.Fatalf("answer %q", ans)
	}
	for _, tc := range []struct {
		num    uint32
		spaces int
	}{{3472689, 4}, {912, 7}, {1, 1}, {0, 3}} {
		k := Hixie76Key(tc.num, tc.spaces)
		if Hixie76Answer(k, k, nil) != Hixie76Answer(Hixie76Key(tc.num, 1), Hixie76Key(tc.num, 1), nil) {
			t.Errorf("key %q does not encode %d", k, tc.num)
		}
	}
}
