//go:build linux

package ledger

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/certmagic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// journalStore is a store over file storage in dir with a journal of its
// own (a fresh process's), not the process-wide one.
func journalStore(t *testing.T, dir string) *Ledger {
	t.Helper()
	st := NewLayout(&certmagic.FileStorage{Path: dir}, "pi_guard/test", LayoutFiles)
	require.NotNil(t, st.w)
	st.w.journal = newJournal(st.w.fs.Filename(path.Join(st.prefix, "journal")))
	return st
}

func journalled(i int) *Record {
	id := fmt.Sprintf("pay%04d", i)
	return &Record{PaymentID: id, Phase: PhaseComplete, TxID: "tx",
		Payment:  &piclient.Payment{Identifier: id},
		Delivery: Delivery{State: Pending}}
}

func segments(t *testing.T, st *Ledger) []string {
	t.Helper()
	entries, err := os.ReadDir(st.w.journal.dir)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// Concurrent completions share the journal's syncs; should the machine lose
// the unsynced record files (a power cut) and the process with them, the
// next instance restores every record from the dead process's segment.
func TestJournalRestoresRecordsLostWithTheirProcess(t *testing.T) {
	dir := t.TempDir()
	st := journalStore(t, dir)
	const n = 64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { assert.NoError(t, st.Save(t.Context(), journalled(i))) })
	}
	wg.Wait()
	syncs := st.w.journal.syncs.Load()
	assert.LessOrEqual(t, syncs, int64(n))
	assert.Zero(t, st.w.syncs.Load(), "no record file or directory was synced one by one")
	t.Logf("%d records, %d journal syncs", n, syncs)

	// One record was delivered before the crash: it must not come back owed.
	delivered := journalled(0)
	delivered.Delivery = Delivery{State: Delivered}
	require.NoError(t, st.Save(t.Context(), delivered))
	want := map[string][]byte{}
	for i := 1; i < n; i++ {
		name := st.w.fs.Filename(st.OwedKey(journalled(i).PaymentID))
		data, err := os.ReadFile(name)
		require.NoError(t, err)
		want[journalled(i).PaymentID] = data
		require.NoError(t, os.Remove(name)) // lost with the page cache
	}
	// The process dies: its segment's flock goes with it.
	segs := segments(t, st)
	require.Len(t, segs, 1)
	st.w.journal.seg.f.Close()

	next := journalStore(t, dir)
	restored, err := next.recoverJournal(t.Context())
	require.NoError(t, err)
	assert.Equal(t, n-1, restored)
	for id, data := range want {
		got, err := os.ReadFile(next.w.fs.Filename(next.OwedKey(id)))
		require.NoError(t, err, id)
		assert.JSONEq(t, string(data), string(got), id)
	}
	rec, err := next.Load(t.Context(), journalled(0).PaymentID)
	require.NoError(t, err)
	assert.Equal(t, Delivered, rec.Delivery.State, "a delivered record stays delivered")
	assert.Empty(t, segments(t, next), "the replayed segment is removed")
	ids, err := next.Owed(t.Context())
	require.NoError(t, err)
	assert.Len(t, ids, n-1)
}

