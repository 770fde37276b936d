package ledger

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger/seglog"
)

// Compaction of the segment layout: what retention means there, and what
// keeps the segments few.
//
// A pass (one instance at a time, the retention sweep's) rewrites some of
// the segments nobody writes any more (finished, or left by a dead
// instance): the lines it keeps are appended to new segments, which are
// synced before the old ones are removed. A partial pass takes
//
//   - a segment whose current records (each payment's highest version)
//     fill two thirds of it or less: the rest was written again since;
//   - the segments of one size class (under 64 KiB, 256 KiB, 1 MiB, 4 MiB)
//     when there are mergeAt of them: merged into one, so that segments
//     stay few and a record is copied about once per class.
//
// and keeps every current record, and every older version whose current one
// is in a segment still written (not synced yet, maybe: a power cut must
// leave the older one, an owed record redelivered). A full pass takes every
// finished segment and drops, besides, the payments whose current record is
// delivered and older than the cutoff, with all their older versions: no
// version of them is left anywhere (a segment is finished within 30 s, much
// less than any retention), so none comes back. A full pass is made when
// such records fill a third of the finished segments, or when one has been
// expired for longer than the pass's patience (a quarter of retention, from
// the sweeper): so a delivered record goes at most about 1.25 × retention
// after it was written.
//
// Lines are copied as they are, version included: a copy never wins over
// a newer write made meanwhile (see segStore.put), so the payment's lock is
// not needed, and a copy of the current version is found in a later
// segment, so that every instance's index moves to it before the old
// segment is gone (see segStore.refresh).

// compactSegments makes a compaction pass if no other instance is making
// one (a lock of the ledger's, as the reconciler's), and returns how many
// expired records it dropped. A record expired since before cutoff-patience
// forces a full pass.
func (st *Ledger) compactSegments(ctx context.Context, cutoff time.Time, patience time.Duration) (int, error) {
	unlock, ok := st.tryLockName(ctx, path.Join(st.prefix, "compactor"), time.Second)
	if !ok {
		return 0, nil
	}
	defer unlock()
	return st.seg.compact(ctx, cutoff, patience)
}

// expiryMargin: a record is dropped as expired only once it is this old,
// whatever the cutoff (see compact). A variable for tests.
var expiryMargin = 2 * seglog.SegmentMaxAge

// mergeAt is how many segments of one size class are merged into one.
const mergeAt = 8

// maxMergedClass is the largest size class merged (under 4 MiB).
const maxMergedClass = 3

// sizeClass is 0 for a segment under 64 KiB, then one more per factor of 4.
func sizeClass(size int64) int {
	c := 0
	for x := size >> 16; x > 0; x >>= 2 {
		c++
	}
	return c
}

// staleAside is when a segment file left under its dot name (its process
// died between making and naming it) is removed.
const staleAside = time.Hour

// heldSeg is a segment a pass took: its number, name and its own file,
// flocked.
type heldSeg struct {
	n    uint32
	name string
	f    *os.File
}

// compact makes one pass (see above) and returns how many expired records
// it dropped.
func (s *segStore) compact(ctx context.Context, cutoff time.Time, patience time.Duration) (int, error) {
	if err := s.refresh(true); err != nil {
		return 0, err
	}
	s.removeStaleAside()
	// Every older version of a record written before settledBefore is in
	// a finished segment (a segment is finished after SegmentMaxAge at
	// most): a full pass that drops it leaves none of them behind, however
	// short retention is.
	if settledBefore := time.Now().Add(-expiryMargin); cutoff.After(settledBefore) {
		cutoff = settledBefore
	}
	s.saving.Lock()
	full, picked, settled := s.plan(cutoff.UnixNano(), cutoff.Add(-patience).UnixNano())
	held := s.hold(picked)
	s.saving.Unlock()
	defer func() {
		for _, h := range held {
			h.f.Close()
		}
	}()
	if len(held) < len(picked) {
		full = false // a finished segment is taken by someone else: a version might stay there
	}
	if len(held) == 0 {
		return 0, nil
	}
	w := seglog.NewWriter(s.dir)
	type copied struct {
		kept
		at seglog.At
	}
	var copies []copied
	var werr error
	for _, h := range held {
		keep, err := s.keep(h, full, cutoff.UnixNano(), settled)
		if err != nil {
			werr = err
			break
		}
		for _, k := range keep {
			if werr = ctx.Err(); werr != nil {
				break
			}
			at, err := w.Append(ctx, k.line, false)
			if err != nil {
				werr = err
				break
			}
			copies = append(copies, copied{kept: k, at: at})
		}
		if werr != nil {
			break
		}
	}
	if cerr := w.Close(); werr == nil {
		werr = cerr // Close synced the copies (or failed to)
	}
	s.mu.Lock()
	for _, c := range copies {
		n, ok := s.wrote(c.at, len(c.line))
		if ok && c.current {
			r := c.rec
			r.seg, r.off = n, c.at.Off
			s.put(c.id, r) // a newer version written meanwhile stays
		}
	}
	s.mu.Unlock()
	if werr != nil {
		// Nothing is removed: the copies are extra copies of the same
		// versions, which a later pass folds in.
		return 0, fmt.Errorf("compacting %s: %w", s.dir, werr)
	}
	var gone []uint32
	for _, h := range held {
		if err := os.Remove(filepath.Join(s.dir, h.name)); err == nil || errors.Is(err, os.ErrNotExist) {
			gone = append(gone, h.n)
		}
	}
	if err := seglog.SyncDir(s.dir); err != nil {
		return 0, fmt.Errorf("compacting %s: %w", s.dir, err)
	}
	if err := seglog.Bump(s.dir); err != nil {
		return 0, fmt.Errorf("compacting %s: %w", s.dir, err)
	}
	s.mu.Lock()
	before := len(s.idx)
	s.drop(gone)
	dropped := before - len(s.idx)
	s.mu.Unlock()
	return dropped, nil
}

