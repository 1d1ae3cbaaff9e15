package eventloop

import (
	"crypto/tls"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/gowebsockify/websockify/codec"
	"github.com/gowebsockify/websockify/limits"
	"github.com/gowebsockify/websockify/metrics"
	"github.com/gowebsockify/websockify/token"
)

// Config is everything the proxy needs, fixed at start.
type Config struct {
	ListenAddr     string      // "host:port" (host may be empty: all addresses, IPv4 and IPv6)
	ListenUnix     string      // path of a unix socket to listen on instead
	ListenUnixMode os.FileMode // permissions of that socket
	// Listeners, when given, are listening sockets bound by another
	// process (--inetd's fd 0, systemd's socket activation): the proxy
	// accepts on them instead of binding ListenAddr or ListenUnix.
	Listeners []*os.File

	TargetNetwork string // "tcp" or "unix"
	TargetAddr    string // "host:port" or a socket path
	PreferIPv6    bool   // order the target's IPv6 addresses first
	TargetLabel   string // how log lines name the target, when not TargetAddr (a wrapped program)

	// Tokens, when set, looks each session's target up by its token
	// (--token-plugin), read from where TokenFrom says; the lookup runs
	// off the loops, on the goroutine that then dials.
	Tokens    token.Plugin
	TokenFrom codec.TokenFrom
	// Auth, when set, checks each upgrade (--auth-plugin) and, with
	// WebAuth, each web request.
	Auth    codec.Authenticator
	WebAuth bool
	// ProxyProtocol expects a PROXY header (v1 or v2) from every client
	// in TrustedProxies (--proxy-protocol); TrustedProxies also says whose
	// X-Forwarded-For and Forwarded headers are believed
	// (--trusted-proxies). See codec/realaddr.go.
	ProxyProtocol  bool
	TrustedProxies []netip.Prefix

	// Record, when set, records each upgraded session to Record.N (N
	// counts accepted connections from 1; with --workers, worker k of n
	// numbers its connections k+1, k+1+n, ...). RecordSlot and
	// RecordSlots are k and n.
	Record                  string
	RecordSlot, RecordSlots int

	Heartbeat   time.Duration // ping period; 0 = off
	IdleTimeout time.Duration // exit after this long with no session; 0 = never
	Timeout     time.Duration // stop accepting after this long, exit when the last session ends; 0 = never
	RunOnce     bool          // exit after the first upgraded session ends
	// ShutdownTimeout is how long SIGTERM waits, in all, for sessions to
	// close after telling them 1001 (--shutdown-timeout); 0 stops at once.
	ShutdownTimeout time.Duration

	// TLS, when set, serves clients whose first byte is a TLS hello; nil
	// closes them. CertFile only names the certificate in the log line of
	// that refusal. SSLOnly refuses clients that are not TLS.
	TLS      *tls.Config
	CertFile string
	SSLOnly  bool
	// TargetTLS, when set, speaks TLS to the target (--ssl-target); an empty
	// ServerName means the target's host.
	TargetTLS *tls.Config
	// WebRoot, when set, serves the files under it to plain GET and HEAD
	// requests (--web); FileOnly refuses directory listings (--file-only).
	WebRoot  string
	FileOnly bool
	// HealthPath, when set, is answered 200 OK for a load balancer's
	// health checks (--health-path).
	HealthPath string

	// Limits refuses clients past --max-sessions and the like, and caps
	// request heads and client frames.
	Limits limits.Config

	Verbose bool
	Traffic io.Writer // per-frame traffic symbols; nil = off
	Log     *Logger

	// Loops is the number of event loops; 0 means one per core.
	Loops int

	// StatusRequests, when it delivers, logs one status line: open
	// sessions, goroutines and open descriptors (websockify passes its
	// SIGUSR1 channel). Soak tests compare the line before and after a run.
	StatusRequests <-chan os.Signal

	// Worker marks one of several processes sharing the listening port
	// (websockify --workers): their parent checked that the address was free
	// and checks that only its workers listen there, so a worker skips both
	// checks, which would see its siblings. Ready, if set, is called once
	// the listeners are bound.
	Worker bool
	Ready  func()

	// Metrics, when set, counts sessions, bytes and failures for
	// --metrics-listen (package metrics; eventloop/metrics.go).
	Metrics *metrics.Proxy
}

// Timeouts. The first-byte wait matches the original websockify.
const (
	firstByteTimeout    = 3 * time.Second
	requestHeadTimeout  = 30 * time.Second
	tlsHandshakeTimeout = 10 * time.Second
	dialTimeout         = 10 * time.Second
	// lookupTimeout bounds a token lookup (Redis, an HTTP API): a backend
	// that is down or hangs costs its clients a 504, not a hang.
	lookupTimeout = 5 * time.Second

	// A session that ends sends what it queued for each side within
	// flushTimeout, then shuts down its write side and reads (and drops)
	// what the peer still sends for up to lingerTimeout, so that closing
	// never makes the kernel answer with a reset over unsent data.
	flushTimeout  = 10 * time.Second
	lingerTimeout = 2 * time.Second

	// DefaultShutdownTimeout is --shutdown-timeout's default.
	DefaultShutdownTimeout = 5 * time.Second

	tickPeriod = 100 * time.Millisecond // how often --timeout and --idle-timeout are checked
)

// Sizes. What a session holds in user space per direction is at most one
// read, and usually nothing: a side is read only when its peer can take a
// whole read at once (side.go).
const (
	// readChunk is the most one read takes from a socket (gnet's per-loop
	// read buffer). Large reads mean few system calls and wakeups per byte,
	// which on loopback is most of the cost of moving it (BENCHMARKS.md,
	// "What limits ours").
	readChunk = 512 << 10
	// When several sessions of a loop take whole reads, each that takes
	// one is not read again for yieldFor (session.readable); contendedFor
	// is how recently another must have taken one. A longer turn needs a
	// longer yield for the interactive sessions between the bulk ones.
	yieldFor     = 3 * time.Millisecond
	contendedFor = 2 * time.Millisecond
	// tlsSlack covers TLS records' own bytes in what one read becomes.
	tlsSlack = 1 << 10
	// holdLimit bounds the client bytes held while the session cannot use
	// them yet (before its target is up, while a web response is out):
	// past it, reading stops until they are used.
	holdLimit = 64 << 10
	// replyLimit bounds what waits to go back to a client that does not
	// read, such as pongs to its pings: past it, reading it stops.
	replyLimit = 64 << 10
)
