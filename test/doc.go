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
// about two minutes of wall time and runs by default; everything else runs
// alongside it.
package test
