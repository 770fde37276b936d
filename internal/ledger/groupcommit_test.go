package ledger

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Concurrent durable writes share one commit: each returns only when its
// batch is on disk, and the batch syncs the directory once, not once per
// record.
func TestFileWriterGroupCommit(t *testing.T) {
	fs := &certmagic.FileStorage{Path: t.TempDir()}
	w := newFileWriter(fs)
	const n = 32
	// Hold the committer back (on a batch of one job of the test's own)
	// until every writer has queued its file.
	commit, gate, held := w.batch.Commit, make(chan struct{}), &commitJob{}
	w.batch.Commit = func(b []*commitJob) {
		if len(b) == 1 && b[0] == held {
			<-gate
			return
		}
		commit(b)
	}
	w.batch.Add(held)
	require.Eventually(t, func() bool { return w.batch.Pending() == 0 }, 5*time.Second, time.Millisecond, "the committer took its batch of one")
	var wg sync.WaitGroup
	var returned atomic.Int32
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = w.storeDurable(context.Background(), fmt.Sprintf("p/owed/%d.json", i), []byte(fmt.Sprint(i)))
			returned.Add(1)
		})
	}
	require.Eventually(t, func() bool { return w.batch.Pending() == n }, 5*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	require.Zero(t, returned.Load(), "no writer returns before its batch is committed")
	close(gate)
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		data, err := fs.Load(context.Background(), fmt.Sprintf("p/owed/%d.json", i))
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprint(i), string(data))
	}
	assert.Equal(t, int64(1), w.syncs.Load(), "one directory sync for the whole batch")
	left, err := filepath.Glob(filepath.Join(fs.Path, "p", "owed", "*.tmp"))
	require.NoError(t, err)
	assert.Empty(t, left, "no temporary file is left behind")
}

// A directory removed behind the writer's back is made again.
func TestFileWriterRecreatesDirectory(t *testing.T) {
	fs := &certmagic.FileStorage{Path: t.TempDir()}
	w := newFileWriter(fs)
	require.NoError(t, w.storeDurable(context.Background(), "p/owed/a.json", []byte("1")))
	require.NoError(t, os.RemoveAll(filepath.Join(fs.Path, "p")))
	require.NoError(t, w.storeDurable(context.Background(), "p/owed/a.json", []byte("2")))
	require.NoError(t, w.storeLazy("p/payments/a.json", []byte("3")))
	data, err := fs.Load(context.Background(), "p/owed/a.json")
	require.NoError(t, err)
	assert.Equal(t, "2", string(data))
}

// With file storage, an owed record is synced through the writer (directory
// included) and a delivered one is not; records in temporary files are not
// listed as owed.
func TestStoreFileStorageWritePath(t *testing.T) {
	fs, st := fileLedger(t)
	require.NotNil(t, st.w)
	ctx := context.Background()
	rec := completedRecord(t)
	require.NoError(t, st.Save(ctx, rec))
	durableSyncs := func() int64 { return st.w.syncs.Load() + st.w.journal.syncCount() }
	assert.Equal(t, int64(1), durableSyncs(), "the owed record is synced (its directory, or the journal)")

	require.NoError(t, os.WriteFile(fs.Filename(st.OwedKey(benchID))+".7-deadbeef.tmp", []byte("{"), 0o600))
	ids, err := st.Owed(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{rec.PaymentID}, ids)

	rec.Delivery.State = Delivered
	require.NoError(t, st.Save(ctx, rec))
	assert.Equal(t, int64(1), durableSyncs(), "the delivered record is written without a sync")
	got, err := st.Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	assert.Equal(t, Delivered, got.Delivery.State)
	_, err = os.Stat(fs.Filename(st.OwedKey(rec.PaymentID)))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// A delivered record a crash left empty (written, never synced) counts as
// missing: the owed record, if its removal was lost too, or Pi decides. A
// broken owed record (always synced) stays an error.
func TestStoreLoadAfterCrash(t *testing.T) {
	fs, st := fileLedger(t)
	ctx := context.Background()
	rec := completedRecord(t)
	require.NoError(t, st.Save(ctx, rec)) // owed, pending

	require.NoError(t, os.MkdirAll(filepath.Dir(fs.Filename(st.RecordKey(rec.PaymentID))), 0o700))
	require.NoError(t, os.WriteFile(fs.Filename(st.RecordKey(rec.PaymentID)), nil, 0o600))
	got, err := st.Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	require.NotNil(t, got)
	assert.Equal(t, Pending, got.Delivery.State, "the owed record is still owed")

	require.NoError(t, os.Remove(fs.Filename(st.OwedKey(rec.PaymentID))))
	got, err = st.Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	assert.Nil(t, got, "no record: the guard asks Pi again")

	// A new owed record is created in place; a crash during its write (which
	// then never returned, so nothing was forwarded on it) leaves it cut
	// short: Pi decides again.
	require.NoError(t, os.WriteFile(fs.Filename(st.OwedKey(rec.PaymentID)), []byte(`{"payment_id":`), 0o600))
	got, err = st.Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	assert.Nil(t, got)

	// Other storage modules write whole records: a broken one is an error.
	other := New(wrappedStorage{fs}, "pi_guard/test")
	_, err = other.Load(ctx, rec.PaymentID)
	assert.Error(t, err, "a broken record in another storage module is never ignored")
}

// A new owed record is written in place (no temporary file, no rename); an
// existing one is replaced through a temporary file, so a crash never
// damages it.
func TestFileWriterInPlaceAndReplace(t *testing.T) {
	fs := &certmagic.FileStorage{Path: t.TempDir()}
	w := newFileWriter(fs)
	j, err := w.writeNew("p/owed/a.json", []byte("1"))
	require.NoError(t, err)
	require.Empty(t, j.tmp)
	require.NoError(t, j.f.Close())
	_, err = w.writeNew("p/owed/a.json", []byte("2"))
	require.ErrorIs(t, err, os.ErrExist, "an existing record is never opened in place")

	require.NoError(t, w.storeDurable(context.Background(), "p/owed/a.json", []byte("3")), "replaced through a temporary file")
	data, err := fs.Load(context.Background(), "p/owed/a.json")
	require.NoError(t, err)
	assert.Equal(t, "3", string(data))
	left, err := filepath.Glob(filepath.Join(fs.Path, "p", "owed", "*.tmp"))
	require.NoError(t, err)
	assert.Empty(t, left)
}
