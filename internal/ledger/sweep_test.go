package ledger

import (
	"context"
	"fmt"
	"math"
	"os"
	"path"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// wrappedStorage hides FileStorage's type, so the store takes the path of
// any other storage module.
type wrappedStorage struct{ certmagic.Storage }

// retentionFixture saves, in st, delivered records aged 40 days (old) and
// 1 day (fresh), an owed record aged 40 days, and an old delivered record
// whose owed copy a crash left behind. It returns the ids by kind.
func retentionFixture(t *testing.T, st *Ledger, fsys *certmagic.FileStorage, old, fresh int) (oldIDs, freshIDs []string, owedID, bothID string) {
	t.Helper()
	ctx := context.Background()
	age := func(key string, d time.Duration) {
		when := time.Now().Add(-d)
		require.NoError(t, os.Chtimes(fsys.Filename(key), when, when))
	}
	save := func(id, state string) *Record {
		rec := completedRecord(t)
		rec.PaymentID, rec.Delivery.State = id, state
		require.NoError(t, st.Save(ctx, rec))
		return rec
	}
	for i := range old + fresh {
		id := fmt.Sprintf("retentionPayment%012d", i)
		save(id, Delivered)
		if i < old {
			age(st.RecordKey(id), 40*24*time.Hour)
			oldIDs = append(oldIDs, id)
		} else {
			age(st.RecordKey(id), 24*time.Hour)
			freshIDs = append(freshIDs, id)
		}
	}
	owedID = "retentionOwed000000000000000"
	save(owedID, Exhausted)
	age(st.OwedKey(owedID), 40*24*time.Hour)
	bothID = "retentionBoth000000000000000"
	rec := save(bothID, Pending)
	rec.Delivery.State = Delivered
	data, err := os.ReadFile(fsys.Filename(st.OwedKey(bothID)))
	require.NoError(t, err)
	require.NoError(t, st.Save(ctx, rec))
	require.NoError(t, os.WriteFile(fsys.Filename(st.OwedKey(bothID)), data, 0o600)) // the crash
	age(st.RecordKey(bothID), 40*24*time.Hour)
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
			st := NewLayout(storage, "pi_guard/test", LayoutFiles)
			require.Equal(t, !tc.wrap, st.w != nil)
			oldIDs, freshIDs, owedID, bothID := retentionFixture(t, st, fsys, 7, 3)
			ctx := context.Background()

			sw := NewSweeper(st, DefaultRetention)
			sw.minPass, sw.chunk = 4, 3 // bounded work: at most 4 records looked at per pass
			defer sw.Close()
			cutoff := time.Now().Add(-DefaultRetention)
			total := 0
			for pass := 0; pass < 3; pass++ {
				n, err := sw.Pass(ctx, cutoff)
				require.NoError(t, err)
				assert.LessOrEqual(t, n, 4, "pass %d removed more than its batch", pass)
				total += n
			}
			assert.Equal(t, len(oldIDs), total)

			for _, id := range oldIDs {
				rec, err := st.Load(ctx, id)
				require.NoError(t, err)
				assert.Nil(t, rec, "expired record %s is gone", id)
			}
			for _, id := range freshIDs {
				rec, err := st.Load(ctx, id)
				require.NoError(t, err)
				require.NotNil(t, rec, "fresh record %s is kept", id)
			}
			rec, err := st.Load(ctx, owedID)
			require.NoError(t, err)
			require.NotNil(t, rec, "an owed record is never removed")
			assert.Equal(t, Exhausted, rec.Delivery.State)
			_, err = os.Stat(fsys.Filename(st.RecordKey(bothID)))
			assert.NoError(t, err, "a delivered record whose owed copy remains is kept")

			// A later walk finds nothing more to remove.
			for pass := 0; pass < 3; pass++ {
				n, err := sw.Pass(ctx, cutoff)
				require.NoError(t, err)
				assert.Zero(t, n)
			}
		})
	}
}

// expiredCopies writes n delivered records aged 40 days, copies of the
// delivered record of fromID under new ids, and returns their ids. The
// copies are hard links of one file, which are faster to make than n
// st.save calls or files and share its age.
func expiredCopies(t testing.TB, st *Ledger, fsys *certmagic.FileStorage, fromID string, n int) []string {
	t.Helper()
	data, err := os.ReadFile(fsys.Filename(st.RecordKey(fromID)))
	require.NoError(t, err)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("retentionCopy%015d", i)
		name := fsys.Filename(st.RecordKey(ids[i]))
		if i == 0 {
			when := time.Now().Add(-40 * 24 * time.Hour)
			require.NoError(t, os.WriteFile(name, data, 0o600))
			require.NoError(t, os.Chtimes(name, when, when))
		} else {
			require.NoError(t, os.Link(fsys.Filename(st.RecordKey(ids[0])), name))
		}
	}
	return ids
}

