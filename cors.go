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
