package ledger

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// DefaultRetention is how long a delivered payment's record is kept unless
// the ledger is told otherwise (SetRetention, NewSweeper).
const DefaultRetention = 30 * 24 * time.Hour

// The retention sweep's pace.
const (
	// retentionInterval is the pause between two sweep passes.
	retentionInterval = time.Minute
	// retentionMinPass is the fewest directory entries a pass looks at
	// (fewer only when its walk ends): the pace of a small directory, and
	// of the first walk, before the directory's size is known.
	retentionMinPass = 4096
	// retentionChunk is how many directory entries are read (and held) at
	// once, whatever the pass's size.
	retentionChunk = 4096
	// retentionMaxPass caps a pass's size against overflow; a pass also
	// stops where its walk ends.
	retentionMaxPass = 1 << 30
	// staleTempAge is when a temporary file of a write that never finished
	// (the process died before its rename) may be removed.
	staleTempAge = time.Hour
)

// Sweeper removes delivered records older than the cutoff. It never
// touches owed/ records, nor a delivered record whose owed copy still exists
// (a crash came between the two writes: the delivery settles it first). A
// record's age is its last write, which for a delivered record is when it
// was delivered.
//
// With file_system storage each pass first removes the records listed in
// the expiry files that are due (see expiryLog): one lstat and one unlink
// per payment, an expired record going at most one span (retention/4,
// between a minute and an hour) plus one interval after it expired.
//
// Each pass then walks on through <prefix>/payments/, looking at enough
// entries that a whole walk of the directory takes about walkPeriod (see
// passSize). With the expiry log the walk is only the backstop for records
// it missed (a crash lost their line, or they were delivered before the
// log existed): one walk per retention, at least an hour, so at most about
// one lstat per payment in its life. Without it (other storage modules)
// the walk does all the work: a walk per retention/4, so an expired record
// goes at most about retention/4 plus one interval after it expired,
// however large the directory, for 4 to 5 entries looked at per payment.
type Sweeper struct {
	st *Ledger
	// retention, walkPeriod and interval set the pace (see passSize).
	retention, walkPeriod, interval time.Duration
	// minPass is the fewest entries a pass looks at, chunk how many are
	// read at once.
	minPass, chunk int

	// file storage: the open payments directory, whose read offset carries
	// the walk from one pass to the next without listing it whole.
	dir *os.File
	// other storage: the listing being walked (the storage's List returns
	// it whole).
	keys []string
	next int

	walked   int // entries looked at so far in this walk
	lastWalk int // entries of the last complete walk
	walks    int // complete walks
	lastPass int // entries the last pass's walk looked at
	// lastListed is how many expiry lines the last pass read.
	lastListed int
	// expiryOff: the expiry log failed recently (see expiryFailed).
	expiryOff bool
}

func NewSweeper(st *Ledger, retention time.Duration) *Sweeper {
	walk := retention / 4
	if st != nil && st.expiry != nil {
		walk = backstopWalk(retention)
	}
	return &Sweeper{st: st, retention: retention, walkPeriod: walk, interval: retentionInterval, minPass: retentionMinPass, chunk: retentionChunk}
}

// backstopWalk is how long a whole walk of payments/ takes when the expiry
// log finds the expired records: one walk per retention, at least an hour.
func backstopWalk(retention time.Duration) time.Duration { return max(retention, time.Hour) }

// Interval is the pause between two passes.
func (sw *Sweeper) Interval() time.Duration { return sw.interval }

// LastListed is how many expiry lines the last pass read.
func (sw *Sweeper) LastListed() int { return sw.lastListed }

// LastWalked is how many entries of payments/ the last pass's walk looked at.
func (sw *Sweeper) LastWalked() int { return sw.lastPass }

// Close releases the open directory of the walk.
func (sw *Sweeper) Close() {
	if sw.dir != nil {
		sw.dir.Close()
		sw.dir = nil
	}
}

