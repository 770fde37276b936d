package piguard

import (
	"time"

	"github.com/caddyserver/caddy/v2"
	"testing"

	"bytes"
	"encoding/json"
	"github.com/caddyserver/certmagic"
)

// jsonUnmarshalStrict decodes like encoding/json, case-sensitively for the
// fields that matter (the guard matches field names exactly).
func jsonUnmarshalStrict(data []byte, v any) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return err
	}
	exact := map[string]json.RawMessage{}
	for k, val := range m {
		if k == "paymentId" || k == "txid" {
			exact[k] = val
		}
	}
	b, _ := json.Marshal(exact)
	return json.NewDecoder(bytes.NewReader(b)).Decode(v)
}

// testStorage is real file storage in a temporary directory (a bare Caddy
// context has no storage).
func testStorage(t testing.TB) certmagic.Storage {
	return &certmagic.FileStorage{Path: t.TempDir()}
}

func caddyDuration(d time.Duration) caddy.Duration { return caddy.Duration(d) }