// A live process's segment is never replayed by another instance, and a
// batch cut short by a crash is skipped.
func TestJournalLeavesLiveSegmentsAndTornTails(t *testing.T) {
	dir := t.TempDir()
	live := journalStore(t, dir)
	require.NoError(t, live.Save(t.Context(), journalled(1)))
	require.NoError(t, os.Remove(live.w.fs.Filename(live.OwedKey(journalled(1).PaymentID))))

	other := journalStore(t, dir)
	restored, err := other.recoverJournal(t.Context())
	require.NoError(t, err)
	assert.Zero(t, restored, "the segment's process is alive")
	assert.Len(t, segments(t, other), 1)

	f, err := os.OpenFile(filepath.Join(live.w.journal.dir, segments(t, live)[0]), os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"key":"pi_guard/test/owed/pay0002.json","record":{"payme`)
	require.NoError(t, err)
	f.Close()
	live.w.journal.seg.f.Close() // the live process dies
	restored, err = other.recoverJournal(t.Context())
	require.NoError(t, err)
	assert.Equal(t, 1, restored)
	rec, err := other.Load(t.Context(), journalled(1).PaymentID)
	require.NoError(t, err)
	require.NotNil(t, rec)
	rec, err = other.Load(t.Context(), "pay0002")
	require.NoError(t, err)
	assert.Nil(t, rec, "the torn line was never acknowledged")
}

// Closed segments are retired once one syncfs has made their records'
// files durable; records stay readable and nothing is left to replay.
func TestJournalRetiresSegments(t *testing.T) {
	st := journalStore(t, t.TempDir())
	for i := range 10 {
		require.NoError(t, st.Save(context.Background(), journalled(i)))
	}
	require.Len(t, segments(t, st), 1)
	st.w.journal.flushAll()
	assert.Empty(t, segments(t, st))
	for i := range 10 {
		rec, err := st.Load(t.Context(), journalled(i).PaymentID)
		require.NoError(t, err)
		require.NotNil(t, rec)
	}
	// The next completion opens a new segment.
	require.NoError(t, st.Save(t.Context(), journalled(10)))
	assert.Len(t, segments(t, st), 1)
}

// A failed syncfs means the record files may not be on disk, and asking
// again would wrongly succeed: the segments are kept, locked, and when
// their process ends the next instance writes every still-owed record again,
// synced, even though its file is readable (it may be readable only from
// the page cache).
func TestJournalKeepsSegmentsWhenSyncfsFails(t *testing.T) {
	failing := errors.New("EIO")
	dir := t.TempDir()
	st := journalStore(t, dir)
	st.w.journal.syncfs = func(*os.File) error { return failing }
	for i := range 5 {
		require.NoError(t, st.Save(t.Context(), journalled(i)))
	}
	delivered := journalled(0)
	delivered.Delivery = Delivery{State: Delivered}
	require.NoError(t, st.Save(t.Context(), delivered))
	st.w.journal.flushAll()
	require.ErrorIs(t, st.w.journal.failed, failing)
	require.Len(t, segments(t, st), 1, "not retired: the records may not be on disk")
	require.NoError(t, st.Save(t.Context(), journalled(5)))
	st.w.journal.flushAll()
	assert.Len(t, segments(t, st), 1, "the journal is off: no new segment")
	assert.EqualValues(t, 1, st.w.syncs.Load(), "a later record is synced in place")

	for _, seg := range st.w.journal.kept {
		seg.f.Close() // the process ends
	}
	next := journalStore(t, dir)
	restored, err := next.recoverJournal(t.Context())
	require.NoError(t, err)
	assert.Zero(t, restored, "every record still has its file")
	assert.EqualValues(t, 4, next.w.syncs.Load(), "each still-owed record of the segment was written again and synced; the delivered one was left alone")
	assert.Empty(t, segments(t, next))
	for i := 1; i <= 5; i++ {
		rec, err := next.Load(t.Context(), journalled(i).PaymentID)
		require.NoError(t, err)
		require.NotNil(t, rec)
		assert.True(t, rec.Owed())
	}
}

// A segment shows its .log name only once it is locked: a replayer can
// never take a live segment for a dead one's.
func TestJournalSegmentLockedBeforeItIsVisible(t *testing.T) {
	st := journalStore(t, t.TempDir())
	require.NoError(t, st.Save(t.Context(), journalled(1)))
	segs := segments(t, st)
	require.Len(t, segs, 1)
	f, err := os.Open(filepath.Join(st.w.journal.dir, segs[0]))
	require.NoError(t, err)
	defer f.Close()
	assert.ErrorIs(t, unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB), unix.EWOULDBLOCK)
}

// A completion is acknowledged only once the journal's fdatasync succeeded:
// when it fails, save fails and the record is kept in memory (owed, and
// written again by the worker).
func TestJournalAckWaitsForFdatasync(t *testing.T) {
	st := journalStore(t, t.TempDir())
	st.w.journal.fdatasync = func(*os.File) error { return errors.New("EIO") }
	rec := journalled(1)
	require.Error(t, st.Save(t.Context(), rec))
	assert.True(t, rec.Unsaved)
	ids, err := st.Owed(t.Context())
	require.NoError(t, err)
	assert.Contains(t, ids, rec.PaymentID)

	// The journal is off now: no new segment per batch on a failing disk;
	// records are synced in place instead, the kept one too.
	require.NoError(t, st.Save(t.Context(), journalled(2)))
	require.NoError(t, st.Save(t.Context(), rec))
	assert.False(t, rec.Unsaved)
	assert.EqualValues(t, 2, st.w.syncs.Load())
	assert.Len(t, segments(t, st), 1)
}

// When the journal fails, completions go on, synced one by one, and the
// ledger reports the failure once, so that an operator learns why
// completions got slower (the redelivery pass logs it).
func TestJournalFailureIsReportedOnce(t *testing.T) {
	st := journalStore(t, t.TempDir())
	require.NoError(t, st.JournalFailure(), "nothing to say while it works")
	require.NoError(t, st.Save(t.Context(), journalled(0)))
	require.NoError(t, st.JournalFailure())

	st.w.journal.fdatasync = func(*os.File) error { return errors.New("EIO") }
	require.Error(t, st.Save(t.Context(), journalled(1)))
	require.NoError(t, st.Save(t.Context(), journalled(2)), "synced in place instead")
	err := st.JournalFailure()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "EIO")
	assert.NoError(t, st.JournalFailure(), "reported once")
}

// BenchmarkJournalAppend: today's durable path for a completion's record
// (about 600 bytes), 16 at a time, to compare with seglog's
// BenchmarkAppendDurable (a preallocated segment) in the same run.
func BenchmarkJournalAppend(b *testing.B) {
	dir := b.TempDir()
	j := newJournal(filepath.Join(dir, "journal"))
	if err := j.prepare(dir); err != nil {
		b.Fatal(err)
	}
	record := []byte(`{"paymentId":"p","pad":"` + strings.Repeat("x", 520) + `"}`)
	b.SetParallelism(8) // 16 on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := j.append(context.Background(), "pi_guard/x/owed/p.json", record); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(j.syncs.Load())/float64(b.N), "syncs/op")
}
