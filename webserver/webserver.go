// Package webserver answers the plain HTTP requests that arrive on the proxy's
// port when --web DIR is given: GET and HEAD of the files under DIR.
//
// It does the filesystem work (stat, open, read a directory) and so must run
// off the event loop; it never touches a socket. Given a parsed request it
// returns a Response: the head, and a body either as bytes or as an open file
// for the caller to stream.
//
// How a request path maps to a file, and why nothing outside DIR is served:
//
//  1. The query and fragment are cut off; the path must start with "/".
//  2. The path is percent-decoded exactly once ("%252e" stays "%2e", a name).
//  3. A decoded path holding a NUL byte or a backslash is refused (404):
//     neither has a place in a URL path, and a backslash is a separator on
//     other systems.
//  4. A decoded path with a ".." segment is refused (404), rather than
//     cleaned into something the client did not ask for. A "%2f" decodes to
//     "/" before this check, so "..%2f" is caught too. Repeated slashes and
//     "." segments are cleaned away.
//  5. The result is joined to DIR and every symlink in it is resolved
//     (filepath.EvalSymlinks); the resolved path must be DIR itself or lie
//     under it, where DIR too was resolved at start. A symlink that leaves
//     DIR is answered 404, exactly as if the file did not exist; symlinks
//     inside DIR are followed.
//  6. The resolved file is opened with O_NOFOLLOW, so a final component
//     swapped for a symlink after the check is not followed.
//
// A directory asked for without its trailing slash is redirected (301) to
// the slash form, query kept; leading slashes of the Location are collapsed
// to one so that "//host" cannot become a redirect to another site.
package webserver

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gowebsockify/websockify/codec"
)

// InlineMax is the largest file read whole into Response.Body; larger ones
// are handed back open for the caller to stream in chunks.
const InlineMax = 256 << 10

// Server serves the files under one directory.
type Server struct {
	root     string // absolute, symlinks resolved
	fileOnly bool   // no directory listings
}

// New checks that dir is a directory and resolves it (absolute, symlinks
// resolved) for the containment check of every request.
func New(dir string, fileOnly bool) (*Server, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	root, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s: %w", dir, ErrNotDir)
	}
	return &Server{root: root, fileOnly: fileOnly}, nil
}

// Root is the served directory, absolute with symlinks resolved.
func (s *Server) Root() string { return s.root }

// Response is the answer to one request.
type Response struct {
	Status    int
	Head      []byte   // status line and headers, ending with the empty line
	Body      []byte   // the body when it is in memory
	File      *os.File // or the file to stream (the caller closes it)
	FileSize  int64    // bytes of File to send
	KeepAlive bool     // the connection may carry another request after this one
}

// Serve answers req. It never fails: problems become 4xx or 500 responses.
func (s *Server) Serve(req *codec.Request, now time.Time) *Response {
	keep := keepAlive(req)
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		// The body of such a request is not read, so the connection
		// cannot carry another request.
		return errorResponse(req, http.StatusMethodNotAllowed, "Allow: GET, HEAD\r\n", false, now)
	}
	if cl := req.Header.Get("Content-Length"); (cl != "" && cl != "0") || req.Header.Get("Transfer-Encoding") != "" {
		keep = false // a body we do not read
	}

	rawPath, query := splitTarget(req.Target)
	if !strings.HasPrefix(rawPath, "/") {
		return errorResponse(req, http.StatusBadRequest, "", false, now)
	}
	name, err := url.PathUnescape(rawPath)
	if err != nil {
		return errorResponse(req, http.StatusBadRequest, "", keep, now)
	}
	if strings.ContainsAny(name, "\x00\\") || hasDotDot(name) {
		return errorResponse(req, http.StatusNotFound, "", keep, now)
	}
	full, ok := s.resolve(name)
	if !ok {
		return errorResponse(req, http.StatusNotFound, "", keep, now)
	}
	fi, err := os.Stat(full)
	if err != nil {
		return errorResponse(req, http.StatusNotFound, "", keep, now)
	}
	if fi.IsDir() {
		if !strings.HasSuffix(name, "/") {
			loc := "/" + strings.TrimLeft(rawPath, "/") + "/"
			if query != "" {
				loc += "?" + query
			}
			return redirect(req, loc, keep, now)
		}
		for _, index := range []string{"index.html", "index.htm"} {
			if f, ok := s.resolve(path.Join(name, index)); ok {
				if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() {
					return s.file(req, f, index, keep, now)
				}
			}
		}
		if s.fileOnly {
			return errorResponse(req, http.StatusNotFound, "", keep, now)
		}
		return listing(req, full, name, keep, now)
	}
	if !fi.Mode().IsRegular() {
		return errorResponse(req, http.StatusNotFound, "", keep, now)
	}
	return s.file(req, full, name, keep, now)
}

