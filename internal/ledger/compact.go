package ledger

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger/seglog"
)

// Compaction of the segment layout: what retention means there, and what
// keeps the segments few.
//
// A pass (one instance at a time, the retention sweep's) looks at the
// segments nobody writes (finished, or left by a dead instance) and
// rewrites some of them: their records that are current (the highest
// version of their payment) and kept (owed, or delivered after the cutoff)
// are appended to new segments, which are synced before the old ones are
// removed. It takes
//
//   - a segment none of whose records is kept: removed, nothing copied;
//   - a segment whose kept records fill at most two thirds of it (they expired,
//     or were written again in a later segment);
//   - the segments of one size class (under 64 KiB, under 256 KiB, 1 MiB,
//     4 MiB) when there are mergeAt of them: merged into one, so that
//     segments are few and a record is copied about once per class.
//
// Records are copied with their version: a copy never wins over a newer
// write made meanwhile (see segStore.put), and the payment's lock is not
// needed. A copy has the version of what it copies, and is found in a
// later segment, so that every instance's index moves to it before the old
// segment is gone (see segStore.refresh).

// compactSegments makes a compaction pass if no other instance is making
// one (a lock of the ledger's, as the reconciler's), and returns how many
// expired records it dropped.
func (st *Ledger) compactSegments(ctx context.Context, cutoff time.Time) (int, error) {
	unlock, ok := st.tryLockName(ctx, path.Join(st.prefix, "compactor"), time.Second)
	if !ok {
		return 0, nil
	}
	defer unlock()
	return st.seg.compact(ctx, cutoff)
}

// mergeAt is how many segments of one size class are merged into one.
const mergeAt = 8

// sizeClass is 0 for a segment under 64 KiB, then one more per factor of
// 4; classes up to 3 (under 4 MiB) are merged.
func sizeClass(size int64) int {
	c := 0
	for x := size >> 16; x > 0; x >>= 2 {
		c++
	}
	return c
}

const maxMergedClass = 3

// segPlan is what a pass does with one segment.
type segPlan struct {
	n    uint32
	sf   *segFile
	keep []segKept // its kept records, to copy
}

type segKept struct {
	id string
	r  segRec
}

// compact makes one compaction pass (see above) and returns how many
// records it dropped (expired).
func (s *segStore) compact(ctx context.Context, cutoff time.Time) (dropped int, err error) {
	if err := s.refresh(true); err != nil {
		return 0, err
	}
	plans := s.plan(cutoff.UnixNano())
	if len(plans) == 0 {
		return 0, nil
	}
	// Hold every segment taken (an flock on a fd of its own): a writer
	// that still appends to one, or another instance compacting it, keeps
	// it out of this pass.
	var held []*os.File
	defer func() {
		for _, f := range held {
			f.Close()
		}
	}()
	var taken []segPlan
	for _, p := range plans {
		f, err := os.Open(filepath.Join(s.dir, p.sf.name))
		if err != nil {
			continue
		}
		if !seglog.Hold(f) {
			f.Close()
			continue
		}
		held = append(held, f)
		taken = append(taken, p)
	}
	if len(taken) == 0 {
		return 0, nil
	}
	w := seglog.NewWriter(s.dir)
	type copied struct {
		id string
		r  segRec
		at seglog.At
	}
	var copies []copied
	var werr error
	for i, p := range taken {
		for j, k := range p.keep {
			if err := ctx.Err(); err != nil {
				werr = err
				break
			}
			line := make([]byte, k.r.ln)
			if _, err := held[i].ReadAt(line, k.r.off); err != nil {
				werr = fmt.Errorf("reading %s: %w", p.sf.name, err)
				break
			}
			last := i == len(taken)-1 && j == len(p.keep)-1
			at, err := w.Append(ctx, line, last)
			if err != nil {
				werr = err
				break
			}
			copies = append(copies, copied{id: k.id, r: k.r, at: at})
		}
		if werr != nil {
			break
		}
	}
	if werr == nil {
		werr = w.Close() // finished: synced, its lock dropped
	} else {
		w.Close()
	}
	s.mu.Lock()
	for _, c := range copies {
		n := s.register(c.at.Segment, true)
		s.segs[n].size = max(s.segs[n].size, c.at.Off+int64(c.r.ln)+1)
		r := c.r
		r.seg, r.off = n, c.at.Off
		s.put(c.id, r)
	}
	s.mu.Unlock()
	if werr != nil {
		// Nothing is removed: the copies are extra copies of the same
		// versions, which the next pass folds in.
		return 0, fmt.Errorf("compacting %s: %w", s.dir, werr)
	}
	var gone []uint32
	for _, p := range taken {
		if err := os.Remove(filepath.Join(s.dir, p.sf.name)); err == nil || errors.Is(err, os.ErrNotExist) {
			gone = append(gone, p.n)
		}
	}
	if err := seglog.SyncDir(s.dir); err != nil {
		return 0, fmt.Errorf("compacting %s: %w", s.dir, err)
	}
	s.mu.Lock()
	before := len(s.idx)
	s.drop(gone)
	dropped = before - len(s.idx)
	s.mu.Unlock()
	return dropped, nil
}

// plan picks the segments a pass rewrites, each with its records to keep.
func (s *segStore) plan(cutoff int64) []segPlan {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := map[uint32][]segKept{}
	for id, r := range s.idx {
		if r.owed || r.updated >= cutoff {
			keep[r.seg] = append(keep[r.seg], segKept{id: id, r: r})
		}
	}
	var plans []segPlan
	classes := map[int][]segPlan{}
	for n, sf := range s.segs {
		if sf == nil || sf.tail != nil {
			continue // gone, or still written by another
		}
		p := segPlan{n: uint32(n), sf: sf, keep: keep[uint32(n)]}
		var live int64
		for _, k := range p.keep {
			live += int64(k.r.ln) + 1
		}
		if live*3 <= sf.size*2 {
			plans = append(plans, p)
			continue
		}
		if c := sizeClass(sf.size); c <= maxMergedClass {
			classes[c] = append(classes[c], p)
		}
	}
	for _, ps := range classes {
		if len(ps) >= mergeAt {
			plans = append(plans, ps...)
		}
	}
	return plans
}
