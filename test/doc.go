// Package test is the integration test suite of websockify: every test runs
// the real binary (built once in TestMain) over real sockets on the loopback
// interface, against in-process target servers, with a raw WebSocket client
// that can also send malformed frames.
//
// Run it from the module root with
//
//	go test ./test/ -count=1
//
// The backpressure test (1 GiB each way against a 10 MB/s reader) takes
// about two minutes of wall time and runs by default; everything else runs
// alongside it.
package test
