package ledger

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// expiryLog lists delivered records by when they were delivered, so that
// the retention sweep finds each expired record with one lookup, instead of
// looking at every record of payments/ several times in its life (see
// sweeper). File storage only: it appends to plain files.
//
// Each writer (one per process and directory, see expiryLogFor) appends
// "<id>\n" for every delivered record written to its own file per span of
// time, <prefix>/expiry/<start>-<end>.<token>.log (start and end in Unix
// seconds), so writers sharing storage never interleave. Once end is older than the retention
// cutoff, every record listed in the file has expired, unless it was written
// again since (its mtime says so, and the later write is listed in a later
// file): the sweep removes them and then the file.
//
// Nothing is synced, and lines are written in batches (within
// expiryFlushDelay, or once expiryFlushSize bytes wait): a line a crash
// loses (of the machine, or of the process within expiryFlushDelay) leaves
// its record to the sweep's slow walk of payments/, which stays as the
// backstop: a lost line keeps a record longer, never removes one early.
type expiryLog struct {
	dir   string
	token string
	now   func() time.Time // time.Now; tests move it

	made atomic.Bool // dir is known to exist

	mu       sync.Mutex // guards what follows
	f        *os.File
	end      int64       // span end of f, Unix seconds
	buf      []byte      // lines for f not yet written
	timer    *time.Timer // writes buf, when armed
	failed   error       // the last error of add, if any (see failure)
	failedAt time.Time   // when
}

// expirySpan is the span of one expiry file for a retention: a quarter of
// it, between a minute and an hour. A record goes at most a span plus a
// sweep interval after it expired; a writer keeps at most retention/span
// + 1 files (fewer than about 720 for any retention of 30 days or less).
// It is whole seconds, as the file names are: a fractional span (retention
// 4m2s: 60.5s) named a file by an end up to a second before the last
// records written into it, so the sweep could take the file before they
// expired, skip them and remove it, leaving them to the slow walk.
func expirySpan(retention time.Duration) time.Duration {
	return min(max(retention/4, time.Minute), time.Hour).Truncate(time.Second)
}

// A line waits at most expiryFlushDelay to be written, and lines are written
// at once when expiryFlushSize bytes wait: one write per batch of payments
// instead of one each.
const (
	expiryFlushDelay = time.Second
	expiryFlushSize  = 4096
)

func newExpiryLog(dir string) *expiryLog {
	return &expiryLog{dir: dir, token: newToken()[:12], now: time.Now}
}

// expiryLogs holds the process's expiry log of each directory, shared by
// every store over it, so that config reloads keep appending to the same
// file instead of starting one more per reload.
var expiryLogs sync.Map // dir → *expiryLog

func expiryLogFor(dir string) *expiryLog {
	if l, ok := expiryLogs.Load(dir); ok {
		return l.(*expiryLog)
	}
	l, _ := expiryLogs.LoadOrStore(dir, newExpiryLog(dir))
	return l.(*expiryLog)
}

// add lists id as delivered now. A new file, when the current one's span
// is over, spans span (the caller's: its store's, from its retention); the
// current file is kept to its end whatever the caller's span. An error is
// returned for tests and ignored by the store: the walk finds what the log
// misses.
func (l *expiryLog) add(id string, span time.Duration) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.f == nil || now.Unix() >= l.end {
		// The current file's span is over (or there is none): a new one,
		// whose span holds now, whatever span the last one had.
		if l.f != nil {
			l.flushLocked()
			l.f.Close()
			l.f = nil
		}
		start := now.Truncate(span)
		end := start.Add(span).Unix()
		name := filepath.Join(l.dir, fmt.Sprintf("%d-%d.%s.log", start.Unix(), end, l.token))
		f, err := openMakingDir(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, &l.made)
		if err != nil {
			return l.fail(fmt.Errorf("opening the expiry log: %w", err))
		}
		l.f, l.end = f, end
	}
	l.buf = append(append(l.buf, id...), '\n')
	if len(l.buf) >= expiryFlushSize {
		return l.flushLocked()
	}
	if l.timer == nil {
		l.timer = time.AfterFunc(expiryFlushDelay, l.flush)
	}
	return nil
}

// flush writes the lines waiting.
func (l *expiryLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked()
}

// flushLocked writes the lines waiting to the current file. l.mu is held.
func (l *expiryLog) flushLocked() error {
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	if len(l.buf) == 0 || l.f == nil {
		l.buf = l.buf[:0]
		return nil
	}
	_, err := l.f.Write(l.buf)
	l.buf = l.buf[:0]
	if err != nil {
		return l.fail(fmt.Errorf("writing the expiry log: %w", err))
	}
	return nil
}

// fail keeps err as the last error of add, and when, and returns it. l.mu
// is held.
func (l *expiryLog) fail(err error) error {
	l.failed, l.failedAt = err, l.now()
	return err
}

