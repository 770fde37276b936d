//go:build linux

package ledger

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger/seglog"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// journal makes new owed records durable, for file_system storage on Linux,
// at the cost of one fdatasync per batch of completions instead of an fsync
// of every record file and its directory.
//
// A completion's record is written to its file as before (owed/<id>.json,
// where every instance sees it) but not synced; the same bytes are appended
// to this process's current journal segment (<prefix>/journal/*.log), and
// concurrent appends share one write and one fdatasync (group commit). The
// record is durable once its batch is: should the machine lose the file's
// unsynced write (a power cut; a killed process loses nothing written), the
// segment still has it.
//
// A segment is closed after segmentMaxAge or segmentMaxBytes and retired
// soon after: one syncfs(2) makes every record file written so far durable,
// then the segment is removed. A live process holds an flock on each of its
// segments until it removes them; a segment nobody holds (its process died)
// is replayed by the next instance that looks (store.recoverJournal): every
// record in it that has no readable file, owed or delivered, is written
// again, durably, as owed (the redelivery worker then sends it; the app may
// get a payment twice, never lose one).
//
// On a file system where this measures slower than per-file syncs it is
// still correct; it is used only with Caddy's file_system storage.
type journal struct {
	dir string

	// commitMu is held while a batch is written to the current segment,
	// and to close that segment: never closed under a write.
	commitMu sync.Mutex

	batch seglog.Batcher[*journalJob]

	mu       sync.Mutex
	seg      *segment   // current segment, nil before the first append
	closed   []*segment // closed, waiting for retire
	own      map[string]bool
	retiring bool
	// sfd is the storage root, opened before the first record (prepare).
	sfd *os.File
	// failed is the first journal error (a write, a sync, a syncfs): the
	// journal is off since (see fail), and kept holds the segments it did
	// not retire, locked until the process ends (see retire).
	failed error
	kept   []*segment

	// syncfs and fdatasync are the system calls, replaced by tests that
	// inject failures.
	syncfs, fdatasync func(*os.File) error

	// syncs counts fdatasyncs, for tests and benchmarks.
	syncs atomic.Int64
	seq   atomic.Uint64
}

// Segment limits.
const (
	segmentMaxAge   = 30 * time.Second
	segmentMaxBytes = 16 << 20
)

type segment struct {
	f    *os.File
	name string
	size int64
}

type journalJob struct {
	line []byte
	done chan error
}

// journalEntry is one line of a segment.
type journalEntry struct {
	Key    string          `json:"key"`
	Record json.RawMessage `json:"record"`
}

// journals holds the process's journal of each directory, shared by every
// handler over it (config reloads keep appending to the same segment).
var journals sync.Map // dir → *journal

func journalFor(dir string) *journal {
	if !syncfsReportsErrors() {
		return nil // every record is synced in place instead
	}
	j, _ := journals.LoadOrStore(dir, newJournal(dir))
	return j.(*journal)
}

// syncfsReportsErrors reports whether this kernel's syncfs returns writeback
// errors (Linux 5.8 and later); before, it always succeeded, and the
// journal cannot be retired safely.
func syncfsReportsErrors() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var major, minor int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 5 || major == 5 && minor >= 8
}

func newJournal(dir string) *journal {
	j := &journal{dir: dir, own: map[string]bool{}, syncfs: syncfs, fdatasync: fdatasync}
	j.batch.Commit = j.commitBatch
	return j
}

// append adds key's record to the journal and returns once it is on disk.
func (j *journal) append(ctx context.Context, key string, data []byte) error {
	// {"key":<key>,"record":<data>}: data is a record as json.Marshal wrote
	// it (one line), so it goes in as it is, not validated again.
	k, err := json.Marshal(key)
	if err != nil {
		return err
	}
	line := make([]byte, 0, len(k)+len(data)+22)
	line = append(append(append(line, `{"key":`...), k...), `,"record":`...)
	line = append(append(line, data...), "}\n"...)
	job := &journalJob{line: line, done: make(chan error, 1)}
	if j.off() {
		return errJournalOff
	}
	j.batch.Add(job)
	return awaitCommit(ctx, job.done, "the journal")
}

// commitBatch commits a batch and gives every job its outcome.
func (j *journal) commitBatch(batch []*journalJob) {
	err := j.commit(batch)
	for _, job := range batch {
		job.done <- err
	}
}

