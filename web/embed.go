// Package web holds the browser side of websockify: websock.js, the
// WebSocket wrapper with a byte receive queue, and its test page under
// tests/. The files are served as they are (no build step); this package only
// embeds them so that websockify-demo can serve them without a checkout.
package web

import "embed"

// Files is websock.js and tests/, with their paths relative to this folder.
//
//go:embed websock.js tests
var Files embed.FS
