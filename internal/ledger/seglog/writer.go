package seglog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Segment limits and the preallocation step.
const (
	// SegmentMaxBytes and SegmentMaxAge close a segment for appends (the
	// journal's limits).
	SegmentMaxBytes = 16 << 20
	SegmentMaxAge   = 30 * time.Second
	// preallocStep is how much space is reserved at a time: an fdatasync
	// after writing into reserved space costs about two thirds of one after
	// an append that grows the file (docs/benchmarks.md, fifth pass).
	preallocStep = 4 << 20
)

// Writer appends lines to one process's segments in a folder. Concurrent
// appends share one write and, when any of them asks for it, one
// fdatasync (group commit). A segment is made under a name readers skip,
// locked (on Linux, flock: a live writer's segment is never taken for a
// dead one's), and only then given its name; it is preallocated as it
// fills, closed for appends after SegmentMaxBytes or SegmentMaxAge, and
// left in place: removing segments is the compaction's job, not the
// writer's.
type Writer struct {
	dir string
	// maxBytes and maxAge are SegmentMaxBytes and SegmentMaxAge, lowered
	// by tests.
	maxBytes int64
	maxAge   time.Duration
	// maxLine is MaxLine, lowered by tests.
	maxLine int

	batch Batcher[*job]
	// commitMu is held while a batch is written, and to close a segment by
	// age: never closed under a write.
	commitMu sync.Mutex

	// mu guards seg, failed and closed.
	mu     sync.Mutex
	seg    *wsegment
	failed error
	closed bool

	seq atomic.Uint64
	// datasync is the system call, replaced by tests that inject failures.
	datasync func(*os.File) error
	// syncs counts datasyncs, for tests.
	syncs atomic.Int64
}

// wsegment is the segment appends go to.
type wsegment struct {
	f         *os.File
	name      string
	size      int64 // bytes written
	allocated int64 // bytes reserved (0 where preallocation is not supported)
	opened    time.Time
}

type job struct {
	line    []byte
	durable bool
	done    chan result
}

type result struct {
	at  At
	err error
}

// At is where an appended line is: its segment's file name (base name) and
// the offset of its first byte.
type At struct {
	Segment string
	Off     int64
}

// NewWriter returns a writer of segments in dir (made when needed).
func NewWriter(dir string) *Writer {
	w := &Writer{dir: dir, maxBytes: SegmentMaxBytes, maxAge: SegmentMaxAge, maxLine: MaxLine, datasync: datasync}
	w.batch.Commit = w.commit
	return w
}

// ErrSegmentGone: the segment a durable line was written to is no longer
// in its folder (removed by hand, with its folder or alone): the line is
// nowhere a reader looks. The writer is off; a new one starts a segment
// (and the folder) again.
var ErrSegmentGone = errors.New("seglog: the segment was removed while it was written")

// unlinked returns ErrSegmentGone when f has no name left.
func unlinked(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if Links(fi) == 0 {
		return ErrSegmentGone
	}
	return nil
}

// GenName is the file in a segment folder that grows by a byte whenever a
// segment is made or removed: a reader that sees its size unchanged knows
// the folder's segments are the ones it listed (a folder's mtime may keep
// its value for a clock tick).
const GenName = ".gen"

// Bump records, in dir's generation file, that its segments changed.
func Bump(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, GenName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte{'+'})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// NewWriterSyncing is NewWriter with the fdatasync given: for tests that
// make the disk fail.
func NewWriterSyncing(dir string, sync func(*os.File) error) *Writer {
	w := NewWriter(dir)
	w.datasync = sync
	return w
}

// ErrWriterFailed: an earlier write or sync failed and the writer is off;
// the caller keeps what it could not write, and writes it elsewhere.
var ErrWriterFailed = errors.New("seglog: the segment writer failed earlier")

