package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCORS(t *testing.T) {
	app := withCORS([]string{"http://localhost:3000"}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	}))
	serve := func(method, origin string, preflight bool) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "/payments/approve", nil)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		if preflight {
			r.Header.Set("Access-Control-Request-Method", http.MethodPost)
			r.Header.Set("Access-Control-Request-Headers", "content-type,access-control-allow-origin")
		}
		w := httptest.NewRecorder()
		app.ServeHTTP(w, r)
		return w
	}

	w := serve(http.MethodOptions, "http://localhost:3000", true)
	assert.Equal(t, http.StatusNoContent, w.Code, "the app answers the preflight")
	assert.Equal(t, "http://localhost:3000", w.Header().Get("Access-Control-Allow-Origin"))
	assert.Equal(t, "true", w.Header().Get("Access-Control-Allow-Credentials"))
	assert.Equal(t, "content-type,access-control-allow-origin", w.Header().Get("Access-Control-Allow-Headers"))

	w = serve(http.MethodPost, "http://localhost:3000", false)
	assert.Equal(t, http.StatusTeapot, w.Code)
	assert.Equal(t, "http://localhost:3000", w.Header().Get("Access-Control-Allow-Origin"))
	assert.Equal(t, "Origin", w.Header().Get("Vary"))

	for _, origin := range []string{"https://evil.example.com", ""} {
		w = serve(http.MethodOptions, origin, true)
		assert.Equal(t, http.StatusTeapot, w.Code, "%q: not answered as a preflight", origin)
		assert.Empty(t, w.Header().Get("Access-Control-Allow-Origin"), origin)
	}
}