// failure returns when add last met an error, and that error (or nil): the records
// delivered about then may be missing from the log, and only the sweep's
// walk finds them.
func (l *expiryLog) failure() (time.Time, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failedAt, l.failed
}

// close writes the lines waiting and closes the current file; a later add
// opens a new one.
func (l *expiryLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked()
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// expiryFileEnd returns the span end of an expiry file's name.
func expiryFileEnd(name string) (time.Time, bool) {
	rest, ok := strings.CutSuffix(name, ".log")
	if !ok {
		return time.Time{}, false
	}
	span, _, ok := strings.Cut(rest, ".")
	if !ok {
		return time.Time{}, false
	}
	_, end, ok := strings.Cut(span, "-")
	if !ok {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(end, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(sec, 0), true
}

// sweepExpiry removes the records listed in the expiry files whose span
// ended before cutoff: each one whose record was last written before cutoff
// and is not owed (owed as in owedNow; nil: look up its owed copy), then
// the file. It returns the records removed and the lines read. A file is
// removed only once read to its end, so a pass cut short by ctx reads it
// again next time (removing a record twice is harmless, as is two instances
// sweeping one file). A file that cannot be read or removed is reported and
// left for the next pass; it stops neither the other files nor, in
// passFiles, the walk.
func (sw *Sweeper) sweepExpiry(ctx context.Context, cutoff time.Time, owed map[string]bool) (removed, listed int, err error) {
	if sw.st.expiry != nil {
		sw.st.expiry.flush() // this process's lines, in the files before they are read
	}
	dir := sw.st.w.fs.Filename(sw.st.expiryDir())
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	var errs []error
	for _, e := range entries {
		end, ok := expiryFileEnd(e.Name())
		if !ok || !end.Before(cutoff) {
			continue
		}
		name := filepath.Join(dir, e.Name())
		r, n, ferr := sw.sweepExpiryFile(ctx, name, cutoff, owed)
		removed += r
		listed += n
		if cerr := ctx.Err(); cerr != nil {
			return removed, listed, cerr
		}
		if ferr == nil {
			if ferr = os.Remove(name); errors.Is(ferr, fs.ErrNotExist) {
				ferr = nil
			}
		}
		if ferr != nil {
			errs = append(errs, fmt.Errorf("expiry file %s: %w", name, ferr))
		}
	}
	return removed, listed, errors.Join(errs...)
}

// expiryWorkers is how many records of an expiry file are removed at once:
// an unlink waits on the file system's journal, and unlinks made together
// share its commits (on this project's 2-CPU test VM, under load, 20,000
// lstat+unlink took 54-174 us each one at a time, 20-28 us with 8 at once).
const expiryWorkers = 8

// sweepExpiryFile removes the expired records listed in one expiry file.
func (sw *Sweeper) sweepExpiryFile(ctx context.Context, name string, cutoff time.Time, owed map[string]bool) (removed, listed int, err error) {
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, nil // swept by another instance meanwhile
	}
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	ids := make(chan string, 256)
	var gone atomic.Int64
	var wg sync.WaitGroup
	for range expiryWorkers {
		wg.Go(func() {
			for id := range ids {
				full := sw.st.w.fs.Filename(sw.st.RecordKey(id))
				if info, err := os.Lstat(full); err == nil && sw.removeExpired(id, full, info, cutoff, owed) {
					gone.Add(1)
				}
			}
		})
	}
	listed, err = readExpiryLines(ctx, f, ids)
	close(ids)
	wg.Wait()
	return int(gone.Load()), listed, err
}

// readExpiryLines sends the payment ids of r's lines to ids, skipping any
// line that is not one (and a last line cut short), and returns how many it
// sent.
func readExpiryLines(ctx context.Context, r io.Reader, ids chan<- string) (int, error) {
	br := bufio.NewReader(r)
	sent := 0
	for {
		if err := ctx.Err(); err != nil {
			return sent, err
		}
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Not a line of this log: skip to the next one.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			continue
		}
		if id := string(bytes.TrimSuffix(line, []byte("\n"))); err == nil && piclient.ValidatePaymentID(id) == nil {
			ids <- id
			sent++
		}
		if errors.Is(err, io.EOF) {
			return sent, nil
		}
		if err != nil {
			return sent, err
		}
	}
}

// removeExpired removes the delivered record of id, whose file full was
// found with info, if it was last written before cutoff and is not owed
// (owed: the snapshot of owedNow, or nil to look up its owed copy), and
// reports whether it did.
func (sw *Sweeper) removeExpired(id, full string, info fs.FileInfo, cutoff time.Time, owed map[string]bool) bool {
	if !info.ModTime().Before(cutoff) {
		return false
	}
	if owed != nil {
		if owed[id] {
			return false // still owed: leave it to the delivery
		}
	} else if _, err := os.Stat(sw.st.w.fs.Filename(sw.st.OwedKey(id))); !errors.Is(err, fs.ErrNotExist) {
		return false // still owed (or unknown): leave it to the delivery
	}
	return os.Remove(full) == nil
}