// Append writes line (one record, without '\n') at the end of the current
// segment and returns where. It returns once the line is written; with
// durable, once it is on disk too (one fdatasync for every durable line of
// a batch). ctx bounds only the wait for the writer to take the line: once
// it is taken, Append waits for its outcome (a commit is bounded by the
// disk), so that no line is ever written after Append said it was not.
func (w *Writer) Append(ctx context.Context, line []byte, durable bool) (At, error) {
	if len(line)+1 > w.maxLine {
		return At{}, fmt.Errorf("%w: %d bytes", ErrLineTooLong, len(line))
	}
	for _, b := range line {
		if b == '\n' || b == 0 {
			return At{}, errors.New("seglog: a line holds a newline or a zero byte")
		}
	}
	if err := ctx.Err(); err != nil {
		return At{}, fmt.Errorf("seglog: before a segment write: %w", err)
	}
	j := &job{line: line, durable: durable, done: make(chan result, 1)}
	// Queued under mu: a line queued before Close is written before Close
	// finishes the segment; none is queued after.
	w.mu.Lock()
	failed, closed := w.failed, w.closed
	if failed == nil && !closed {
		w.batch.Add(j)
	}
	w.mu.Unlock()
	if failed != nil {
		return At{}, fmt.Errorf("%w: %w", ErrWriterFailed, failed)
	}
	if closed {
		return At{}, errors.New("seglog: the segment writer is closed")
	}
	r := <-j.done
	return r.at, r.err
}

// commit writes a batch and, if any job asks, syncs it; every job gets its
// outcome. Only the batcher's goroutine calls it.
func (w *Writer) commit(batch []*job) {
	w.commitMu.Lock()
	at, err := w.write(batch)
	w.commitMu.Unlock()
	for i, j := range batch {
		j.done <- result{at: at[i], err: err}
	}
}

func (w *Writer) write(batch []*job) ([]At, error) {
	at := make([]At, len(batch))
	w.mu.Lock()
	seg, failed := w.seg, w.failed
	w.mu.Unlock()
	if failed != nil {
		return at, fmt.Errorf("%w: %w", ErrWriterFailed, failed)
	}
	// Lines queued before Close are written (Close waits for them first).
	// A full segment is finished by the write that fills it, an old one by
	// its timer; this catches a write that comes before the timer fires.
	if seg != nil && time.Since(seg.opened) >= w.maxAge {
		w.finish(seg)
		seg = nil
	}
	if seg == nil {
		var err error
		if seg, err = w.open(); err != nil {
			w.fail(err)
			return at, fmt.Errorf("seglog: starting a segment in %s: %w", w.dir, err)
		}
	}
	var buf []byte
	durable := false
	for i, j := range batch {
		at[i] = At{Segment: filepath.Base(seg.name), Off: seg.size + int64(len(buf))}
		buf = append(append(buf, j.line...), '\n')
		durable = durable || j.durable
	}
	err := w.reserve(seg, seg.size+int64(len(buf)))
	if err == nil {
		_, err = seg.f.WriteAt(buf, seg.size)
	}
	if err == nil && durable {
		if err = w.datasync(seg.f); err == nil {
			w.syncs.Add(1)
			err = unlinked(seg.f)
		}
	}
	if err != nil {
		// What reached the disk is unknown: no line of this batch counts,
		// and nothing is written after it (a reader must not find an
		// acknowledged line after a gap).
		w.fail(err)
		w.rotate(seg)
		return at, fmt.Errorf("seglog: writing %s: %w", seg.name, err)
	}
	seg.size += int64(len(buf))
	if seg.size >= w.maxBytes {
		w.finish(seg)
	}
	return at, nil
}

// reserve preallocates seg up to at least n bytes, a step at a time; where
// the file system cannot, the file just grows as it is written.
func (w *Writer) reserve(seg *wsegment, n int64) error {
	if seg.allocated < 0 || n <= seg.allocated {
		return nil
	}
	size := (n + preallocStep - 1) / preallocStep * preallocStep
	if err := preallocate(seg.f, seg.allocated, size-seg.allocated); err != nil {
		if errors.Is(err, errors.ErrUnsupported) {
			seg.allocated = -1
			return nil
		}
		return err
	}
	seg.allocated = size
	return nil
}