// expiryFailed sets the walk's pace from the expiry log's health at now.
// While its last failure is recent (within retention, one span and one
// interval: records delivered then may be missing from the log until they
// have expired and been found), the walk goes at the pace of a sweep
// without the log (a walk per retention/4); after that, back to the
// backstop's. It returns the failure when the walk speeds up, to be logged:
// once per failing period and sweeper (so per config).
func (sw *Sweeper) ExpiryFailed(now time.Time) error {
	if sw.st == nil || sw.st.expiry == nil {
		return nil
	}
	at, err := sw.st.expiry.failure()
	recent := err != nil && now.Sub(at) < sw.retention+expirySpan(sw.retention)+sw.interval
	switch {
	case recent && !sw.expiryOff:
		sw.expiryOff, sw.walkPeriod = true, sw.retention/4
		return err
	case !recent && sw.expiryOff:
		sw.expiryOff, sw.walkPeriod = false, backstopWalk(sw.retention)
	}
	return nil
}

// passSize is how many entries the next pass's walk looks at:
// ceil(size × interval / walkPeriod), at least minPass, where size is the
// directory's best known size: its last complete walk, or more if the walk
// under way (or its listing) has already seen more. So once a walk has
// measured the directory, a walk takes at most about walkPeriod, and one
// pass covers the whole directory when the interval is walkPeriod or more
// (no expiry log, retention 2m, interval 1m). The first walk goes at
// minPass a pass or faster, as it sees more entries (other storage: its
// listing's size).
func (sw *Sweeper) passSize() int {
	size := max(sw.lastWalk, sw.walked, len(sw.keys))
	if sw.walkPeriod <= 0 {
		return retentionMaxPass
	}
	n := math.Ceil(float64(size) * float64(sw.interval) / float64(sw.walkPeriod))
	return max(sw.minPass, int(min(n, retentionMaxPass)))
}

// endWalk ends the walk under way; complete says it reached the end, so
// its size is the directory's. The next pass starts a new walk.
func (sw *Sweeper) endWalk(complete bool) {
	if complete {
		sw.lastWalk = sw.walked
		sw.walks++
	}
	sw.walked = 0
	sw.keys, sw.next = nil, 0
	sw.Close()
}

// Pass removes the expired records listed in due expiry files, then looks
// at up to passSize entries of the walk, never past its end, and removes
// the expired records among them.
func (sw *Sweeper) Pass(ctx context.Context, cutoff time.Time) (int, error) {
	sw.lastPass, sw.lastListed = 0, 0
	if sw.st.seg != nil {
		// Segments first (see compact), then the files of the other
		// layout, while there are any.
		n, err := sw.st.compactSegments(ctx, cutoff, sw.retention/4)
		m, ferr := sw.passFiles(ctx, cutoff)
		return n + m, errors.Join(err, ferr)
	}
	if sw.st.w != nil {
		return sw.passFiles(ctx, cutoff)
	}
	return sw.passStorage(ctx, cutoff)
}