// The pace of the sweep's walk follows the directory's size: once a walk
// has measured it, a whole walk takes at most ceil(walkPeriod / interval)
// passes, so thousands of expired records go within that many passes (2
// when passes come every retention/8, 1 when every retention/2, as with
// retention 2m), where a fixed 4,096 entries a pass would take 3 to 5.
// walkPeriod is retention/4 here, as without an expiry log (other storage
// modules), or for records the log missed.
func TestRetentionSweepKeepsUp(t *testing.T) {
	t.Run("retention 8 intervals", func(t *testing.T) { checkSweepKeepsUp(t, false, DefaultRetention/8, 20000) })
	t.Run("retention 2 intervals", func(t *testing.T) { checkSweepKeepsUp(t, false, DefaultRetention/2, 12000) })
}

// The same through another storage module's listing (smaller: each entry
// costs more there).
func TestRetentionSweepKeepsUpOtherStorage(t *testing.T) {
	checkSweepKeepsUp(t, true, DefaultRetention/8, 10000)
}

// checkSweepKeepsUp sweeps a directory of expired delivered records (plus
// fresh, owed and crash-left ones) with passes every interval, retention
// being DefaultRetention; wrap hides the file storage's type.
func checkSweepKeepsUp(t *testing.T, wrap bool, interval time.Duration, expired int) {
	const fresh = 50
	fsys := &certmagic.FileStorage{Path: t.TempDir()}
	var storage certmagic.Storage = fsys
	if wrap {
		storage = wrappedStorage{fsys}
	}
	st := NewLayout(storage, "pi_guard/test", LayoutFiles)
	_, freshIDs, owedID, bothID := retentionFixture(t, st, fsys, 0, fresh)
	oldIDs := expiredCopies(t, st, fsys, freshIDs[0], expired)
	entries := expired + fresh + 1 // and bothID; owedID is only in owed/
	ctx := context.Background()

	sw := NewSweeper(st, DefaultRetention)
	sw.interval = interval
	sw.walkPeriod = DefaultRetention / 4 // the walk's pace without an expiry log
	defer sw.Close()

	// The first walk, before anything expires, measures the directory at
	// no less than the floor's pace.
	long := time.Now().Add(-1000 * 24 * time.Hour)
	passes := 0
	for sw.walks == 0 {
		n, err := sw.Pass(ctx, long)
		require.NoError(t, err)
		require.Zero(t, n)
		passes++
		require.LessOrEqual(t, passes, (entries+retentionMinPass-1)/retentionMinPass, "the first walk is slower than the floor")
	}
	require.Equal(t, entries, sw.lastWalk)
	quarter := DefaultRetention / 4
	want := int(math.Ceil(float64(entries) * float64(interval) / float64(quarter)))
	assert.Equal(t, want, sw.passSize(), "the pass size follows the directory")
	assert.Greater(t, sw.passSize(), retentionMinPass, "the pass size grows with the directory")

	// Now the old records have expired: they go within the passes of one
	// walk.
	promised := int((quarter + interval - 1) / interval)
	cutoff := time.Now().Add(-DefaultRetention)
	total := 0
	for range promised {
		n, err := sw.Pass(ctx, cutoff)
		require.NoError(t, err)
		assert.LessOrEqual(t, sw.lastPass, want, "a pass looks at no more than its size")
		total += n
	}
	assert.Equal(t, expired, total, "all expired records are gone after %d passes", promised)
	assert.Equal(t, 2, sw.walks)
	for _, id := range oldIDs[:10] {
		assert.NoFileExists(t, fsys.Filename(st.RecordKey(id)))
	}
	for _, id := range freshIDs {
		assert.FileExists(t, fsys.Filename(st.RecordKey(id)), "fresh record %s is kept", id)
	}
	assert.FileExists(t, fsys.Filename(st.OwedKey(owedID)), "an owed record is never removed")
	assert.FileExists(t, fsys.Filename(st.RecordKey(bothID)), "a delivered record whose owed copy remains is kept")

	// With the directory smaller, the next walk is back to the floor.
	for sw.walks < 3 {
		_, err := sw.Pass(ctx, cutoff)
		require.NoError(t, err)
	}
	assert.Equal(t, fresh+1, sw.lastWalk)
	assert.Equal(t, retentionMinPass, sw.passSize())
}