// plan picks the segments a pass takes: every finished one for a full pass,
// else those a partial pass takes (see above). settled holds every finished
// segment: a line there is on disk (its writer synced it when it finished
// it, or died without a power cut). expiredBefore is the cutoff, overdue
// the time before which an expired record forces a full pass.
func (s *segStore) plan(expiredBefore, overdue int64) (full bool, picked []uint32, settled map[uint32]bool) {
	cur := s.current()
	s.mu.Lock()
	defer s.mu.Unlock()
	settled = map[uint32]bool{}
	var total int64
	for n, sf := range s.segs {
		if sf.tail == nil && sf.name != cur {
			settled[n] = true
			total += sf.size
		}
	}
	live := map[uint32]int64{}
	var expired int64
	for _, r := range s.idx {
		live[r.seg] += int64(r.ln) + 1
		if settled[r.seg] && !r.owed && r.updated < expiredBefore {
			expired += int64(r.ln) + 1
			full = full || r.updated < overdue
		}
	}
	if stalled(s.segs, settled, expiredBefore) {
		full = false // an older version may still sit in it, unsynced
	} else if full || expired > 0 && expired*3 >= total {
		for n := range settled {
			picked = append(picked, n)
		}
		return true, picked, settled
	}
	classes := map[int][]uint32{}
	for n := range settled {
		size := s.segs[n].size
		if live[n]*3 <= size*2 {
			picked = append(picked, n)
		} else if c := sizeClass(size); c <= maxMergedClass {
			classes[c] = append(classes[c], n)
		}
	}
	for _, ns := range classes {
		if len(ns) >= mergeAt {
			picked = append(picked, ns...)
		}
	}
	return false, picked, settled
}

// stalled reports whether a segment not finished was made before
// expiredBefore (its name starts with its creation time): its writer is
// stuck (a hung disk, a stopped process), and it may hold older versions
// of records a full pass would drop. The caller holds mu.
func stalled(segs map[uint32]*segFile, settled map[uint32]bool, expiredBefore int64) bool {
	for n, sf := range segs {
		if settled[n] {
			continue
		}
		var made int64
		if _, err := fmt.Sscanf(sf.name, "%d-", &made); err == nil && made < expiredBefore {
			return true
		}
	}
	return false
}

// hold takes the picked segments: an flock on a file of their own, which a
// writer still appending to one, or another compaction, keeps from it.
func (s *segStore) hold(picked []uint32) []heldSeg {
	var held []heldSeg
	for _, n := range picked {
		s.mu.Lock()
		sf := s.segs[n]
		s.mu.Unlock()
		if sf == nil {
			continue
		}
		f, err := os.Open(filepath.Join(s.dir, sf.name))
		if err != nil {
			continue
		}
		if !seglog.Hold(f) {
			f.Close()
			continue
		}
		held = append(held, heldSeg{n: n, name: sf.name, f: f})
	}
	return held
}

// kept is a line a pass copies: its payment, and when it is the current
// version, its index entry (to point at the copy).
type kept struct {
	line    []byte
	id      string
	current bool
	rec     segRec
}

// keep returns the lines of segment h to copy: its payments' current
// records (unless full and expired), and older versions whose current one
// is not settled yet. Other lines, and what is not a record, are dropped.
func (s *segStore) keep(h heldSeg, full bool, expiredBefore int64, settled map[uint32]bool) ([]kept, error) {
	data, err := io.ReadAll(h.f)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", h.name, err)
	}
	lines, _ := seglog.Scan(data)
	s.mu.Lock()
	defer s.mu.Unlock()
	var keep []kept
	var off int64
	for _, line := range lines {
		at := off
		off += int64(len(line)) + 1
		id, ok := linePaymentID(line)
		if !ok {
			continue
		}
		cur, known := s.idx[id]
		expired := full && !cur.owed && cur.updated < expiredBefore
		switch {
		case known && cur.seg == h.n && cur.off == at:
			if !expired {
				keep = append(keep, kept{line: line, id: id, current: true, rec: cur})
			}
		case !known || lineVersion(line) > cur.version:
			// A line this process never indexed: one its own writer wrote
			// but never acknowledged (a batch whose sync failed, kept in
			// memory since), which another instance may have indexed as
			// current. Kept, and indexed here as any other's line.
			if h, ok := parseLine(line); ok {
				keep = append(keep, kept{line: line, id: id, current: true, rec: headRec(h, len(line))})
			}
		case !settled[cur.seg] && !expired:
			keep = append(keep, kept{line: line, id: id}) // its successor may not be on disk yet
		}
	}
	return keep, nil
}

// removeStaleAside removes segment files left under their dot name by a
// process that died while making them (4 MiB reserved each).
func (s *segStore) removeStaleAside() {
	names, _ := filepath.Glob(filepath.Join(s.dir, ".*.seg.new"))
	for _, name := range names {
		if fi, err := os.Stat(name); err == nil && time.Since(fi.ModTime()) > staleAside {
			os.Remove(name)
		}
	}
}