// open starts a segment: made under a name readers skip, locked, renamed
// to its .seg name, its folder synced.
func (w *Writer) open() (*wsegment, error) {
	if err := os.MkdirAll(w.dir, 0o700); err != nil {
		return nil, err
	}
	base := fmt.Sprintf("%020d-%d-%s.seg", time.Now().UnixNano(), w.seq.Add(1), token())
	name, aside := filepath.Join(w.dir, base), filepath.Join(w.dir, "."+base+".new")
	f, err := os.OpenFile(aside, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	seg := &wsegment{f: f, name: name, opened: time.Now()}
	err = lockFile(f)
	if err == nil {
		err = w.reserve(seg, 1)
	}
	if err == nil {
		err = os.Rename(aside, name)
	}
	if err == nil {
		err = SyncDir(w.dir)
	}
	if err == nil {
		err = Bump(w.dir)
	}
	if err != nil {
		f.Close()
		os.Remove(aside)
		os.Remove(name)
		return nil, err
	}
	w.mu.Lock()
	w.seg = seg
	w.mu.Unlock()
	time.AfterFunc(w.maxAge, func() {
		// Closed by age even when no append comes: a segment nobody
		// holds is one compaction may take.
		w.commitMu.Lock()
		defer w.commitMu.Unlock()
		w.finish(seg)
	})
	return seg, nil
}

// finish closes seg for appends, if it is still the current segment, as a
// segment that ended well: its lines synced (lazy ones included), the space
// reserved past them given back (a reader then stops at its end; should a
// crash lose the truncation, the zeros read as nothing written), its file
// closed, which drops the writer's lock. A failed sync turns the writer off
// (its lazy lines may not be on disk: Close reports it). The caller holds
// commitMu.
func (w *Writer) finish(seg *wsegment) {
	w.mu.Lock()
	current := w.seg == seg
	if current {
		w.seg = nil
	}
	w.mu.Unlock()
	if !current {
		return
	}
	err := seg.f.Truncate(seg.size)
	if serr := seg.f.Sync(); serr != nil {
		w.fail(serr)
	} else if err == nil {
		w.syncs.Add(1)
	}
	seg.f.Close()
}

// rotate closes seg for appends (if it is still the current segment) after
// a failure: its tail is unknown and left as it is. Its file stays where it
// is; closing it drops the writer's lock.
func (w *Writer) rotate(seg *wsegment) {
	w.mu.Lock()
	if w.seg == seg {
		w.seg = nil
	}
	w.mu.Unlock()
	seg.f.Close()
}

// fail turns the writer off for the rest of its life.
func (w *Writer) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failed == nil {
		w.failed = err
	}
}

// Close finishes the current segment (its lines synced, its reserved tail
// given back); later appends fail. Appends in flight finish first. It
// returns the error that turned the writer off, if any: then lines it
// acknowledged without a sync may not be on disk.
func (w *Writer) Close() error {
	w.stop(w.finish)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failed
}

// stop refuses further appends, waits for those queued, and ends the
// current segment, if any, with end (under commitMu).
func (w *Writer) stop(end func(*wsegment)) {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.batch.Wait()
	w.commitMu.Lock()
	defer w.commitMu.Unlock()
	w.mu.Lock()
	seg := w.seg
	w.mu.Unlock()
	if seg != nil {
		end(seg)
	}
}

// Current is the base name of the segment appends go to now, or "".
func (w *Writer) Current() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seg == nil {
		return ""
	}
	return filepath.Base(w.seg.name)
}

// Failed reports whether an earlier write or sync turned the writer off.
func (w *Writer) Failed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failed != nil
}

// Syncs is how many fdatasyncs the writer made.
func (w *Writer) Syncs() int64 { return w.syncs.Load() }

// Abandon stops the writer as a killed process would: the current
// segment's file is closed as it is (its reserved tail of zeros kept, its
// lock dropped), nothing synced. For tests of what other instances make of
// a dead instance's segments.
func (w *Writer) Abandon() {
	w.stop(func(seg *wsegment) {
		w.mu.Lock()
		w.seg = nil
		w.mu.Unlock()
		seg.f.Close()
	})
}
