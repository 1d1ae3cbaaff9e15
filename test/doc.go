// Package test is the integration test suite of websockify: every test runs
// the real binary (built once in TestMain) over real sockets on the loopback
// interface, against in-process target servers, with a raw WebSocket client
// that can also send malformed frames.
//
// Run it from the module root with
//
//	go test ./test/ -count=1
//
// Some tests drive real programs the machine must have, which `make test`
// installs (scripts/install-test-deps.sh); a missing one fails the test, it
// is never skipped:
//
//   - browser_test.go: web/websock.js in headless Chromium (chromedp);
//   - novnc_test.go, vnc_test.go: noVNC (Debian's package and npm's latest)
//     through websockify to TigerVNC's Xvnc, one tab and twenty at once;
//   - telnet_test.go: web/wstelnet.html logging in to inetutils-telnetd;
//   - workers_test.go: --workers, several processes sharing the port.
//
// Screenshots of the browser tests are written to test/out/.
//
// The backpressure test (1 GiB each way against a 10 MB/s reader) takes
// about two minutes of wall time and the asymmetric session
// (asymmetric_test.go: a fast writer that reads slowly against a client that
// uploads and reads at 20 MB/s, every byte checked both ways) one minute;
// both run by default, and everything else runs alongside them. How
// sessions end is checked in lossless_close_test.go (every byte and the
// close frame arrive before the connection ends, never a reset) and
// shutdown_test.go (SIGTERM and SIGINT: every ws and wss session gets 1001,
// and the process exits 0, also when the signal comes during start-up).
package test
