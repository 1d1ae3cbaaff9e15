package test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// More than one machine's worth of proxies: Debian's haproxy, configured
// with contrib/haproxy/haproxy.cfg as shipped (only its addresses moved to
// free ports), in front of two websockify instances that share their
// targets through one redis-server. Sessions come from distinct loopback
// addresses, so each instance's log shows which clients it served, as
// haproxy's PROXY v2 header told it.

// lbClient is one session through the balancer, from its own address.
type lbClient struct {
	from, token, target string
	c                   *wsClient
}

func TestLoadBalancedInstances(t *testing.T) {
	requireFile(t, "/usr/sbin/haproxy", "Debian package haproxy")
	redis := startRedis(t)
	targets := namedTargets(t, "alpha", "beta")
	for name, addr := range targets {
		redis.do(t, "SET", "lb:"+name, addr)
	}
	instance := func(port int) *proxy {
		t.Helper()
		args := []string{"127.0.0.1:" + strconv.Itoa(port),
			"--proxy-protocol", "--trusted-proxies", "127.0.0.1",
			"--health-path", "/healthz",
			"--token-plugin", "TokenRedis", "--token-source", redis.addr + ":::lb"}
		p, err := startProcess(t, args, 0, "tcp", "127.0.0.1:"+strconv.Itoa(port), port)
		if err != nil {
			t.Fatalf("instance on %d: %v", port, err)
		}
		return p
	}
	ports := [2]int{freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1")}
	ws := [2]*proxy{instance(ports[0]), instance(ports[1])}
	lb := startBalancer(t, ports)

	// Sessions spread over both instances, each reaching its token's target.
	var open []*lbClient
	next := 10
	connect := func(token string) *lbClient {
		t.Helper()
		from := "127.0.0." + strconv.Itoa(next)
		next++
		c := lb.session(t, from, token)
		open = append(open, c)
		return c
	}
	for i := 0; i < 6; i++ {
		connect([]string{"alpha", "beta"}[i%2])
	}
	servedBy := func(c *lbClient) int {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			var in []int
			for i, p := range ws {
				if strings.Contains(p.stderr.String(), c.from+": Plain non-SSL (ws://) WebSocket connection") {
					in = append(in, i)
				}
			}
			if len(in) == 1 {
				return in[0]
			}
			if len(in) > 1 || time.Now().After(deadline) {
				t.Fatalf("client %s is in the logs of instances %v, want exactly one", c.from, in)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	count := [2]int{}
	for _, c := range open {
		count[servedBy(c)]++
	}
	if count[0] == 0 || count[1] == 0 {
		t.Fatalf("sessions per instance %v: haproxy did not spread them", count)
	}
	for i, p := range ws {
		if strings.Contains(p.stderr.String(), "127.0.0.1: Plain non-SSL") {
			t.Fatalf("instance %d logged haproxy's address, not the client's:\n%s", i, p.stderr.String())
		}
	}

	// Drain the first instance: new sessions all go to the second, and the
	// first's sessions carry on.
	lb.admin(t, "set server websockify/ws1 state drain")
	for i := 0; i < 4; i++ {
		if c := connect("alpha"); servedBy(c) != 1 {
			t.Fatalf("session from %s went to the drained instance", c.from)
		}
	}
	echoAll(t, open)

	// Stop it: its own sessions end, the other's do not, and new sessions
	// still succeed on the other.
	onFirst := open[:0:0]
	var rest []*lbClient
	for _, c := range open {
		if servedBy(c) == 0 {
			onFirst = append(onFirst, c)
		} else {
			rest = append(rest, c)
		}
	}
	ws[0].kill()
	for _, c := range onFirst {
		// Its 1001 and then the end (haproxy may end it with a reset).
		_ = c.c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(io.Discard, c.c.conn)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("session from %s on the stopped instance still open", c.from)
		}
		c.c.conn.Close()
	}
	echoAll(t, rest)
	lb.admin(t, "set server websockify/ws1 state ready") // haproxy's probes now decide
	for i := 0; i < 4; i++ {
		if c := connect("beta"); servedBy(c) != 1 {
			t.Fatalf("session from %s went to the stopped instance", c.from)
		}
	}

	// Restart it: once its probes pass it takes new sessions again (it has
	// the fewest), and the other's sessions are still there.
	ws[0] = instance(ports[0])
	lb.waitUp(t, "ws1")
	if c := connect("alpha"); servedBy(c) != 0 {
		t.Fatalf("session from %s did not go to the restarted instance", c.from)
	}
	echoAll(t, open[len(onFirst)+len(rest):])
	echoAll(t, rest)
}

// echoAll checks that every session still echoes.
func echoAll(t *testing.T, clients []*lbClient) {
	t.Helper()
	for _, c := range clients {
		mustEcho(t, c.c, []byte("still there "+c.from))
	}
}

// haproxy is a running haproxy with its admin socket.
type haproxy struct {
	addr  string // the frontend
	admin func(t *testing.T, cmd string) string
}

// startBalancer runs haproxy with contrib/haproxy/haproxy.cfg, its frontend
// on a free port and its two servers on ports, and waits until both
// servers pass their health checks.
func startBalancer(t *testing.T, ports [2]int) *haproxy {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := os.ReadFile(filepath.Join(root, "contrib", "haproxy", "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	dir := shortTempDir(t)
	lbPort := freePort(t, "127.0.0.1")
	sock := filepath.Join(dir, "admin.sock")
	cfg := string(shipped)
	for old, repl := range map[string]string{
		"bind :6080": "bind 127.0.0.1:" + strconv.Itoa(lbPort),
		// This machine's hard limit is 20,000 open files.
		"maxconn 50000":                "maxconn 4000",
		"127.0.0.1:6081":               "127.0.0.1:" + strconv.Itoa(ports[0]),
		"127.0.0.1:6082":               "127.0.0.1:" + strconv.Itoa(ports[1]),
		"/run/haproxy/websockify.sock": sock,
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("contrib/haproxy/haproxy.cfg no longer has %q", old)
		}
		cfg = strings.ReplaceAll(cfg, old, repl)
	}
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	writeFile(t, cfgPath, cfg)
	if out, err := exec.Command("/usr/sbin/haproxy", "-c", "-f", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	startHAProxy(t, "127.0.0.1:"+strconv.Itoa(lbPort), cfg)
	h := &haproxy{addr: "127.0.0.1:" + strconv.Itoa(lbPort)}
	h.admin = func(t *testing.T, line string) string {
		t.Helper()
		c, err := net.DialTimeout("unix", sock, time.Second)
		if err != nil {
			t.Fatalf("haproxy admin socket: %v", err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, line+"\n"); err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(c)
		return string(out)
	}
	h.waitUp(t, "ws1")
	h.waitUp(t, "ws2")
	return h
}

// waitUp waits until haproxy's health checks see server as UP.
func (h *haproxy) waitUp(t *testing.T, server string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		state := serverStatus(h.admin(t, "show stat"), server)
		if state == "UP" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy server %s is %q after 15 s", server, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// serverStatus finds server's status column in haproxy's CSV statistics.
func serverStatus(csv, server string) string {
	sc := bufio.NewScanner(strings.NewReader(csv))
	col := -1
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ",")
		if strings.HasPrefix(sc.Text(), "# ") {
			fields[0] = strings.TrimPrefix(fields[0], "# ")
			for i, f := range fields {
				if f == "status" {
					col = i
				}
			}
			continue
		}
		if col >= 0 && len(fields) > col && fields[0] == "websockify" && fields[1] == server {
			return fields[col]
		}
	}
	return ""
}

// session opens a session through the balancer from the loopback address
// from, with token, and checks it reached that token's target.
func (h *haproxy) session(t *testing.T, from, token string) *lbClient {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	conn, err := d.Dial("tcp", h.addr)
	if err != nil {
		t.Fatalf("dial the balancer from %s: %v", from, err)
	}
	r, err := upgradeOn(conn, "/websockify?token="+token)
	if err != nil {
		t.Fatalf("session from %s: %v", from, err)
	}
	if r.status != 101 {
		t.Fatalf("session from %s: status %d %q", from, r.status, r.body)
	}
	t.Cleanup(func() { r.c.conn.Close() })
	got, err := r.c.readN(len(token) + 1)
	if err != nil || string(got) != token+"\n" {
		t.Fatalf("session from %s with token %s: greeting %q, %v", from, token, got, err)
	}
	c := &lbClient{from: from, token: token, target: token, c: r.c}
	mustEcho(t, c.c, []byte(fmt.Sprintf("hello from %s", from)))
	return c
}