// splitTarget cuts the request-target into its path and query.
func splitTarget(target string) (rawPath, query string) {
	if i := strings.IndexByte(target, '#'); i >= 0 {
		target = target[:i]
	}
	rawPath, query, _ = strings.Cut(target, "?")
	return rawPath, query
}

func hasDotDot(name string) bool {
	for _, seg := range strings.Split(name, "/") {
		if seg == ".." {
			return true
		}
	}
	return false
}

// resolve maps a decoded URL path to the file it names, with every symlink
// resolved, and reports whether that file exists and lies inside the root.
func (s *Server) resolve(name string) (string, bool) {
	joined := filepath.Join(s.root, filepath.FromSlash(path.Clean("/"+name)))
	real, err := filepath.EvalSymlinks(joined)
	if err != nil {
		return "", false
	}
	if real != s.root && !strings.HasPrefix(real, s.root+string(filepath.Separator)) {
		return "", false
	}
	return real, true
}

// file answers with the file at full (already resolved and checked); its
// type comes from the name asked for, not from where a symlink leads.
func (s *Server) file(req *codec.Request, full, name string, keep bool, now time.Time) *Response {
	f, err := os.OpenFile(full, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return errorResponse(req, http.StatusNotFound, "", keep, now)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		_ = f.Close()
		return errorResponse(req, http.StatusNotFound, "", keep, now)
	}
	mod := fi.ModTime().UTC().Truncate(time.Second)
	if ims := req.Header.Get("If-Modified-Since"); ims != "" {
		if t, err := http.ParseTime(ims); err == nil && !mod.After(t) {
			_ = f.Close()
			var h headBuilder
			h.status(http.StatusNotModified, now)
			h.field("Last-Modified", mod.Format(http.TimeFormat))
			return h.finish(http.StatusNotModified, keep, nil, nil, 0)
		}
	}
	var h headBuilder
	h.status(http.StatusOK, now)
	h.field("Content-Type", ContentType(name))
	h.field("Content-Length", strconv.FormatInt(fi.Size(), 10))
	h.field("Last-Modified", mod.Format(http.TimeFormat))
	if req.Method == http.MethodHead {
		_ = f.Close()
		return h.finish(http.StatusOK, keep, nil, nil, 0)
	}
	if fi.Size() > InlineMax {
		return h.finish(http.StatusOK, keep, nil, f, fi.Size())
	}
	body := make([]byte, fi.Size())
	_, err = io.ReadFull(f, body)
	_ = f.Close()
	if err != nil {
		return errorResponse(req, http.StatusInternalServerError, "", false, now)
	}
	return h.finish(http.StatusOK, keep, body, nil, 0)
}

// listing answers with an HTML index of the directory at full.
func listing(req *codec.Request, full, name string, keep bool, now time.Time) *Response {
	entries, err := os.ReadDir(full)
	if err != nil {
		return errorResponse(req, http.StatusNotFound, "", keep, now)
	}
	sort.Slice(entries, func(i, j int) bool {
		return strings.ToLower(entries[i].Name()) < strings.ToLower(entries[j].Name())
	})
	title := html.EscapeString("Directory listing for " + name)
	var b bytes.Buffer
	b.WriteString("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>")
	b.WriteString(title)
	b.WriteString("</title>\n</head>\n<body>\n<h1>")
	b.WriteString(title)
	b.WriteString("</h1>\n<hr>\n<ul>\n")
	for _, e := range entries {
		shown, link := e.Name(), url.PathEscape(e.Name())
		switch {
		case e.IsDir():
			shown, link = shown+"/", link+"/"
		case e.Type()&os.ModeSymlink != 0:
			shown += "@"
		}
		fmt.Fprintf(&b, "<li><a href=\"%s\">%s</a></li>\n", html.EscapeString(link), html.EscapeString(shown))
	}
	b.WriteString("</ul>\n<hr>\n</body>\n</html>\n")

	var h headBuilder
	h.status(http.StatusOK, now)
	h.field("Content-Type", "text/html; charset=utf-8")
	h.field("Content-Length", strconv.Itoa(b.Len()))
	if req.Method == http.MethodHead {
		return h.finish(http.StatusOK, keep, nil, nil, 0)
	}
	return h.finish(http.StatusOK, keep, b.Bytes(), nil, 0)
}

