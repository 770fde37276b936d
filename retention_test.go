package piguard

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/certmagic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// wrappedStorage hides FileStorage's type, so the store takes the path of
// any other storage module.
type wrappedStorage struct{ certmagic.Storage }

// retentionFixture saves, in st, delivered records aged 40 days (old) and
// 1 day (fresh), an owed record aged 40 days, and an old delivered record
// whose owed copy a crash left behind. It returns the ids by kind.
func retentionFixture(t *testing.T, st *store, fsys *certmagic.FileStorage, old, fresh int) (oldIDs, freshIDs []string, owedID, bothID string) {
	t.Helper()
	ctx := context.Background()
	age := func(key string, d time.Duration) {
		when := time.Now().Add(-d)
		require.NoError(t, os.Chtimes(fsys.Filename(key), when, when))
	}
	save := func(id, state string) *record {
		rec := completedRecord(t)
		rec.PaymentID, rec.Delivery.State = id, state
		require.NoError(t, st.save(ctx, rec))
		return rec
	}
	for i := range old + fresh {
		id := fmt.Sprintf("retentionPayment%012d", i)
		save(id, deliveryDelivered)
		if i < old {
			age(st.recordKey(id), 40*24*time.Hour)
			oldIDs = append(oldIDs, id)
		} else {
			age(st.recordKey(id), 24*time.Hour)
			freshIDs = append(freshIDs, id)
		}
	}
	owedID = "retentionOwed000000000000000"
	save(owedID, deliveryExhausted)
	age(st.owedKey(owedID), 40*24*time.Hour)
	bothID = "retentionBoth000000000000000"
	rec := save(bothID, deliveryPending)
	rec.Delivery.State = deliveryDelivered
	data, err := os.ReadFile(fsys.Filename(st.owedKey(bothID)))
	require.NoError(t, err)
	require.NoError(t, st.save(ctx, rec))
	require.NoError(t, os.WriteFile(fsys.Filename(st.owedKey(bothID)), data, 0o600)) // the crash
	age(st.recordKey(bothID), 40*24*time.Hour)
	return oldIDs, freshIDs, owedID, bothID
}

func TestRetentionSweep(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap bool
	}{{"file storage", false}, {"other storage", true}} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := &certmagic.FileStorage{Path: t.TempDir()}
			var storage certmagic.Storage = fsys
			if tc.wrap {
				storage = wrappedStorage{fsys}
			}
			st := newStore(storage, "pi_guard/test")
			require.Equal(t, !tc.wrap, st.w != nil)
			oldIDs, freshIDs, owedID, bothID := retentionFixture(t, st, fsys, 7, 3)
			ctx := context.Background()

			sw := newSweeper(st)
			sw.batch = 4 // bounded work: at most 4 records looked at per pass
			defer sw.close()
			cutoff := time.Now().Add(-DefaultRetention)
			total := 0
			for pass := 0; pass < 3; pass++ {
				n, err := sw.pass(ctx, cutoff)
				require.NoError(t, err)
				assert.LessOrEqual(t, n, 4, "pass %d removed more than its batch", pass)
				total += n
			}
			assert.Equal(t, len(oldIDs), total)

			for _, id := range oldIDs {
				rec, err := st.load(ctx, id)
				require.NoError(t, err)
				assert.Nil(t, rec, "expired record %s is gone", id)
			}
			for _, id := range freshIDs {
				rec, err := st.load(ctx, id)
				require.NoError(t, err)
				require.NotNil(t, rec, "fresh record %s is kept", id)
			}
			rec, err := st.load(ctx, owedID)
			require.NoError(t, err)
			require.NotNil(t, rec, "an owed record is never removed")
			assert.Equal(t, deliveryExhausted, rec.Delivery.State)
			_, err = os.Stat(fsys.Filename(st.recordKey(bothID)))
			assert.NoError(t, err, "a delivered record whose owed copy remains is kept")

			// A later walk finds nothing more to remove.
			for pass := 0; pass < 3; pass++ {
				n, err := sw.pass(ctx, cutoff)
				require.NoError(t, err)
				assert.Zero(t, n)
			}
		})
	}
}

// Temporary files of writes a crash interrupted go once they are stale;
// recent ones (a write in progress) stay.
func TestRetentionRemovesStaleTemps(t *testing.T) {
	fsys := &certmagic.FileStorage{Path: t.TempDir()}
	st := newStore(fsys, "pi_guard/test")
	ctx := context.Background()
	rec := completedRecord(t)
	require.NoError(t, st.save(ctx, rec))
	rec.Delivery.State = deliveryDelivered
	require.NoError(t, st.save(ctx, rec))
	stale := []string{
		fsys.Filename(st.owedKey("x")) + ".1-aaaaaaaa.tmp",
		fsys.Filename(st.recordKey("x")) + ".2-bbbbbbbb.tmp",
	}
	recent := fsys.Filename(st.owedKey("y")) + ".3-cccccccc.tmp"
	for _, p := range append(stale, recent) {
		require.NoError(t, os.WriteFile(p, []byte("{"), 0o600))
	}
	for _, p := range stale {
		old := time.Now().Add(-2 * staleTempAge)
		require.NoError(t, os.Chtimes(p, old, old))
	}
	sw := newSweeper(st)
	defer sw.close()
	_, err := sw.pass(ctx, time.Now().Add(-DefaultRetention))
	require.NoError(t, err)
	for _, p := range stale {
		assert.NoFileExists(t, p)
	}
	assert.FileExists(t, recent)
	assert.FileExists(t, fsys.Filename(st.recordKey(rec.PaymentID)))
}

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