// commit writes a batch to the current segment (opening one when needed)
// and syncs it. Only the batcher's goroutine calls it.
func (j *journal) commit(batch []*journalJob) error {
	j.commitMu.Lock()
	defer j.commitMu.Unlock()
	j.mu.Lock()
	seg, failed := j.seg, j.failed
	j.mu.Unlock()
	if failed != nil {
		return errJournalOff // turned off after this batch was queued
	}
	if seg == nil {
		var err error
		if seg, err = j.open(); err != nil {
			j.fail(err)
			return fmt.Errorf("opening a journal segment: %w", err)
		}
	}
	var buf []byte
	for _, job := range batch {
		buf = append(buf, job.line...)
	}
	_, err := seg.f.Write(buf)
	if err == nil {
		if err = j.fdatasync(seg.f); err == nil {
			j.syncs.Add(1)
		}
	}
	if err != nil {
		// The segment's tail is unknown: close it, and stop journalling.
		j.fail(err)
		j.rotate(seg)
		return fmt.Errorf("writing the journal %s: %w", seg.name, err)
	}
	seg.size += int64(len(buf))
	if seg.size >= segmentMaxBytes {
		j.rotate(seg)
	}
	return nil
}

// open starts a new segment. It is created under a name replays never
// read, locked, and only then renamed to its .log name (its directory synced),
// so no other instance can ever find it unlocked.
func (j *journal) open() (*segment, error) {
	if err := os.MkdirAll(j.dir, 0o700); err != nil {
		return nil, err
	}
	base := fmt.Sprintf("%d-%d-%s.log", time.Now().UnixNano(), j.seq.Add(1), newToken()[:8])
	name, aside := filepath.Join(j.dir, base), filepath.Join(j.dir, "."+base+".new")
	f, err := os.OpenFile(aside, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*segment, error) {
		f.Close()
		os.Remove(aside)
		os.Remove(name)
		j.mu.Lock()
		delete(j.own, base)
		j.mu.Unlock()
		return nil, err
	}
	j.mu.Lock()
	j.own[base] = true
	j.mu.Unlock()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return fail(err)
	}
	if err := os.Rename(aside, name); err != nil {
		return fail(err)
	}
	if err := seglog.SyncDir(j.dir); err != nil {
		return fail(err)
	}
	seg := &segment{f: f, name: name}
	j.mu.Lock()
	j.seg = seg
	j.mu.Unlock()
	time.AfterFunc(segmentMaxAge, func() {
		j.commitMu.Lock()
		defer j.commitMu.Unlock()
		j.rotate(seg)
	})
	return seg, nil
}

// rotate closes seg for new appends (if it is still the current segment)
// and retires it in the background. The caller holds commitMu.
func (j *journal) rotate(seg *segment) {
	j.mu.Lock()
	if j.seg != seg {
		j.mu.Unlock()
		return
	}
	j.seg = nil
	j.closed = append(j.closed, seg)
	start := !j.retiring
	j.retiring = true
	j.mu.Unlock()
	if start {
		go j.retire()
	}
}

// retire makes every record file written so far durable with one syncfs,
// then removes the closed segments, which nothing needs any more.
//
// syncfs goes through the fd opened before this journal's first record
// was written (see prepare): Linux reports a writeback error to every fd
// opened before it, once. If it fails, the records' files may not be on
// disk, and asking again would wrongly succeed: the segments are kept,
// locked, until the process ends, and then replayed by another instance,
// which writes every record in them again, synced (see replaySegment).
func (j *journal) retire() {
	for {
		j.mu.Lock()
		segs := j.closed
		j.closed = nil
		if len(segs) == 0 || j.failed != nil {
			j.kept = append(j.kept, segs...)
			j.retiring = false
			j.mu.Unlock()
			return
		}
		sfd := j.sfd
		j.mu.Unlock()
		if err := j.syncfs(sfd); err != nil {
			j.mu.Lock()
			j.failed = err
			j.kept = append(j.kept, segs...)
			j.retiring = false
			j.mu.Unlock()
			return
		}
		for _, seg := range segs {
			os.Remove(seg.name)
			seg.f.Close() // drops the flock
			j.mu.Lock()
			delete(j.own, filepath.Base(seg.name))
			j.mu.Unlock()
		}
	}
}

// errJournalOff: the journal failed earlier; the record is synced in place
// instead (see fileWriter.storeDurable).
var errJournalOff = errors.New("the journal is off after an earlier failure")

