//go:build linux

package ledger

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger/seglog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// segInstances returns n ledgers in the segment layout over one file
// storage, each with a segment store of its own: n instances of the guard
// sharing the storage.
func segInstances(t testing.TB, n int) (*certmagic.FileStorage, []*Ledger) {
	fsys := &certmagic.FileStorage{Path: t.TempDir()}
	var out []*Ledger
	for range n {
		out = append(out, segInstance(t, fsys))
	}
	return fsys, out
}

// segInstance returns a ledger in the segment layout over fsys with a
// segment store of its own: another instance, or one started again.
func segInstance(t testing.TB, fsys *certmagic.FileStorage) *Ledger {
	st := NewLayout(fsys, "pi_guard/test", LayoutSegments)
	st.seg = newSegStore(st.seg.dir)
	t.Cleanup(st.seg.close)
	return st
}

// segID is a well-formed payment id numbered i.
func segID(i int) string { return fmt.Sprintf("segPayment%018d", i) }

func TestSegmentsKeepRecordsWithoutAFilePerPayment(t *testing.T) {
	ctx := context.Background()
	fsys, sts := segInstances(t, 1)
	st := sts[0]
	rec := completedRecord(t)
	require.NoError(t, st.Save(ctx, rec))

	got, err := st.Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	assert.Equal(t, Pending, got.Delivery.State)
	assert.Equal(t, rec.Request, got.Request, "the stored request comes back byte for byte")
	owed, err := st.Owed(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{rec.PaymentID}, owed)
	assert.True(t, st.OwedWritten(ctx, rec.PaymentID))

	got.Delivery.State = Delivered
	require.NoError(t, st.Save(ctx, got))
	got, err = st.Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	assert.Equal(t, Delivered, got.Delivery.State)
	assert.Equal(t, uint64(2), got.Version)
	owed, err = st.Owed(ctx)
	require.NoError(t, err)
	assert.Empty(t, owed)
	assert.False(t, st.OwedWritten(ctx, rec.PaymentID))

	for _, dir := range []string{"owed", "payments"} {
		_, err := os.Stat(fsys.Filename(filepath.Join("pi_guard/test", dir)))
		assert.True(t, os.IsNotExist(err), "no %s/ folder: no file per payment", dir)
	}
	segs, _ := filepath.Glob(fsys.Filename("pi_guard/test/log/*.seg"))
	assert.Len(t, segs, 1)
}

// TestSegmentsSeeAnotherInstancesWrites: what one instance wrote before it
// released a payment's lock, another reads after taking it, both ways, the
// completion and its delivery.
func TestSegmentsSeeAnotherInstancesWrites(t *testing.T) {
	ctx := context.Background()
	_, sts := segInstances(t, 2)
	a, b := sts[0], sts[1]
	rec := completedRecord(t)
	require.NoError(t, a.Save(ctx, rec))

	got, err := b.Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	require.NotNil(t, got, "b reads a's completion")
	owed, err := b.Owed(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{rec.PaymentID}, owed, "b's worker would deliver it")

	got.Delivery.State = Delivered
	require.NoError(t, b.Save(ctx, got))
	got, err = a.Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	assert.Equal(t, Delivered, got.Delivery.State, "a reads b's delivery")
	assert.Equal(t, uint64(2), got.Version)
	owed, err = a.Owed(ctx)
	require.NoError(t, err)
	assert.Empty(t, owed)
}

// TestSegmentsOfADeadInstanceAreRead: a segment its writer left behind
// (killed: preallocated zeros after its last line, a line cut short) is
// read up to its last whole line, and its owed records are listed.
func TestSegmentsOfADeadInstanceAreRead(t *testing.T) {
	ctx := context.Background()
	fsys, sts := segInstances(t, 1)
	rec := completedRecord(t)
	rec.Version = 1
	data, err := marshalRecord(rec)
	require.NoError(t, err)
	dir := fsys.Filename("pi_guard/test/log")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	dead := append(append(data, '\n'), `{"payment_id":"cutShort`...)
	dead = append(dead, make([]byte, 4096)...)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "00000000000000000001-1-dead.seg"), dead, 0o600))

	got, err := sts[0].Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	require.NotNil(t, got)
	assert.Equal(t, Pending, got.Delivery.State)
	owed, err := sts[0].Owed(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{rec.PaymentID}, owed)
}

