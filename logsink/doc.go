// Package logsink owns the destinations a log line goes to besides the
// primary writer (stderr): a log file that can be reopened after rotation,
// and a syslog socket speaking the framing of the original websockify's
// WebsockifySysLogHandler. Each sink takes whole lines; buffering, levels
// and formatting belong to the caller.
package logsink