// passFiles is a pass over file storage, reading the directory in chunks.
func (sw *Sweeper) passFiles(ctx context.Context, cutoff time.Time) (int, error) {
	payments := sw.st.w.fs.Filename(path.Join(sw.st.prefix, "payments"))
	if sw.dir == nil {
		// A new walk: first clear what crashed writes left in owed/.
		removeStaleTemps(sw.st.w.fs.Filename(path.Join(sw.st.prefix, "owed")), sw.chunk)
		d, err := os.Open(payments)
		if errors.Is(err, fs.ErrNotExist) {
			sw.endWalk(true)
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		sw.dir = d
	}
	owed := sw.owedNow(ctx)
	removed := 0
	// An expiry file the sweep cannot read stops neither the others nor
	// the walk, the backstop for what the log misses: its error is
	// returned with the walk's.
	var expiryErr error
	if sw.st.expiry != nil {
		removed, sw.lastListed, expiryErr = sw.sweepExpiry(ctx, cutoff, owed)
	}
	size := sw.passSize()
	for sw.lastPass < size {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		n := min(sw.chunk, size-sw.lastPass)
		entries, err := sw.dir.ReadDir(n)
		sw.lastPass += len(entries)
		sw.walked += len(entries)
		removed += sw.sweepEntries(payments, entries, cutoff, owed)
		if err != nil || len(entries) < n {
			// The walk is over (or broken): the next pass starts again.
			if errors.Is(err, io.EOF) {
				err = nil
			}
			sw.endWalk(err == nil)
			return removed, errors.Join(expiryErr, err)
		}
	}
	return removed, expiryErr
}

// owedNow returns the ids owed now (Ledger.Owed: written in owed/ or kept
// in memory), or nil when they could not be listed. A delivered record with
// an owed copy is left alone; one whose owed copy appears after this
// listing is younger than any cutoff.
func (sw *Sweeper) owedNow(ctx context.Context) map[string]bool {
	ids, err := sw.st.Owed(ctx)
	if err != nil {
		return nil
	}
	owed := make(map[string]bool, len(ids))
	for _, id := range ids {
		owed[id] = true
	}
	return owed
}

// sweepEntries removes the expired records among entries of the payments
// directory, and the stale temporary files; it returns the records removed.
// owed is the snapshot of owedNow (nil: stat each expired record's owed
// copy).
func (sw *Sweeper) sweepEntries(payments string, entries []os.DirEntry, cutoff time.Time, owed map[string]bool) int {
	removed := 0
	for _, e := range entries {
		if removeIfStaleTemp(payments, e) {
			continue
		}
		name := e.Name()
		full := filepath.Join(payments, name)
		id, ok := strings.CutSuffix(name, ".json")
		if !ok || piclient.ValidatePaymentID(id) != nil {
			continue
		}
		if info, err := e.Info(); err == nil && sw.removeExpired(id, full, info, cutoff, owed) {
			removed++
		}
	}
	return removed
}

// passStorage is a pass over another storage module, through its listing,
// at the same pace as passFiles.
func (sw *Sweeper) passStorage(ctx context.Context, cutoff time.Time) (int, error) {
	if sw.keys == nil {
		keys, err := sw.st.s.List(ctx, path.Join(sw.st.prefix, "payments"), false)
		if errors.Is(err, fs.ErrNotExist) {
			sw.endWalk(true)
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		sw.keys, sw.next = keys, 0
	}
	end := min(sw.next+sw.passSize(), len(sw.keys))
	removed := 0
	for ; sw.next < end; sw.next++ {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		sw.lastPass++
		sw.walked++
		key := sw.keys[sw.next]
		id, ok := strings.CutSuffix(path.Base(key), ".json")
		if !ok || piclient.ValidatePaymentID(id) != nil {
			continue
		}
		info, err := sw.st.s.Stat(ctx, key)
		if err != nil || info.Modified.IsZero() || !info.Modified.Before(cutoff) {
			continue
		}
		if sw.st.s.Exists(ctx, sw.st.OwedKey(id)) {
			continue
		}
		if sw.st.s.Delete(ctx, key) == nil {
			removed++
		}
	}
	if sw.next >= len(sw.keys) {
		sw.endWalk(true)
	}
	return removed, nil
}

// removeStaleTemps removes the temporary files of writes that never
// finished, reading dir chunk entries at a time. A temporary file is never
// a record: its rename did not happen, so its write never returned success.
func removeStaleTemps(dir string, chunk int) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	defer d.Close()
	for {
		entries, err := d.ReadDir(chunk)
		for _, e := range entries {
			removeIfStaleTemp(dir, e)
		}
		if err != nil || len(entries) < chunk {
			return
		}
	}
}

// removeIfStaleTemp removes e, an entry of dir, if it is the temporary file
// of a write that never finished and is stale; it reports whether e is a
// temporary file at all (a record it is not, stale or not).
func removeIfStaleTemp(dir string, e os.DirEntry) bool {
	if !strings.HasSuffix(e.Name(), ".tmp") {
		return false
	}
	if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleTempAge {
		os.Remove(filepath.Join(dir, e.Name()))
	}
	return true
}