// TestSegmentsReadRecordsOfTheFilesLayout: records an earlier version (or
// the files layout) wrote stay readable and owed, and a delivery recorded
// in a segment clears the owed file.
func TestSegmentsReadRecordsOfTheFilesLayout(t *testing.T) {
	ctx := context.Background()
	fsys, sts := segInstances(t, 1)
	old := NewLayout(fsys, "pi_guard/test", LayoutFiles)
	rec := completedRecord(t)
	require.NoError(t, old.Save(ctx, rec))
	st := sts[0]

	got, err := st.Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	require.NotNil(t, got)
	owed, err := st.Owed(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{rec.PaymentID}, owed)

	got.Delivery.State = Delivered
	require.NoError(t, st.Save(ctx, got))
	got, err = st.Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	assert.Equal(t, Delivered, got.Delivery.State, "the segment's newer version wins over the owed file")
	owed, err = st.Owed(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{rec.PaymentID}, owed, "the owed file is still listed...")
	assert.True(t, st.OwedWritten(ctx, rec.PaymentID))
	require.NoError(t, st.ClearOwed(ctx, rec.PaymentID))
	owed, err = st.Owed(ctx)
	require.NoError(t, err)
	assert.Empty(t, owed, "...until the worker clears it")
	got, err = st.Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	assert.Equal(t, Delivered, got.Delivery.State)
}

// TestSegmentsModel runs random saves, deliveries, loads, restarts and
// crashes of three instances sharing one storage against a model of what
// every payment's record must be: every Load returns the current version,
// and Owed lists exactly the payments whose current record is owed.
func TestSegmentsModel(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { segModel(t, seed) })
	}
}

func segModel(t *testing.T, seed uint64) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 22))
	fsys, sts := segInstances(t, 3)
	base := completedRecord(t)
	type state struct {
		version uint64
		owed    bool
	}
	model := map[string]state{}
	check := func(st *Ledger, id string) {
		t.Helper()
		got, err := st.Load(ctx, id)
		require.NoError(t, err)
		want, ok := model[id]
		if !ok {
			assert.Nil(t, got, id)
			return
		}
		require.NotNil(t, got, id)
		assert.Equal(t, want.version, got.Version, id)
		assert.Equal(t, want.owed, got.Owed(), id)
		assert.Equal(t, id, got.PaymentID)
	}
	for step := range 400 {
		st := sts[rng.IntN(len(sts))]
		id := segID(rng.IntN(40))
		switch op := rng.IntN(10); {
		case op < 4: // a completion, or a delivery (attempt), under the lock
			rec, err := st.Load(ctx, id)
			require.NoError(t, err)
			if rec == nil {
				c := *base
				c.PaymentID, c.Delivery = id, Delivery{State: Pending}
				rec = &c
			} else if rec.Owed() {
				rec.Delivery.State = []string{Delivered, Pending, Exhausted}[rng.IntN(3)]
				rec.Delivery.Attempts++
			} else {
				rec.Delivery.Attempts++ // a replay rewrites it
			}
			require.NoError(t, st.Save(ctx, rec))
			model[id] = state{version: rec.Version, owed: rec.Owed()}
		case op < 7:
			check(st, id)
		case op < 8: // Owed
			ids, err := st.Owed(ctx)
			require.NoError(t, err)
			var want []string
			for id, s := range model {
				if s.owed {
					want = append(want, id)
				}
			}
			assert.ElementsMatch(t, want, ids, "step %d", step)
		case op < 9 || rng.IntN(2) == 0: // a compaction pass, nothing expired
			_, err := st.compactSegments(ctx, time.Time{}, 0)
			require.NoError(t, err)
		default: // the instance stops (cleanly, or killed) and starts again
			i := rng.IntN(len(sts))
			if rng.IntN(2) == 0 {
				sts[i].seg.close()
			} else {
				sts[i].seg.kill()
			}
			sts[i] = segInstance(t, fsys)
		}
	}
	for id := range model {
		for _, st := range sts {
			check(st, id)
		}
	}
}

