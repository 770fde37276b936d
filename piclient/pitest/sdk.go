package pitest

import (
	"bytes"
	_ "embed" // the fake Pi SDK
	"net/http"
	"time"
)

// sdkScript is the fake Pi SDK, a drop-in replacement for
// https://sdk.minepi.com/pi-sdk.js that plays the Pi Browser and the user's
// wallet against this Server's control API (see docs/fakepi.md).
//
//go:embed sdk/pi-sdk.js
var sdkScript []byte

// sdkStyle is the look of the SDK's wallet dialog; the script links it.
//
//go:embed sdk/pi-sdk.css
var sdkStyle []byte

// sdkFiles are the files served at the root of the Server, by path.
var sdkFiles = map[string]struct {
	contentType string
	body        []byte
}{
	"/pi-sdk.js":  {"text/javascript; charset=utf-8", sdkScript},
	"/pi-sdk.css": {"text/css; charset=utf-8", sdkStyle},
}

// sdkModTime is when the files last changed, as far as caches know: when the
// process started.
var sdkModTime = time.Now()

// serveSDK serves the fake SDK and its style sheet to any origin: a page on
// another origin loads them with a plain <script src> and <link>, or with
// crossorigin.
func serveSDK(w http.ResponseWriter, r *http.Request) {
	f := sdkFiles[r.URL.Path]
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, "GET, HEAD")
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	http.ServeContent(w, r, "", sdkModTime, bytes.NewReader(f.body))
}
