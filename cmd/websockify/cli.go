package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gowebsockify/websockify/auth"
	"github.com/gowebsockify/websockify/codec"
	"github.com/gowebsockify/websockify/eventloop"
	"github.com/gowebsockify/websockify/token"
	"github.com/gowebsockify/websockify/wrap"
	"github.com/spf13/pflag"
)

const usageLines = `Usage:
    websockify [options] [source_addr:]source_port target_addr:target_port
    websockify [options] --token-plugin=CLASS [source_addr:]source_port
    websockify [options] --unix-target=FILE [source_addr:]source_port
    websockify [options] [source_addr:]source_port -- WRAP_COMMAND_LINE
`

var errHelpShown = errors.New("help shown")

// options is the parsed command line: the proxy's Config plus what only
// the command itself handles.
type options struct {
	eventloop.Config
	workers int // processes sharing the port (--workers); 1 = this one only

	metricsListen string // --metrics-listen: where Prometheus metrics are served (metrics.go)

	// The token plugin is built once the logger is, since it logs (main.go).
	tokenPlugin, tokenSource string

	listenPort int      // the listen positional's port (a wrapped program's bind is moved from it)
	wrapArgv   []string // the program after --
	wrapMode   string   // exit, ignore or respawn
	daemon     bool     // -D: detach
	pidFile    string   // --pid-file

	tls tlsOptions // what SIGHUP rebuilds the TLS config from (reload.go)
}

