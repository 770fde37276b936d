package piguard

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
)

// testStorage is real file storage in a temporary directory (a bare Caddy
// context has no storage).
func testStorage(t testing.TB) certmagic.Storage {
	return &certmagic.FileStorage{Path: t.TempDir()}
}

func caddyDuration(d time.Duration) caddy.Duration { return caddy.Duration(d) }