// fail turns the journal off for the rest of the process, so that a failing
// disk does not open a new segment per batch: new records are synced in
// place, one by one (slower, as durable). Segments already written are kept
// or retired as usual.
func (j *journal) fail(err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.failed == nil {
		j.failed = err
	}
}

// failure returns the error that turned the journal off, or nil (also for
// no journal).
func (j *journal) failure() error {
	if j == nil {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.failed
}

// off reports whether the journal has failed (nil journal: off).
func (j *journal) off() bool {
	if j == nil {
		return true
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.failed != nil
}

// prepare opens, once, the fd that retire's syncfs goes through, on the
// storage root: before any record of this journal is written, so that no
// writeback error of theirs can escape it.
func (j *journal) prepare(root string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.sfd != nil {
		return nil
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	d, err := os.Open(root)
	if err != nil {
		return err
	}
	j.sfd = d
	return nil
}

// flushAll closes the current segment and retires every closed one now, for
// tests.
func (j *journal) flushAll() {
	j.commitMu.Lock()
	j.mu.Lock()
	seg := j.seg
	j.mu.Unlock()
	if seg != nil {
		j.rotate(seg)
	}
	j.commitMu.Unlock()
	for {
		j.mu.Lock()
		busy := j.retiring || len(j.closed) > 0
		j.mu.Unlock()
		if !busy {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// syncCount is the number of fdatasyncs so far (0 for a nil journal).
func (j *journal) syncCount() int64 {
	if j == nil {
		return 0
	}
	return j.syncs.Load()
}

// owns reports whether the segment file name is one of this process's.
func (j *journal) owns(name string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.own[name]
}

func syncfs(f *os.File) error    { return unix.Syncfs(int(f.Fd())) }
func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }

// recoverJournal replays the segments of processes that died: every record
// in them without a readable file is written again, durably, as owed; then
// the segment is removed. Segments a live process holds are left alone.
func (st *Ledger) recoverJournal(ctx context.Context) (restored int, err error) {
	if st.w == nil || st.w.journal == nil {
		return 0, nil
	}
	jn := st.w.journal
	entries, err := os.ReadDir(jn.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".log") || jn.owns(e.Name()) {
			continue
		}
		n, err := st.replaySegment(ctx, filepath.Join(jn.dir, e.Name()))
		restored += n
		if err != nil {
			return restored, err
		}
	}
	return restored, nil
}

func (st *Ledger) replaySegment(ctx context.Context, name string) (int, error) {
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil // retired meanwhile
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return 0, nil // its process is alive (or another instance is replaying it)
	}
	if _, err := os.Stat(name); err != nil {
		return 0, nil // retired between the open and the lock
	}
	restored := 0
	rd := bufio.NewReader(f)
	for {
		line, rerr := rd.ReadBytes('\n')
		var e journalEntry
		if len(line) > 0 && json.Unmarshal(line, &e) == nil { // else a batch cut short by the crash: never acknowledged
			ok, err := st.restore(ctx, e)
			if err != nil {
				return restored, err
			}
			if ok {
				restored++
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return restored, rerr
		}
	}
	return restored, os.Remove(name)
}

// restore makes a journalled record durable, under the payment's lock:
// its owed record as it is now (it may have moved on since), written again
// and synced, since its file was written unsynced and may have been lost
// or never written back; the journalled bytes when it has no readable
// record; nothing when the app already has the payment. It reports whether
// the record had to come back from the journal.
func (st *Ledger) restore(ctx context.Context, e journalEntry) (bool, error) {
	dir, base := path.Split(e.Key)
	id, ok := strings.CutSuffix(base, ".json")
	if !ok || path.Clean(dir) != path.Join(st.prefix, "owed") || piclient.ValidatePaymentID(id) != nil {
		return false, nil // not a record of this store
	}
	var rec Record
	if json.Unmarshal(e.Record, &rec) != nil || rec.PaymentID != id {
		return false, nil
	}
	unlock, err := st.Lock(ctx, id)
	if err != nil {
		return false, err
	}
	defer unlock()
	have, err := st.Load(ctx, id)
	if err != nil {
		return false, err
	}
	if st.seg != nil {
		st.seg.legacyWritten()
	}
	switch {
	case have == nil:
		return true, st.w.storeSynced(ctx, e.Key, e.Record)
	case have.Owed() && !have.Unsaved:
		data, err := json.Marshal(have)
		if err != nil {
			return false, err
		}
		return false, st.w.storeSynced(ctx, e.Key, data)
	default:
		return false, nil // delivered (or kept in memory, written by the worker)
	}
}
