package piguard

import (
	"context"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// retentionFixture saves, in st, delivered records aged 40 days (old) and
// 1 day (fresh), an owed record aged 40 days, and an old delivered record
// whose owed copy a crash left behind. It returns the ids by kind.
func TestRetentionCaddyfile(t *testing.T) {
	parse := func(body string) (*Handler, error) {
		h := new(Handler)
		return h, h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("pi_guard {\n" + body + "\n}"))
	}
	h, err := parse("retention 2160h")
	require.NoError(t, err)
	assert.Equal(t, caddy.Duration(90*24*time.Hour), h.Retention)
	assert.Equal(t, 90*24*time.Hour, h.retention())
	h, err = parse("retention 7d")
	require.NoError(t, err)
	assert.Equal(t, 7*24*time.Hour, h.retention())
	assert.Equal(t, DefaultRetention, new(Handler).retention())

	for _, bad := range []string{"retention", "retention 0s", "retention -1h", "retention soon", "retention 1h 2h", "retention 1h\nretention 2h"} {
		_, err := parse(bad)
		assert.Error(t, err, bad)
	}
	assert.Error(t, (&Handler{Retention: -1}).validateRetention())
}

// The sweep runs in the module's background and stops with its context.
func TestRetentionLoopStops(t *testing.T) {
	h := &Handler{APIKey: "k", SigningKey: benchSigningKey}
	require.NoError(t, h.provision(testStorage(t)))
	h.logger = zap.NewNop()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.retentionLoop(ctx); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("retentionLoop did not stop with its context")
	}
}

// Whether owed/ is listed once per pass (the usual case) or each expired
// record's owed copy is looked up (owed/ could not be listed), a delivered
// record with an owed copy stays.
