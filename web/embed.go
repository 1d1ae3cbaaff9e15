// Package web holds the browser side of websockify: websock.js, the
// WebSocket wrapper with a byte receive queue, and its test page under
// tests/; wstelnet.html, a telnet client built from telnet.js and vt100.js.
// The files are served as they are (no build step); this package only
// embeds them so that websockify-demo can serve them without a checkout.
package web

import "embed"

// Files is the files above, with their paths relative to this folder.
//
//go:embed websock.js tests telnet.js vt100.js wstelnet.html
var Files embed.FS