func redirect(req *codec.Request, loc string, keep bool, now time.Time) *Response {
	body := "Moved Permanently\n"
	var h headBuilder
	h.status(http.StatusMovedPermanently, now)
	h.field("Location", loc)
	h.field("Content-Type", "text/plain; charset=utf-8")
	h.field("Content-Length", strconv.Itoa(len(body)))
	if req.Method == http.MethodHead {
		return h.finish(http.StatusMovedPermanently, keep, nil, nil, 0)
	}
	return h.finish(http.StatusMovedPermanently, keep, []byte(body), nil, 0)
}

// errorResponse is a short plain-text error; extra holds header lines, each
// ending in CRLF.
func errorResponse(req *codec.Request, status int, extra string, keep bool, now time.Time) *Response {
	body := codec.StatusText(status) + "\n"
	var h headBuilder
	h.status(status, now)
	h.buf.WriteString(extra)
	h.field("Content-Type", "text/plain; charset=utf-8")
	h.field("Content-Length", strconv.Itoa(len(body)))
	if req.Method == http.MethodHead {
		return h.finish(status, keep, nil, nil, 0)
	}
	return h.finish(status, keep, []byte(body), nil, 0)
}

// keepAlive reports whether the client lets the connection stay open:
// HTTP/1.1 unless it says "close", HTTP/1.0 only if it says "keep-alive".
func keepAlive(req *codec.Request) bool {
	var close, keep bool
	for _, v := range req.Header["Connection"] {
		for _, tok := range strings.Split(v, ",") {
			switch strings.ToLower(strings.TrimSpace(tok)) {
			case "close":
				close = true
			case "keep-alive":
				keep = true
			}
		}
	}
	if close {
		return false
	}
	return req.Proto != "HTTP/1.0" || keep
}

// headBuilder writes a response head.
type headBuilder struct{ buf bytes.Buffer }

func (h *headBuilder) status(code int, now time.Time) {
	h.buf.WriteString("HTTP/1.1 " + strconv.Itoa(code) + " " + codec.StatusText(code) + "\r\n")
	h.field("Server", codec.ServerName)
	h.field("Date", now.UTC().Format(http.TimeFormat))
}

func (h *headBuilder) field(k, v string) { h.buf.WriteString(k + ": " + v + "\r\n") }

func (h *headBuilder) finish(status int, keep bool, body []byte, f *os.File, size int64) *Response {
	if keep {
		h.field("Connection", "keep-alive")
	} else {
		h.field("Connection", "close")
	}
	h.buf.WriteString("\r\n")
	return &Response{Status: status, Head: h.buf.Bytes(), Body: body, File: f, FileSize: size, KeepAlive: keep}
}

// contentTypes fixes the types that matter to noVNC and browsers, so they do
// not depend on the machine's /etc/mime.types.
var contentTypes = map[string]string{
	".html":  "text/html",
	".htm":   "text/html",
	".js":    "text/javascript",
	".mjs":   "text/javascript",
	".css":   "text/css",
	".svg":   "image/svg+xml",
	".wasm":  "application/wasm",
	".json":  "application/json",
	".map":   "application/json",
	".png":   "image/png",
	".jpg":   "image/jpeg",
	".jpeg":  "image/jpeg",
	".gif":   "image/gif",
	".ico":   "image/x-icon",
	".webp":  "image/webp",
	".txt":   "text/plain",
	".xml":   "application/xml",
	".woff":  "font/woff",
	".woff2": "font/woff2",
	".ttf":   "font/ttf",
	".oga":   "audio/ogg",
	".ogg":   "audio/ogg",
	".mp3":   "audio/mpeg",
}

// ContentType is the type of a file by its extension (any case);
// application/octet-stream when unknown.
func ContentType(name string) string {
	ext := strings.ToLower(filepath.Ext(name))
	if t, ok := contentTypes[ext]; ok {
		return t
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	return "application/octet-stream"
}

// ErrNotDir is returned by New when DIR is not a directory.
var ErrNotDir = errors.New("not a directory")
