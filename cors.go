package piguard

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// allowOrigin adds CORS headers to an answer the guard writes itself (an
// error, a replayed completion, a respond_approve answer), so that a frontend
// on another origin that sends credentials can read it. It only ever allows
// an Origin listed in CORSOrigins, by name, never "*". The app's own answers
// are not touched: the app sets its own CORS headers, and answers preflights.
func (h *Handler) allowOrigin(w http.ResponseWriter, r *http.Request) {
	if len(h.CORSOrigins) == 0 {
		return
	}
	hdr := w.Header()
	// The answer depends on the Origin even when it is not allowed, so that
	// no cache serves one origin's answer to another.
	if !slices.ContainsFunc(hdr.Values("Vary"), func(v string) bool { return strings.EqualFold(strings.TrimSpace(v), "Origin") }) {
		hdr.Add("Vary", "Origin")
	}
	origin := r.Header.Get("Origin")
	if origin == "" || !slices.Contains(h.CORSOrigins, origin) {
		return
	}
	hdr.Set("Access-Control-Allow-Origin", origin)
	hdr.Set("Access-Control-Allow-Credentials", "true")
	hdr.Set("Access-Control-Expose-Headers", "Retry-After")
}

// servePreflight answers a CORS preflight of a payment route from an origin
// listed in CORSOrigins, and reports whether it did. The guard answers it
// itself, so that a frontend on another origin reaches the guard even while
// the app is down: a preflight the dead app cannot answer would keep the
// browser from ever sending the completion. Preflights from other origins,
// and of other routes, are the app's to answer.
func (h *Handler) servePreflight(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if len(h.CORSOrigins) == 0 || origin == "" || r.Header.Get("Access-Control-Request-Method") == "" || !slices.Contains(h.CORSOrigins, origin) {
		return false
	}
	h.allowOrigin(w, r)
	hdr := w.Header()
	hdr.Add("Vary", "Access-Control-Request-Method")
	hdr.Add("Vary", "Access-Control-Request-Headers")
	hdr.Set("Access-Control-Allow-Methods", "POST")
	if req := r.Header.Values("Access-Control-Request-Headers"); len(req) > 0 {
		hdr.Set("Access-Control-Allow-Headers", strings.Join(req, ", "))
	}
	hdr.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
	return true
}

// checkOrigin returns an error unless o is an origin as a browser sends it in
// the Origin header: scheme "http" or "https", lower-case host, a port only
// when it is not the scheme's default, and nothing else.
func checkOrigin(o string) error {
	fix := "write it as scheme://host[:port] with no path, such as https://app.example.com or http://localhost:3000"
	if o == "*" || o == "null" {
		return fmt.Errorf("pi_guard: cors_origins %q is not allowed: the guard's answers are read with credentials, so list each origin by name (%s)", o, fix)
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" {
		return fmt.Errorf("pi_guard: cors_origins %q is not an origin: %s", o, fix)
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // IPv6 literal
	}
	canon := u.Scheme + "://" + host
	if p := u.Port(); p != "" && !(u.Scheme == "http" && p == "80") && !(u.Scheme == "https" && p == "443") {
		canon += ":" + p
	}
	if canon != o {
		return fmt.Errorf("pi_guard: cors_origins %q is not written as browsers send it in the Origin header: use %q", o, canon)
	}
	return nil
}