func TestRetentionPassSize(t *testing.T) {
	for _, tc := range []struct {
		lastWalk, walked    int
		retention, interval time.Duration
		want                int
	}{
		{0, 0, DefaultRetention, time.Minute, retentionMinPass},         // nothing known yet: the floor
		{1_000_000, 0, DefaultRetention, time.Minute, retentionMinPass}, // 93 a minute would do
		{100_000_000, 0, DefaultRetention, time.Minute, 9260},           // ceil(1e8 / 10,800 passes)
		{20_000, 0, 8 * time.Minute, time.Minute, 10_000},               // a walk in 2 passes
		{20_000, 0, 2 * time.Minute, time.Minute, 40_000},               // a walk in 1 pass
		{1_000_000, 0, 2 * time.Minute, time.Minute, 2_000_000},         // a walk in 1 pass
		{10_000, 30_000, 8 * time.Minute, time.Minute, 15_000},          // the walk under way saw more
		{10, 0, 1, time.Minute, retentionMaxPass},                       // retention too short to divide
	} {
		sw := NewSweeper(nil, tc.retention)
		sw.interval, sw.lastWalk, sw.walked = tc.interval, tc.lastWalk, tc.walked
		assert.Equal(t, tc.want, sw.passSize(), "%+v", tc)
	}
}

// BenchmarkRetentionPass is one pass, a whole walk, over 20,000 delivered
// records none of which has expired.
func BenchmarkRetentionPass(b *testing.B) {
	fsys := &certmagic.FileStorage{Path: b.TempDir()}
	st := NewLayout(fsys, "pi_guard/bench", LayoutFiles)
	ctx := context.Background()
	rec := completedRecord(b)
	rec.Delivery.State = Delivered
	if err := st.Save(ctx, rec); err != nil {
		b.Fatal(err)
	}
	expiredCopies(b, st, fsys, rec.PaymentID, 20000)
	sw := NewSweeper(st, 2*time.Minute)
	sw.interval = time.Minute
	sw.walkPeriod = 30 * time.Second // a pass of twice the directory: to its end, every pass
	sw.lastWalk = 20001
	defer sw.Close()
	long := time.Now().Add(-1000 * 24 * time.Hour)
	b.ResetTimer()
	for b.Loop() {
		if _, err := sw.Pass(ctx, long); err != nil {
			b.Fatal(err)
		}
		if sw.lastPass != 20001 {
			b.Fatalf("a pass looked at %d entries", sw.lastPass)
		}
	}
}

// Temporary files of writes a crash interrupted go once they are stale;
// recent ones (a write in progress) stay.
func TestRetentionRemovesStaleTemps(t *testing.T) {
	fsys, st := fileLedger(t)
	ctx := context.Background()
	rec := completedRecord(t)
	require.NoError(t, st.Save(ctx, rec))
	rec.Delivery.State = Delivered
	require.NoError(t, st.Save(ctx, rec))
	stale := []string{
		fsys.Filename(st.OwedKey("x")) + ".1-aaaaaaaa.tmp",
		fsys.Filename(st.RecordKey("x")) + ".2-bbbbbbbb.tmp",
	}
	recent := fsys.Filename(st.OwedKey("y")) + ".3-cccccccc.tmp"
	for _, p := range append(stale, recent) {
		require.NoError(t, os.WriteFile(p, []byte("{"), 0o600))
	}
	for _, p := range stale {
		old := time.Now().Add(-2 * staleTempAge)
		require.NoError(t, os.Chtimes(p, old, old))
	}
	sw := NewSweeper(st, DefaultRetention)
	defer sw.Close()
	_, err := sw.Pass(ctx, time.Now().Add(-DefaultRetention))
	require.NoError(t, err)
	for _, p := range stale {
		assert.NoFileExists(t, p)
	}
	assert.FileExists(t, recent)
	assert.FileExists(t, fsys.Filename(st.RecordKey(rec.PaymentID)))
}

func TestRetentionOwedCheckBothWays(t *testing.T) {
	for _, tc := range []struct {
		name     string
		snapshot bool
	}{{"owed listed once", true}, {"owed looked up per record", false}} {
		t.Run(tc.name, func(t *testing.T) {
			fsys, st := fileLedger(t)
			oldIDs, _, _, bothID := retentionFixture(t, st, fsys, 2, 1)
			sw := NewSweeper(st, DefaultRetention)
			defer sw.Close()
			owed := sw.owedNow(t.Context())
			require.NotNil(t, owed)
			assert.True(t, owed[bothID])
			if !tc.snapshot {
				owed = nil
			}
			payments := fsys.Filename(path.Join(st.prefix, "payments"))
			entries, err := os.ReadDir(payments)
			require.NoError(t, err)
			removed := sw.sweepEntries(payments, entries, time.Now().Add(-DefaultRetention), owed)
			assert.Equal(t, len(oldIDs), removed)
			_, err = os.Stat(fsys.Filename(st.RecordKey(bothID)))
			assert.NoError(t, err, "a delivered record whose owed copy remains is kept")
		})
	}
}