// parseArgs turns the command line into options. Errors are usage errors
// (exit 2); errHelpShown means -h or --version printed to out.
func parseArgs(args []string, out io.Writer) (options, error) {
	var opts options
	cfg := &opts.Config
	fs := pflag.NewFlagSet("websockify", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false

	verbose := fs.BoolP("verbose", "v", false, "verbose messages")
	traffic := fs.Bool("traffic", false, "per frame traffic")
	runOnce := fs.Bool("run-once", false, "handle a single WebSocket connection and exit")
	timeout := fs.Int("timeout", 0, "after TIMEOUT seconds stop accepting, exit when the last connection ends")
	idle := fs.Int("idle-timeout", 0, "server exits after TIMEOUT seconds if there are no active connections")
	heartbeat := fs.Int("heartbeat", 0, "send a ping to the client every HEARTBEAT seconds")
	unixTarget := fs.String("unix-target", "", "connect to a unix socket target")
	unixListen := fs.String("unix-listen", "", "listen on a unix socket")
	unixMode := fs.String("unix-listen-mode", "0600", "file mode of the unix socket listened on")
	preferV6 := fs.BoolP("prefer-ipv6", "6", false, "prefer IPv6 when resolving source_addr")
	fs.Bool("auto-pong", false, "accepted for compatibility; pings are always answered")
	libserver := fs.Bool("libserver", false, "accepted for compatibility; no effect")
	cert := fs.String("cert", "self.pem", "SSL certificate file")
	key := fs.String("key", "", "SSL key file (if separate from cert)")
	keyPW := fs.String("key-password", "", "SSL key password (visible in ps: prefer --key-password-file or $"+keyPasswordEnv+")")
	keyPWFile := fs.String("key-password-file", "", "file whose first line is the SSL key password")
	sslOnly := fs.Bool("ssl-only", false, "disallow non-encrypted client connections")
	sslTarget := fs.Bool("ssl-target", false, "connect to SSL target as SSL client")
	verifyClient := fs.Bool("verify-client", false, "require encrypted client to present a valid certificate")
	cafile := fs.String("cafile", "", "CA certificates for verifying client certificates")
	sslVersion := fs.String("ssl-version", "default", "minimum TLS version: default, tlsv1_1, tlsv1_2 or tlsv1_3")
	sslCiphers := fs.String("ssl-ciphers", "", "colon-separated OpenSSL names of the TLS 1.2 ciphers allowed")
	web := fs.String("web", "", "run webserver on same port, serve files from DIR")
	fileOnly := fs.Bool("file-only", false, "use this to disable directory listings in the web server")
	workers := fs.Int("workers", 1, "processes sharing the port with SO_REUSEPORT, each with its own event loops and open-file limit (not in the original)")
	limitOpts := addLimitFlags(fs) // limits.go
	showVersion := fs.Bool("version", false, "print the version and exit")
	help := fs.BoolP("help", "h", false, "show this help message and exit")

	webAuth := fs.Bool("web-auth", false, "require authentication to access the web server")
	targetConfig := fs.String("target-config", "", "file or directory of 'token: host:port' lines (deprecated: use --token-plugin TokenFile --token-source PATH)")
	tokenPlugin := fs.String("token-plugin", "", "resolve each session's target from its token with this plugin: "+strings.Join(token.Names, ", "))
	tokenSource := fs.String("token-source", "", "argument of the token plugin (a file, directory, URL, key file or Redis address)")
	hostToken := fs.Bool("host-token", false, "use the Host header, without its port, as the token instead of the token query parameter")
	authPlugin := fs.String("auth-plugin", "", "check each request with this plugin: "+strings.Join(auth.Names, ", "))
	authSource := fs.String("auth-source", "", "argument of the auth plugin")
	proxyProtocol := fs.Bool("proxy-protocol", false, "expect a PROXY protocol header (v1 or v2) from the trusted proxies, refuse one from anyone else (not in the original)")
	trustedList := fs.StringSlice("trusted-proxies", nil, "`LIST` of addresses and CIDR prefixes, comma-separated, of the load balancers whose PROXY headers, X-Forwarded-For and Forwarded name the real client (not in the original)")

	recordFile := fs.String("record", "", "record sessions to FILE.[session_number]")
	logFile := fs.String("log-file", "", "file where logs will be saved (appended to; reopened on SIGHUP)")
	syslogDest := fs.String("syslog", "", "log to syslog server: a local socket such as /dev/log, or a UDP host:port pair")
	legacySyslog := fs.Bool("legacy-syslog", false, "use the old syslog protocol instead of RFC 5424 (RFC 3164)")
	logFormat := fs.String("log-format", "text", "log lines as text (the original's) or json (one object per line; not in the original)")
	shutdownTimeout := fs.Float64("shutdown-timeout", eventloop.DefaultShutdownTimeout.Seconds(), "seconds SIGTERM or SIGINT waits for sessions to close after telling them 1001; 0 stops at once (not in the original)")

	daemon := fs.BoolP("daemon", "D", false, "become a daemon (background process)")
	pidFile := fs.String("pid-file", "", "write the process id to FILE once listening; removed on exit (not in the original)")
	inetd := fs.Bool("inetd", false, "inetd mode: the listening socket is inherited on fd 0 (no listen address)")
	wrapMode := fs.String("wrap-mode", "exit", "action when the wrapped program exits: exit, ignore, respawn")
	healthPath := fs.String("health-path", "", "answer GET and HEAD of this path with 200 OK, for a load balancer's health checks (not in the original)")
	metricsListen := fs.String("metrics-listen", "", "serve Prometheus metrics at /metrics on [HOST:]PORT (HOST defaults to 127.0.0.1) or a unix socket PATH; never the listen address (not in the original)")

	docs := addDocFlags(fs) // hidden: the build's man page and completions (docflags.go)
	if err := fs.Parse(args); err != nil {
		return opts, err
	}
	if docs.requested() {
		return opts, docs.write(fs, out)
	}
	if *help {
		fmt.Fprintf(out, "%s\nOptions:\n%s", usageLines, fs.FlagUsages())
		return opts, errHelpShown
	}
	if *showVersion {
		fmt.Fprintf(out, "websockify %s\n", version)
		return opts, errHelpShown
	}

	// Options that need another, as the original checks them.
	for _, need := range []struct {
		given bool
		name  string
		needs string
		set   bool
	}{
		{*tokenSource != "", "token-source", "token-plugin", *tokenPlugin != ""},
		{*hostToken, "host-token", "token-plugin", *tokenPlugin != "" || *targetConfig != ""},
		{*authSource != "", "auth-source", "auth-plugin", *authPlugin != ""},
		{*webAuth, "web-auth", "auth-plugin", *authPlugin != ""},
		{*webAuth, "web-auth", "web", *web != ""},
		{*legacySyslog, "legacy-syslog", "syslog", *syslogDest != ""},
	} {
		if need.given && !need.set {
			return opts, fmt.Errorf("you must use --%s to use --%s", need.needs, need.name)
		}
	}
	if *targetConfig != "" {
		if *tokenPlugin != "" {
			return opts, errors.New("--target-config cannot be combined with --token-plugin")
		}
		*tokenPlugin, *tokenSource = "TokenFile", *targetConfig
	}

	pos := fs.Args()
	if dash := fs.ArgsLenAtDash(); dash >= 0 {
		opts.wrapArgv, pos = pos[dash:], pos[:dash]
		if len(opts.wrapArgv) == 0 {
			return opts, errors.New("no program to wrap after --")
		}
	}
	var listenArg string
	if !*inetd { // with --inetd the listening socket is fd 0: no listen positional
		if len(pos) == 0 {
			return opts, errors.New("too few arguments")
		}
		listenArg, pos = pos[0], pos[1:]
	}
	// At most one of the ways to name targets; only the fixed one takes
	// a positional.
	var targetBy []string
	for _, o := range []struct {
		set  bool
		name string
	}{{*unixTarget != "", "--unix-target"}, {*tokenPlugin != "", "--token-plugin"}, {opts.wrapArgv != nil, "a wrapped program (--)"}} {
		if o.set {
			targetBy = append(targetBy, o.name)
		}
	}
	switch {
	case len(targetBy) > 1:
		return opts, fmt.Errorf("%s cannot be combined with %s", targetBy[0], targetBy[1])
	case len(targetBy) == 1 && len(pos) > 0:
		return opts, fmt.Errorf("a target address cannot be given with %s", targetBy[0])
	case len(targetBy) == 0 && len(pos) == 0:
		return opts, errors.New("too few arguments")
	case len(pos) > 1:
		return opts, errors.New("too many arguments")
	}

	if *inetd {
		cfg.Listeners = []*os.File{os.Stdin}
		cfg.ListenAddr = "inetd"
		if *unixListen != "" {
			return opts, errors.New("--inetd cannot be combined with --unix-listen")
		}
	} else {
		host, port, err := splitHostPort(listenArg)
		if err != nil {
			return opts, fmt.Errorf("error parsing listen port: %v", err)
		}
		if host != "" && *preferV6 {
			if ip := resolvePreferV6(host); ip != "" {
				host = ip
			}
		}
		cfg.ListenAddr = net.JoinHostPort(host, strconv.Itoa(port))
		opts.listenPort = port
	}
	if *unixListen != "" {
		mode, err := strconv.ParseUint(*unixMode, 8, 32)
		if err != nil || mode > 0o777 {
			return opts, fmt.Errorf("invalid --unix-listen-mode %q: want an octal mode such as 0600", *unixMode)
		}
		cfg.ListenUnix = absPath(*unixListen)
		cfg.ListenUnixMode = os.FileMode(mode)
	}

	switch {
	case *tokenPlugin != "":
		opts.tokenPlugin, opts.tokenSource = *tokenPlugin, tokenSourcePath(*tokenPlugin, *tokenSource)
		cfg.TokenFrom = codec.TokenFromQuery
		if *hostToken {
			cfg.TokenFrom = codec.TokenFromHost
		}
	case *unixTarget != "":
		cfg.TargetNetwork, cfg.TargetAddr = "unix", absPath(*unixTarget)
	case opts.wrapArgv != nil:
		// The wrapped program's loopback port is known once it starts (main.go).
	default:
		th, tp, err := splitHostPort(pos[0])
		if err != nil {
			return opts, fmt.Errorf("error parsing target: %v", err)
		}
		if th == "" {
			return opts, errors.New("error parsing target: no host")
		}
		cfg.TargetNetwork, cfg.TargetAddr = "tcp", net.JoinHostPort(th, strconv.Itoa(tp))
	}

	for name, v := range map[string]int{"timeout": *timeout, "idle-timeout": *idle, "heartbeat": *heartbeat} {
		if v < 0 {
			return opts, fmt.Errorf("--%s must not be negative", name)
		}
	}
	password, err := keyPassword(*keyPW, *keyPWFile)
	if err != nil {
		return opts, err
	}
	if cfg.Limits, err = limitOpts.config(); err != nil {
		return opts, err
	}
	cfg.CertFile = absPath(*cert)
	opts.tls = tlsOptions{
		cert: cfg.CertFile, key: absPath(*key), certGiven: fs.Changed("cert"), password: password,
		passwordFlag: *keyPW, passwordFile: absPath(*keyPWFile),
		sslOnly: *sslOnly, verifyClient: *verifyClient, cafile: absPath(*cafile),
		version: *sslVersion, ciphers: *sslCiphers,
	}
	cfg.TLS, err = buildServerTLS(opts.tls)
	if err != nil {
		return opts, err
	}
	cfg.SSLOnly = *sslOnly
	if *sslTarget {
		cfg.TargetTLS = &tls.Config{} // system roots; the server name is the target's host
	}

	cfg.Timeout = time.Duration(*timeout) * time.Second
	cfg.IdleTimeout = time.Duration(*idle) * time.Second
	cfg.Heartbeat = time.Duration(*heartbeat) * time.Second
	cfg.RunOnce = *runOnce
	if *web != "" {
		cfg.WebRoot = absPath(*web)
		if fi, err := os.Stat(cfg.WebRoot); err != nil || !fi.IsDir() {
			return opts, fmt.Errorf("--web %s: not a directory", *web)
		}
	}
	cfg.FileOnly = *fileOnly
	if *healthPath != "" && !strings.HasPrefix(*healthPath, "/") {
		return opts, fmt.Errorf("--health-path %q: must start with /", *healthPath)
	}
	cfg.HealthPath = *healthPath
	if *authPlugin != "" {
		if cfg.Auth, err = auth.New(*authPlugin, *authSource); err != nil {
			return opts, err
		}
	}
	cfg.WebAuth = *webAuth
	if cfg.TrustedProxies, err = realAddrOptions(*proxyProtocol, *trustedList, *unixListen != ""); err != nil {
		return opts, err
	}
	cfg.ProxyProtocol = *proxyProtocol
	cfg.Record = absPath(*recordFile)
	cfg.PreferIPv6 = *preferV6
	cfg.Verbose = *verbose
	opts.workers = *workers
	opts.daemon = *daemon
	opts.wrapMode = *wrapMode
	opts.pidFile = absPath(*pidFile)
	if _, err := wrap.ParseMode(*wrapMode); err != nil {
		return opts, err
	}
	if *daemon && *inetd {
		return opts, errors.New("--daemon cannot be combined with --inetd (inetd runs the process)")
	}
	if *workers < 1 {
		return opts, errors.New("--workers must be at least 1")
	}
	if *workers > 1 {
		// Each of these is a whole-process decision that workers, each
		// seeing only its own clients, cannot make alone.
		for _, name := range []string{"unix-listen", "run-once", "timeout", "idle-timeout", "inetd"} {
			if fs.Changed(name) {
				return opts, fmt.Errorf("--workers cannot be combined with --%s", name)
			}
		}
	}
	if *traffic {
		cfg.Traffic = os.Stdout
	}
	format, ok := eventloop.ParseLogFormat(*logFormat)
	if !ok {
		return opts, fmt.Errorf("invalid --log-format %q: want text or json", *logFormat)
	}
	if cfg.ShutdownTimeout, err = parseShutdownTimeout(*shutdownTimeout); err != nil {
		return opts, err
	}
	if *metricsListen != "" {
		if opts.metricsListen, err = checkMetricsListen(*metricsListen, cfg); err != nil {
			return opts, err
		}
	}

	// Last, once every option is known good: the log opens its file and
	// syslog socket, and carries the warnings.
	syslogTo := *syslogDest
	if syslogTo != "" && !strings.Contains(syslogTo, ":") {
		syslogTo = absPath(syslogTo) // a local socket
	}
	cfg.Log, err = eventloop.OpenLogger(eventloop.LogConfig{
		Verbose: *verbose, Stderr: os.Stderr, Daemon: *daemon,
		File: absPath(*logFile), Syslog: syslogTo, LegacySyslog: *legacySyslog, Format: format,
	})
	if err != nil {
		return opts, err
	}
	if *libserver {
		cfg.Log.Warnf("warning: --libserver has no effect in this implementation")
	}
	if cfg.Auth != nil && strings.HasSuffix(*authPlugin, "ClientCertCNAuth") && !*verifyClient {
		cfg.Log.Warnf("warning: ClientCertCNAuth without --verify-client refuses every client (no certificate is asked for)")
	}
	return opts, nil
}

// splitHostPort splits at the last colon and strips IPv6 brackets, as the
// original does: "6080", ":6080", "[::1]:6080", "::1:6080", "host:6080".
func splitHostPort(s string) (host string, port int, err error) {
	p := s
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, p = strings.Trim(s[:i], "[]"), s[i+1:]
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, port, nil
}

// resolvePreferV6 returns host's first IPv6 address, if it has one.
func resolvePreferV6(host string) string {
	ips, err := net.LookupIP(host)
	if err != nil {
		return ""
	}
	for _, ip := range ips {
		if ip.To4() == nil {
			return ip.String()
		}
	}
	return ""
}

// tokenSourcePath resolves a token source that names a file or directory
// against the starting directory (absPath); URLs and Redis addresses are
// left as they are.
func tokenSourcePath(plugin, source string) string {
	if token.SourceIsPath(plugin) {
		return absPath(source)
	}
	return source
}

// absPath resolves p against the directory websockify was started in, so a
// later chdir (daemon mode, --web) cannot change what it names.
func absPath(p string) string {
	if p == "" || strings.HasPrefix(p, "/") {
		return p
	}
	wd, err := os.Getwd()
	if err != nil {
		return p
	}
	return wd + "/" + p
}

// printBanner logs the settings summary the original logs at start (so it
// reaches --log-file and --syslog too).
// wrapped, when set, names the wrapped program as the target.
func printBanner(log *eventloop.Logger, cfg eventloop.Config, workers int, daemon bool, wrapped string) {
	listen := cfg.ListenAddr
	if cfg.ListenUnix != "" {
		listen = cfg.ListenUnix
	}
	log.Infof("WebSocket server settings:")
	log.Infof("  - Listen on %s", listen)
	switch {
	case cfg.WebRoot != "" && cfg.FileOnly:
		log.Infof("  - Web server (no directory listings). Web root: %s", cfg.WebRoot)
	case cfg.WebRoot != "":
		log.Infof("  - Web server. Web root: %s", cfg.WebRoot)
	}
	switch {
	case cfg.TLS == nil:
		log.Infof("  - No SSL/TLS support (no cert file)")
	case cfg.SSLOnly:
		log.Infof("  - SSL/TLS support")
		log.Infof("  - Deny non-SSL/TLS connections")
	default:
		log.Infof("  - SSL/TLS support")
	}
	target := cfg.TargetAddr
	switch {
	case wrapped != "":
		target = wrapped
	case cfg.Tokens != nil:
		target = "targets generated by " + cfg.Tokens.Name()
	case cfg.TargetNetwork == "unix":
		target = "unix socket " + target
	}
	if cfg.TargetTLS != nil {
		target += " (using SSL)"
	}
	if cfg.ProxyProtocol {
		log.Infof("  - PROXY protocol expected from %s", trustedLabel(cfg.TrustedProxies))
	} else if len(cfg.TrustedProxies) > 0 {
		log.Infof("  - X-Forwarded-For and Forwarded believed from %s", trustedLabel(cfg.TrustedProxies))
	}
	if cfg.Record != "" {
		log.Infof("  - Recording to '%s.*'", cfg.Record)
	}
	if daemon {
		log.Infof("  - Backgrounding (daemon)")
	}
	log.Infof("  - proxying from %s to %s", listen, target)
	if workers > 1 {
		log.Infof("  - %d worker processes sharing the port", workers)
	}
	if line := limitsBanner(cfg.Limits, workers); line != "" {
		log.Infof("  - %s", line)
	}
	log.Flush() // the settings show at once, not with the first session's lines
}
