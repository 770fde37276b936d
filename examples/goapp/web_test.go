package main

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

func TestDemoPage(t *testing.T) {
	h := newHarness(t)
	resp, page := get(t, h.srv.URL+"/")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	csp := resp.Header.Get("Content-Security-Policy")
	assert.Contains(t, csp, "default-src 'self'")
	assert.NotContains(t, csp, "unsafe-inline")
	for _, want := range []string{`<html lang="en">`, `id="pay"`, ">Pay with Pi</button>", `aria-live="polite"`,
		">Fake completion</button>", ">Forge the header</button>", `data-step="paid"`} {
		assert.Contains(t, page, want)
	}
	// Nothing from the internet: every script and style sheet is the app's own.
	assert.NotRegexp(t, `(src|href)="(https?:)?//`, page)

	// The Pi SDK is the fake Pi platform's, through Caddy (one source:
	// piclient/pitest/sdk/pi-sdk.js); it is tested there and in e2e/.
	assert.Contains(t, page, `<script src="/fakepi/pi-sdk.js" defer></script>`)

	// Every asset of the app's own is served, with its type.
	refs := regexp.MustCompile(`(?:src|href)="(/static/[^"]+)"`).FindAllStringSubmatch(page, -1)
	require.Len(t, refs, 3, "style.css, app.js, attacker.js: %v", refs)
	types := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
	for _, ref := range refs {
		resp, body := get(t, h.srv.URL+ref[1])
		require.Equal(t, http.StatusOK, resp.StatusCode, ref[1])
		assert.Equal(t, types[ref[1][strings.LastIndex(ref[1], "."):]], resp.Header.Get("Content-Type"), ref[1])
		assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), ref[1])
		assert.NotEmpty(t, body, ref[1])
		assert.NotContains(t, body, "http://", ref[1])
		assert.NotContains(t, body, "https://cdn", ref[1])
	}

	// The frontend posts to the guarded routes.
	_, app := get(t, h.srv.URL+"/static/app.js")
	for _, want := range []string{`"/payments/approve"`, `"/payments/complete"`, `"/payments/cancelled_payment"`,
		`Pi.init({ version: "2.0", sandbox: true })`} {
		assert.Contains(t, app, want)
	}
}

func TestDemoPageNotFound(t *testing.T) {
	h := newHarness(t)
	for _, path := range []string{"/static/", "/static/index.html", "/static/nope.js", "/static/web.go",
		"/static/..%2fapp.go", "/static/%2e%2e", "/index.html", "/static/sub/app.js"} {
		resp, _ := get(t, h.srv.URL+path)
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, path)
	}
	resp, err := http.Post(h.srv.URL+"/static/app.js", "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}
