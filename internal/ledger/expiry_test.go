package ledger

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A pass removes every expired record the due expiry files list, with no
// walk of payments/, and then the files; it keeps records written again
// since, owed ones, and the records of files not yet due. The walk still
// finds an expired record the log never listed.
func TestExpiryLogRemovesDueRecords(t *testing.T) {
	fsys, st := fileLedger(t)
	require.NotNil(t, st.expiry, "file storage keeps an expiry log")
	st.expirySpan = time.Minute
	ctx := context.Background()
	longAgo := time.Now().Add(-40 * 24 * time.Hour)
	age := func(key string) { require.NoError(t, os.Chtimes(fsys.Filename(key), longAgo, longAgo)) }
	save := func(id, state string) *Record {
		rec := completedRecord(t)
		rec.PaymentID, rec.Delivery.State = id, state
		require.NoError(t, st.Save(ctx, rec))
		return rec
	}

	// Delivered 40 days ago, as the log and the files' times say.
	st.expiry.now = func() time.Time { return longAgo }
	const expired = 300
	var expiredIDs []string
	for i := range expired {
		id := fmt.Sprintf("expiryPayment%015d", i)
		save(id, Delivered)
		age(st.RecordKey(id))
		expiredIDs = append(expiredIDs, id)
	}
	rewritten := "expiryRewritten0000000000000"
	save(rewritten, Delivered) // listed 40 days ago, written again today
	both := "expiryBoth000000000000000000"
	rec := save(both, Pending)
	owedCopy, err := os.ReadFile(fsys.Filename(st.OwedKey(both)))
	require.NoError(t, err)
	rec.Delivery.State = Delivered
	require.NoError(t, st.Save(ctx, rec))
	require.NoError(t, os.WriteFile(fsys.Filename(st.OwedKey(both)), owedCopy, 0o600)) // a crash between the two writes
	age(st.RecordKey(both))
	st.expiry.close()

	// Lines no writer of this log makes: skipped.
	due, err := filepath.Glob(filepath.Join(fsys.Filename(st.expiryDir()), "*.log"))
	require.NoError(t, err)
	require.Len(t, due, 1)
	f, err := os.OpenFile(due[0], os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString("../../../outside.json\n" + strings.Repeat("x", 10000) + "\n\nexpiryCutShort")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	outside := filepath.Join(fsys.Path, "outside.json")
	require.NoError(t, os.WriteFile(outside, nil, 0o600))
	require.NoError(t, os.Chtimes(outside, longAgo, longAgo))

	// Delivered today: listed in a file not yet due.
	st.expiry.now = time.Now
	fresh := "expiryFresh00000000000000000"
	save(fresh, Delivered)
	// Expired, but never listed (a crash lost its line).
	unlisted := expiredCopies(t, st, fsys, fresh, 1)[0]

	sw := NewSweeper(st, DefaultRetention)
	defer sw.Close()
	assert.Equal(t, DefaultRetention, sw.walkPeriod, "with the log, the walk is a backstop: one per retention")
	sw.minPass = 0 // no walk: only the log removes records
	cutoff := time.Now().Add(-DefaultRetention)
	removed, err := sw.Pass(ctx, cutoff)
	require.NoError(t, err)
	assert.Equal(t, expired, removed, "every expired listed record, in one pass")
	assert.Equal(t, expired+2, sw.lastListed)
	assert.Zero(t, sw.lastPass, "without walking payments/")
	for _, id := range expiredIDs {
		assert.NoFileExists(t, fsys.Filename(st.RecordKey(id)))
	}
	for _, id := range []string{rewritten, both, fresh, unlisted} {
		assert.FileExists(t, fsys.Filename(st.RecordKey(id)), id)
	}
	assert.FileExists(t, outside)
	assert.NoFileExists(t, due[0], "a swept file goes")
	left, err := filepath.Glob(filepath.Join(fsys.Filename(st.expiryDir()), "*.log"))
	require.NoError(t, err)
	assert.Len(t, left, 1, "the file not yet due stays")

	removed, err = sw.Pass(ctx, cutoff)
	require.NoError(t, err)
	assert.Zero(t, removed)
	assert.Zero(t, sw.lastListed)

	// The walk, the backstop, removes the record the log missed.
	sw.minPass = retentionMinPass
	removed, err = sw.Pass(ctx, cutoff)
	require.NoError(t, err)
	assert.Equal(t, 1, removed)
	assert.NoFileExists(t, fsys.Filename(st.RecordKey(unlisted)))
	assert.FileExists(t, fsys.Filename(st.RecordKey(both)), "never a record whose owed copy remains")
}

// Each writer appends to its own file per span, named for the span, so
// that writers sharing storage (two processes) never interleave and the
// sweep knows from the name when a file is due. A span that changes (a
// reload with another retention) starts with the next file, and a file is
// never written past its end.
func TestExpiryLogFiles(t *testing.T) {
	dir := t.TempDir()
	a, b := newExpiryLog(dir), newExpiryLog(dir)
	base := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	now := base
	for _, l := range []*expiryLog{a, b} {
		l.now = func() time.Time { return now }
	}
	require.NoError(t, a.add("expiryA00000000000000000000", time.Hour))
	require.NoError(t, b.add("expiryB00000000000000000000", time.Hour))
	now = base.Add(59 * time.Minute)
	require.NoError(t, a.add("expiryA10000000000000000000", time.Hour))
	now = base.Add(2 * time.Hour)
	require.NoError(t, a.add("expiryA20000000000000000000", time.Hour))
	// Another caller's span (a store of another retention) keeps the
	// current file to its end...
	now = base.Add(2*time.Hour + 59*time.Minute)
	require.NoError(t, a.add("expiryA30000000000000000000", 4*time.Hour))
	// ...and past the file's end (13:00) starts the next one with it: its
	// grid starts at 12:00, so 12:00 to 16:00, never the one that ended.
	now = base.Add(3*time.Hour + time.Second)
	require.NoError(t, a.add("expiryA40000000000000000000", 4*time.Hour))
	a.close()
	b.close()

	names, err := filepath.Glob(filepath.Join(dir, "*.log"))
	require.NoError(t, err)
	ends := map[string]time.Time{}
	for _, name := range names {
		data, err := os.ReadFile(name)
		require.NoError(t, err)
		end, ok := expiryFileEnd(filepath.Base(name))
		require.True(t, ok, name)
		ends[string(data)] = end.UTC()
	}
	assert.Equal(t, map[string]time.Time{
		"expiryA00000000000000000000\nexpiryA10000000000000000000\n": base.Add(time.Hour),
		"expiryB00000000000000000000\n":                              base.Add(time.Hour),
		"expiryA20000000000000000000\nexpiryA30000000000000000000\n": base.Add(3 * time.Hour),
		"expiryA40000000000000000000\n":                              base.Add(6 * time.Hour), // 12:00 to 16:00
	}, ends)
}

// Stores over one directory share its log: config reloads append to the
// same file instead of adding one per reload.
func TestExpiryLogSharedByStores(t *testing.T) {
	fsys := &certmagic.FileStorage{Path: t.TempDir()}
	a, b := NewLayout(fsys, "pi_guard/test", LayoutFiles), NewLayout(fsys, "pi_guard/test", LayoutFiles)
	assert.Same(t, a.expiry, b.expiry)
	assert.NotSame(t, a.expiry, NewLayout(fsys, "pi_guard/other", LayoutFiles).expiry)
}

func TestExpiryFileEnd(t *testing.T) {
	for name, want := range map[string]int64{
		"1796180400-1796184000.0123456789ab.log": 1796184000,
		"0-60.x.log":                             60,
	} {
		end, ok := expiryFileEnd(name)
		require.True(t, ok, name)
		assert.Equal(t, want, end.Unix(), name)
	}
	for _, name := range []string{"", ".log", "1-2.log", "1-x.t.log", "12.t.log", "1-2.t.log.tmp", "1-2.t"} {
		_, ok := expiryFileEnd(name)
		assert.False(t, ok, name)
	}
}

func TestExpirySpan(t *testing.T) {
	assert.Equal(t, time.Minute, expirySpan(2*time.Minute))
	assert.Equal(t, 15*time.Minute, expirySpan(time.Hour))
	assert.Equal(t, time.Hour, expirySpan(DefaultRetention))
	assert.Equal(t, 75*time.Second, expirySpan(5*time.Minute+3*time.Second), "whole seconds")
}

// A file's name never ends its span before a record written into it, also
// for a retention that is not a multiple of 4 seconds.
func TestExpiryFileEndsAfterItsRecords(t *testing.T) {
	fsys, st := fileLedger(t)
	st.expirySpan = expirySpan(4*time.Minute + 2*time.Second)
	dir := fsys.Filename(st.expiryDir())
	base := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	for i := range 500 {
		now := base.Add(time.Duration(i) * 250 * time.Millisecond)
		st.expiry.now = func() time.Time { return now }
		require.NoError(t, st.expiry.add("expiryEnd000000000000000000", st.expirySpan))
		st.expiry.close()
		names, err := filepath.Glob(filepath.Join(dir, "*.log"))
		require.NoError(t, err)
		require.Len(t, names, 1)
		end, ok := expiryFileEnd(filepath.Base(names[0]))
		require.True(t, ok)
		require.False(t, end.Before(now), "written at %v into a file named to end at %v", now, end.UTC())
		require.NoError(t, os.Remove(names[0]))
	}
}

// The ledger's log follows its retention, and other storage modules keep
// no log (their sweep walks at retention/4).
func TestExpiryLogFollowsRetention(t *testing.T) {
	fsys := NewLayout(testStorage(t), "pi_guard/test", LayoutFiles)
	fsys.SetRetention(2 * time.Minute)
	require.NotNil(t, fsys.expiry)
	assert.Equal(t, time.Minute, fsys.expirySpan)
	fsys.Close()

	st := NewLayout(wrappedStorage{&certmagic.FileStorage{Path: t.TempDir()}}, "pi_guard/test", LayoutFiles)
	assert.Nil(t, st.expiry)
	assert.Equal(t, DefaultRetention/4, NewSweeper(st, DefaultRetention).walkPeriod)
}

// One expiry file the sweep cannot read (here a directory with a due
// file's name; in life EIO, ESTALE on a shared mount, a file another user
// wrote) must not stop the rest: the other due files are still swept, and
// the walk, the backstop for what the log misses, still runs.
func TestExpiryUnreadableFileStopsNothingElse(t *testing.T) {
	fsys, st := fileLedger(t)
	st.expirySpan = time.Minute
	ctx := context.Background()
	longAgo := time.Now().Add(-40 * 24 * time.Hour)

	// A listed record, delivered 40 days ago.
	st.expiry.now = func() time.Time { return longAgo }
	rec := completedRecord(t)
	rec.PaymentID, rec.Delivery.State = "expiryListed0000000000000000", Delivered
	require.NoError(t, st.Save(ctx, rec))
	require.NoError(t, os.Chtimes(fsys.Filename(st.RecordKey(rec.PaymentID)), longAgo, longAgo))
	st.expiry.close()
	// An expired record the log never listed: the walk's.
	unlisted := expiredCopies(t, st, fsys, rec.PaymentID, 1)[0]
	// Sorted before the real file: read first.
	bad := filepath.Join(fsys.Filename(st.expiryDir()), "0-60.broken.log")
	require.NoError(t, os.Mkdir(bad, 0o700))

	sw := NewSweeper(st, DefaultRetention)
	defer sw.Close()
	removed, err := sw.Pass(ctx, time.Now().Add(-DefaultRetention))
	assert.Error(t, err, "the unreadable file is reported")
	assert.Equal(t, 2, removed, "the listed record and the walk's")
	assert.NoFileExists(t, fsys.Filename(st.RecordKey(rec.PaymentID)), "the other due files are swept")
	assert.NoFileExists(t, fsys.Filename(st.RecordKey(unlisted)), "the walk still runs")
}

// An expiry log that cannot be written (here its directory's name is taken
// by a file) loses no record: the save succeeds, the sweep says so once and
// walks payments/ at the pace it keeps without a log, for as long as the
// records delivered while it failed may be missing from the log; then it
// goes back to the backstop's pace. A sweeper of a later config (a reload)
// does the same from the same failure, never from an old one.
func TestExpiryLogFailureSpeedsUpTheWalk(t *testing.T) {
	fsys, st := fileLedger(t)
	sw := NewSweeper(st, DefaultRetention)
	defer sw.Close()
	now := time.Now()
	require.NoError(t, sw.ExpiryFailed(now))
	require.Equal(t, DefaultRetention, sw.walkPeriod)

	dir := fsys.Filename(st.expiryDir())
	require.NoError(t, os.MkdirAll(filepath.Dir(dir), 0o700))
	require.NoError(t, os.WriteFile(dir, nil, 0o600))
	rec := completedRecord(t)
	rec.Delivery.State = Delivered
	require.NoError(t, st.Save(context.Background(), rec), "the record is saved all the same")
	assert.FileExists(t, fsys.Filename(st.RecordKey(rec.PaymentID)))

	err := sw.ExpiryFailed(now)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "expiry log")
	assert.Equal(t, DefaultRetention/4, sw.walkPeriod)
	assert.NoError(t, sw.ExpiryFailed(now.Add(time.Minute)), "said once")
	assert.Equal(t, DefaultRetention/4, sw.walkPeriod)

	reloaded := NewSweeper(NewLayout(fsys, "pi_guard/test", LayoutFiles), DefaultRetention)
	defer reloaded.Close()
	assert.Error(t, reloaded.ExpiryFailed(now.Add(time.Hour)), "the failure is recent for the new config too")
	assert.Equal(t, DefaultRetention/4, reloaded.walkPeriod)

	// The disk is fine again; once the records of the failing time have
	// expired, the walk is the backstop again, for every config.
	require.NoError(t, os.Remove(dir))
	require.NoError(t, st.expiry.add(rec.PaymentID, st.expirySpan))
	later := now.Add(DefaultRetention + time.Hour + 2*time.Minute)
	for _, s := range []*Sweeper{sw, reloaded} {
		assert.NoError(t, s.ExpiryFailed(later))
		assert.Equal(t, DefaultRetention, s.walkPeriod)
	}
	fresh := NewSweeper(NewLayout(fsys, "pi_guard/test", LayoutFiles), DefaultRetention)
	defer fresh.Close()
	assert.NoError(t, fresh.ExpiryFailed(later), "an old failure is not said again after a reload")
	assert.Equal(t, DefaultRetention, fresh.walkPeriod)
}