// saveMany saves n completions in st and delivers the first delivered of
// them; it returns their ids.
func saveMany(t *testing.T, st *Ledger, n, delivered int) []string {
	t.Helper()
	ctx := context.Background()
	base := completedRecord(t)
	var ids []string
	for i := range n {
		rec := *base
		rec.PaymentID = segID(i)
		require.NoError(t, st.Save(ctx, &rec))
		if i < delivered {
			rec.Delivery.State = Delivered
			require.NoError(t, st.Save(ctx, &rec))
		}
		ids = append(ids, rec.PaymentID)
	}
	return ids
}

func segFiles(t *testing.T, fsys *certmagic.FileStorage) []string {
	t.Helper()
	names, err := filepath.Glob(fsys.Filename("pi_guard/test/log/*.seg"))
	require.NoError(t, err)
	return names
}

// TestCompactionForgetsExpiredRecordsOnly: past the cutoff, delivered
// records go; owed ones stay, in every instance's view.
func TestCompactionForgetsExpiredRecordsOnly(t *testing.T) {
	noExpiryMargin(t)
	ctx := context.Background()
	fsys, sts := segInstances(t, 2)
	a, b := sts[0], sts[1]
	ids := saveMany(t, a, 20, 12)
	for _, id := range ids { // b knows them all before the compaction
		got, err := b.Load(ctx, id)
		require.NoError(t, err)
		require.NotNil(t, got)
	}
	a.seg.close() // a's segment finished: it may be compacted
	before := segFiles(t, fsys)

	dropped, err := a.compactSegments(ctx, time.Now().Add(time.Hour), 0)
	require.NoError(t, err)
	assert.Equal(t, 12, dropped)
	after := segFiles(t, fsys)
	assert.NotContains(t, after, before[0], "the old segment is removed")

	for _, st := range []*Ledger{a, b} {
		for i, id := range ids {
			got, err := st.Load(ctx, id)
			require.NoError(t, err)
			if i < 12 {
				assert.Nil(t, got, "expired: forgotten")
			} else if assert.NotNil(t, got, "owed: kept") {
				assert.Equal(t, Pending, got.Delivery.State)
			}
		}
		owed, err := st.Owed(ctx)
		require.NoError(t, err)
		assert.ElementsMatch(t, ids[12:], owed)
	}
	owed, err := segInstance(t, fsys).Owed(ctx)
	require.NoError(t, err)
	assert.ElementsMatch(t, ids[12:], owed, "an instance started after reads the same")
}

// TestCompactionKeepsWhatIsCurrent: a segment whose records were written
// again later (a completion, then its delivery) is rewritten with only the
// current versions; nothing before the cutoff is lost.
func TestCompactionKeepsWhatIsCurrent(t *testing.T) {
	ctx := context.Background()
	fsys, sts := segInstances(t, 2)
	a, b := sts[0], sts[1]
	ids := saveMany(t, a, 30, 30)
	a.seg.close()
	require.Len(t, segFiles(t, fsys), 1)
	_, err := b.Load(ctx, ids[0]) // b opens the old segment
	require.NoError(t, err)

	dropped, err := b.compactSegments(ctx, time.Now().Add(-time.Hour), 0)
	require.NoError(t, err)
	assert.Zero(t, dropped)
	files := segFiles(t, fsys)
	require.Len(t, files, 1)
	fi, err := os.Stat(files[0])
	require.NoError(t, err)
	rec, err := marshalRecord(completedRecord(t))
	require.NoError(t, err)
	assert.Less(t, fi.Size(), int64(31*(len(rec)+200)), "one line per payment, not two")
	for _, st := range []*Ledger{a, b} {
		for _, id := range ids {
			got, err := st.Load(ctx, id)
			require.NoError(t, err)
			if assert.NotNil(t, got) {
				assert.Equal(t, Delivered, got.Delivery.State)
				assert.Equal(t, uint64(2), got.Version)
			}
		}
	}
}

// TestCompactionLeavesSegmentsBeingWritten: a segment its writer still
// holds is never taken, however much of it is stale.
func TestCompactionLeavesSegmentsBeingWritten(t *testing.T) {
	ctx := context.Background()
	fsys, sts := segInstances(t, 2)
	saveMany(t, sts[0], 10, 10)
	before := segFiles(t, fsys)
	_, err := sts[1].compactSegments(ctx, time.Now().Add(time.Hour), 0)
	require.NoError(t, err)
	assert.Equal(t, before, segFiles(t, fsys))
}

