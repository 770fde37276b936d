package main

import (
	"net/http"
	"slices"
)

// withCORS lets a frontend served from one of origins (such as
// http://localhost:3000, a dev server) call the app with credentials, as Pi's
// reference frontend does: the app's answers carry
// Access-Control-Allow-Origin for a listed Origin, and the app answers the
// preflights (pi_guard passes OPTIONS requests on, also on the payment
// routes). The guard's own answers carry the same headers when its
// cors_origins lists the same origins.
func withCORS(origins []string, next http.Handler) http.Handler {
	if len(origins) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		if origin == "" || !slices.Contains(origins, origin) {
			next.ServeHTTP(w, r)
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, POST")
			// Whatever headers the frontend sends: Pi's reference frontend
			// even sends Access-Control-Allow-Origin as a request header.
			if hdrs := r.Header.Get("Access-Control-Request-Headers"); hdrs != "" {
				h.Set("Access-Control-Allow-Headers", hdrs)
			}
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}