// Reloads while serving: writers of different retentions (spans) add
// through the shared log while old configs' cleanups close it. No line is
// lost or doubled, and none lands in a file whose end is at or before the
// time it was written. (From an attacker's review.)
func TestExpiryLogSharedUnderReloads(t *testing.T) {
	dir := t.TempDir()
	l := expiryLogFor(dir)
	base := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC).UnixNano()
	var clock atomic.Int64 // ns past base; moves forward by 7s per read
	l.now = func() time.Time { return time.Unix(0, base+clock.Add(int64(7*time.Second))) }

	const writers, per = 4, 500
	spans := []time.Duration{time.Minute, time.Hour, 75 * time.Second, 15 * time.Minute}
	written := make(map[string]int64) // id → ns before add: a lower bound of its write time
	var mu sync.Mutex
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var reloads sync.WaitGroup
	reloads.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				expiryLogFor(dir).close() // an old config's Cleanup
			}
		}
	})
	for w := range writers {
		wg.Go(func() {
			for i := range per {
				id := fmt.Sprintf("shared%d%021d", w, i)
				before := base + clock.Load()
				assert.NoError(t, l.add(id, spans[(w+i)%len(spans)]))
				mu.Lock()
				written[id] = before
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(stop)
	reloads.Wait()
	l.close()

	names, err := filepath.Glob(filepath.Join(dir, "*.log"))
	require.NoError(t, err)
	seen := map[string]int{}
	for _, name := range names {
		end, ok := expiryFileEnd(filepath.Base(name))
		require.True(t, ok)
		data, err := os.ReadFile(name)
		require.NoError(t, err)
		for _, id := range strings.Fields(string(data)) {
			seen[id]++
			assert.Greater(t, end.UnixNano(), written[id], "%s written at %v into a file that ended at %v", id, time.Unix(0, written[id]).UTC(), end.UTC())
		}
	}
	assert.Len(t, seen, writers*per)
	for id, n := range seen {
		assert.Equal(t, 1, n, id)
	}
}

// Lines are written in batches: a line waits at most expiryFlushDelay, and
// expiryFlushSize bytes waiting are written at once.
func TestExpiryLogWritesInBatches(t *testing.T) {
	dir := t.TempDir()
	l := newExpiryLog(dir)
	defer l.close()
	written := func() string {
		names, err := filepath.Glob(filepath.Join(dir, "*.log"))
		require.NoError(t, err)
		require.Len(t, names, 1)
		data, err := os.ReadFile(names[0])
		require.NoError(t, err)
		return string(data)
	}
	first := "expiryBatch0000000000000000"
	start := time.Now()
	require.NoError(t, l.add(first, time.Hour))
	assert.Empty(t, written(), "waits for more")
	require.Eventually(t, func() bool { return written() == first+"\n" }, 3*expiryFlushDelay, 20*time.Millisecond)
	assert.GreaterOrEqual(t, time.Since(start), expiryFlushDelay-50*time.Millisecond, "waited for more, not written at once")

	var want strings.Builder
	want.WriteString(first + "\n")
	for i := 0; want.Len() < expiryFlushSize+len(first); i++ {
		id := fmt.Sprintf("expiryFull%017d", i)
		require.NoError(t, l.add(id, time.Hour))
		want.WriteString(id + "\n")
	}
	assert.Equal(t, want.String(), written(), "a full batch is written without waiting")
}

// The sweep writes this process's waiting lines before it reads the files:
// a record delivered just before a pass is listed in them.
func TestExpirySweepFlushesFirst(t *testing.T) {
	fsys, st := fileLedger(t)
	ctx := context.Background()
	longAgo := time.Now().Add(-40 * 24 * time.Hour)
	st.expiry.now = func() time.Time { return longAgo }
	rec := completedRecord(t)
	rec.Delivery.State = Delivered
	require.NoError(t, st.Save(ctx, rec))
	require.NoError(t, os.Chtimes(fsys.Filename(st.RecordKey(rec.PaymentID)), longAgo, longAgo))

	sw := NewSweeper(st, DefaultRetention)
	defer sw.Close()
	sw.minPass = 0 // no walk: only the log removes records
	removed, err := sw.Pass(ctx, time.Now().Add(-DefaultRetention))
	require.NoError(t, err)
	assert.Equal(t, 1, removed, "the line still waiting was written and read")
	assert.NoFileExists(t, fsys.Filename(st.RecordKey(rec.PaymentID)))
}