// TestCompactionMergesSmallSegments: many small segments (an instance
// restarted often, or a quiet one whose segments close by age) become one.
func TestCompactionMergesSmallSegments(t *testing.T) {
	ctx := context.Background()
	fsys, sts := segInstances(t, 1)
	st := sts[0]
	base := completedRecord(t)
	for i := range mergeAt {
		rec := *base
		rec.PaymentID = segID(i)
		require.NoError(t, st.Save(ctx, &rec))
		st.seg.close() // the next save starts a new segment
	}
	require.Len(t, segFiles(t, fsys), mergeAt)
	_, err := st.compactSegments(ctx, time.Now().Add(-time.Hour), 0)
	require.NoError(t, err)
	assert.Len(t, segFiles(t, fsys), 1)
	owed, err := st.Owed(ctx)
	require.NoError(t, err)
	assert.Len(t, owed, mergeAt)
}

// TestSegmentsDiskFailure: a completion whose segment sync fails is not
// acknowledged as written: Save says so, and the record lives in memory
// (loaded, listed as owed) until a later save, on a new segment once the
// disk works again, writes it; then another instance reads it.
func TestSegmentsDiskFailure(t *testing.T) {
	ctx := context.Background()
	fsys, sts := segInstances(t, 1)
	st := sts[0]
	var failing atomic.Bool
	failing.Store(true)
	st.seg.newWriter = func(dir string) *seglog.Writer {
		return seglog.NewWriterSyncing(dir, func(f *os.File) error {
			if failing.Load() {
				return syscall.EIO
			}
			return f.Sync()
		})
	}
	rec := completedRecord(t)
	err := st.Save(ctx, rec)
	require.Error(t, err)
	assert.ErrorIs(t, err, syscall.EIO)
	assert.True(t, rec.Unsaved)
	got, err := st.Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	require.NotNil(t, got)
	assert.True(t, got.Unsaved, "from memory")
	owed, err := st.Owed(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{rec.PaymentID}, owed)

	failing.Store(false)
	require.NoError(t, st.Save(ctx, got), "written on a new segment")
	got, err = segInstance(t, fsys).Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	require.NotNil(t, got)
	assert.False(t, got.Unsaved)
	assert.Equal(t, Pending, got.Delivery.State)
	assert.Equal(t, uint64(2), got.Version, "the failed write's version, then this one")
}

// TestSegmentsLookForFilesOnlyWhileThereAreAny: a Load that misses in the
// segments looks for the files layout's records while its folders exist,
// and not once they are gone (checked every legacyEvery).
func TestSegmentsLookForFilesOnlyWhileThereAreAny(t *testing.T) {
	ctx := context.Background()
	fsys, sts := segInstances(t, 1)
	st := sts[0]
	assert.False(t, st.seg.legacyFiles(fsys.Filename("pi_guard/test")), "a new storage: none")

	old := NewLayout(fsys, "pi_guard/test", LayoutFiles)
	rec := completedRecord(t)
	require.NoError(t, old.Save(ctx, rec))
	got, err := st.Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	assert.Nil(t, got, "within legacyEvery of the last look, folders made since are not looked in")
	st.seg.legacyNext.Store(0) // legacyEvery later
	got, err = st.Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	assert.NotNil(t, got, "then they are")
}

// noExpiryMargin lets a test's compaction drop records just written, as
// expired (see expiryMargin).
func noExpiryMargin(t *testing.T) {
	old := expiryMargin
	expiryMargin = 0
	t.Cleanup(func() { expiryMargin = old })
}

// TestCompactionDropsNothingYoungerThanTheMargin: however short retention
// is, a record is dropped as expired only once every older version of it
// is in a finished segment.
func TestCompactionDropsNothingYoungerThanTheMargin(t *testing.T) {
	ctx := context.Background()
	_, sts := segInstances(t, 1)
	st := sts[0]
	ids := saveMany(t, st, 4, 4)
	st.seg.close()
	dropped, err := st.compactSegments(ctx, time.Now().Add(time.Hour), 0)
	require.NoError(t, err)
	assert.Zero(t, dropped)
	got, err := st.Load(ctx, ids[0])
	require.NoError(t, err)
	assert.NotNil(t, got)
}
