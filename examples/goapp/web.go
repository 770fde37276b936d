package main

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
)

// webFiles is the demo page: a shop with a "Pay with Pi" button, written like
// a real Pi app's frontend. Its Pi SDK is the fake Pi platform's
// (/fakepi/pi-sdk.js: fakepi proxied by Caddy under /fakepi/, see
// examples/run.Caddyfile), which also brings the wallet's style sheet.
//
//go:embed web
var webFiles embed.FS

// web is webFiles without the "web/" prefix.
var web, _ = fs.Sub(webFiles, "web")

// contentTypes are the types of the files in web/, set explicitly: the
// system's MIME tables vary (application/javascript, or nothing at all).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// pageCSP keeps the page to its own origin: scripts, styles and fetches
// (the app's routes, and the fake platform's SDK and control API under
// /fakepi/) all come from it.
const pageCSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; " +
	"form-action 'self'; frame-ancestors 'none'"

// home serves the demo page.
func home(w http.ResponseWriter, r *http.Request) {
	ensureSession(w, r)
	serveWeb(w, r, "index.html")
}

// static serves the page's scripts and style sheet under /static/.
func static(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if name == "index.html" { // the page lives at /
		http.NotFound(w, r)
		return
	}
	serveWeb(w, r, name)
}

func serveWeb(w http.ResponseWriter, r *http.Request, name string) {
	ct, ok := contentTypes[path.Ext(name)]
	if !ok || !fs.ValidPath(name) {
		http.NotFound(w, r)
		return
	}
	if st, err := fs.Stat(web, name); err != nil || st.IsDir() {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", ct)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if name == "index.html" {
		h.Set("Content-Security-Policy", pageCSP)
	}
	http.ServeFileFS(w, r, web, name)
}
