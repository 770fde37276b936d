package ledger

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger/seglog"
	"github.com/caddyserver/certmagic"
)

// fileWriter writes records into a certmagic FileStorage's directory, in the
// storage's own layout (FileStorage.Filename), so that FileStorage's Load,
// List and Delete, and other instances sharing the directory, see them as if
// Store had written them. It replaces Store for two reasons:
//
//   - Store (certmagic v0.25.6, internal/atomicfile) syncs the temporary
//     file but never the directory after the rename, so a crash can lose
//     a record the guard believed durable. A durable write here ends with
//     the file and its directory fsynced.
//   - A durable write of a new record (the common case: a completion) is
//     created in place (O_EXCL), fsynced, and its directory fsynced: one
//     journal commit on ext4 instead of two (file, then rename). A crash
//     before the sync returns can leave the file empty or cut short, but
//     then the write never returned and nothing was forwarded on it:
//     Ledger.Load counts such a record as missing. Replacing an existing
//     record still goes through a temporary file and a rename, so a crash
//     never damages a record that was already there.
//   - Concurrent durable writes share their syncs (group commit): a writer
//     queues its written file, and one committer goroutine takes everything
//     queued, fsyncs each file (the first fsync commits the file system's
//     journal for all of them), renames those written aside, and fsyncs
//     each directory once. Every writer returns only after the batch
//     holding its record is on disk.
//
// Writes that only save work after a crash (a delivered record: losing it
// costs at most an idempotent redelivery) skip the syncs: see storeLazy.
type fileWriter struct {
	fs   *certmagic.FileStorage
	dirs sync.Map // directory → *atomic.Bool: known to exist
	seq  atomic.Uint64

	batch seglog.Batcher[*commitJob]

	// syncs counts the directory syncs made, for tests and benchmarks.
	syncs atomic.Int64

	// journal, where there is one (Linux), makes new records durable with
	// one sync per batch (see journal); nil: every record is synced.
	journal *journal

	// kept holds the owed files storeDurable created and left open, by
	// path, for moveDelivered; at most maxKeptFiles.
	keptMu sync.Mutex
	kept   map[string]keptFile
}

// keptFile is an owed record's file, open, and the length written to it.
type keptFile struct {
	f    *os.File
	size int
}

// maxKeptFiles bounds the owed files kept open: about the completions in
// flight whose delivery is still to come. Past it, files are closed and
// their delivery writes a new file.
const maxKeptFiles = 256

// commitJob is one durable write waiting for its batch.
type commitJob struct {
	f     *os.File
	tmp   string // "" when written in place
	final string
	done  chan error
}

func newFileWriter(fs *certmagic.FileStorage) *fileWriter {
	w := &fileWriter{fs: fs, kept: map[string]keptFile{}}
	w.batch.Commit = w.commit
	return w
}

// storeDurable writes value under key and returns once it is durable: a
// new record through the journal where there is one (written in place
// unsynced, its bytes synced in the journal), anything else synced in place.
func (w *fileWriter) storeDurable(ctx context.Context, key string, value []byte) error {
	if w.journal.off() {
		return w.storeSynced(ctx, key, value)
	}
	if err := w.journal.prepare(w.fs.Path); err != nil {
		return err
	}
	j, err := w.writeNew(key, value)
	if errors.Is(err, fs.ErrExist) {
		return w.storeSynced(ctx, key, value)
	}
	if err != nil {
		return err
	}
	if err := w.journal.append(ctx, key, value); errors.Is(err, errJournalOff) {
		j.f.Close()
		return w.storeSynced(ctx, key, value) // turned off meanwhile
	} else if err != nil {
		j.f.Close()
		return err
	}
	w.keep(j.final, j.f, len(value))
	return nil
}

// keep leaves f, the owed record just written at name, open for its
// delivery (see moveDelivered), or closes it when enough are open.
func (w *fileWriter) keep(name string, f *os.File, size int) {
	w.keptMu.Lock()
	old, had := w.kept[name]
	if len(w.kept) < maxKeptFiles || had {
		w.kept[name] = keptFile{f: f, size: size}
		f = old.f
	}
	w.keptMu.Unlock()
	if f != nil {
		f.Close()
	}
}

// take removes and returns the file kept open for name.
func (w *fileWriter) take(name string) (keptFile, bool) {
	w.keptMu.Lock()
	defer w.keptMu.Unlock()
	kf, ok := w.kept[name]
	if ok {
		delete(w.kept, name)
	}
	return kf, ok
}

// forget closes the file kept open for key, if any: something else is
// written there now, or it is removed.
func (w *fileWriter) forget(key string) {
	if kf, ok := w.take(w.fs.Filename(key)); ok {
		kf.f.Close()
	}
}

// moveDelivered writes a delivered record over the owed record's file this
// process created and still holds open, and renames it to the delivered
// record's place: a delivery then creates and removes no file. It reports
// whether it did; when not (no such file, or any step failed, the rename
// included: the owed file may then hold the delivered record already,
// which changes nothing), the caller writes the delivered record anew and
// removes the owed one, as before. Not synced, like any delivered record:
// a crash may leave the owed file with either record, whole or torn, in
// either place; Load reads a torn one as missing and prefers payments/, and
// ClearOwed moves a delivered record it finds in owed/. The file is only
// used while it is still the one at the owed path (the payment's lock keeps
// other writers away; the check costs one stat).
func (w *fileWriter) moveDelivered(owedKey, recordKey string, value []byte) bool {
	from := w.fs.Filename(owedKey)
	kf, ok := w.take(from)
	if !ok {
		return false
	}
	defer kf.f.Close()
	held, err := kf.f.Stat()
	if err != nil {
		return false
	}
	if there, err := os.Stat(from); err != nil || !os.SameFile(held, there) {
		return false
	}
	if _, err := kf.f.WriteAt(value, 0); err != nil {
		return false
	}
	if len(value) < kf.size {
		if err := kf.f.Truncate(int64(len(value))); err != nil {
			return false
		}
	}
	return w.rename(from, w.fs.Filename(recordKey)) == nil
}

// settleInPlace moves a settled record left in the owed file (see
// moveDelivered) to the delivered record's place, unless a delivered
// record is there already (an error that is fs.ErrExist) or there is no
// owed file (fs.ErrNotExist).
func (w *fileWriter) settleInPlace(owedKey, recordKey string) error {
	return w.rename(w.fs.Filename(owedKey), w.fs.Filename(recordKey))
}

// replace renames from's file over to's, which it replaces (see
// Ledger.clearOwed: a record a crash cut short).
func (w *fileWriter) replace(fromKey, toKey string) error {
	return os.Rename(w.fs.Filename(fromKey), w.fs.Filename(toKey))
}

// exists reports whether key's file is there.
func (w *fileWriter) exists(key string) bool { return isThere(w.fs.Filename(key)) }

// rename renames from to to, unless to exists (an error that is
// fs.ErrExist: a delivered record is never replaced this way), making to's
// directory when needed.
func (w *fileWriter) rename(from, to string) error {
	made, _ := w.dirs.LoadOrStore(filepath.Dir(to), new(atomic.Bool))
	err := renameNoReplace(from, to)
	// "Not there" is from missing, or to's directory: made once already,
	// it was removed since (by hand) when from is there.
	if errors.Is(err, fs.ErrNotExist) && (!made.(*atomic.Bool).Load() || isThere(from)) {
		if err = os.MkdirAll(filepath.Dir(to), 0o700); err == nil {
			made.(*atomic.Bool).Store(true)
			err = renameNoReplace(from, to)
		}
	}
	return err
}

func isThere(name string) bool {
	_, err := os.Lstat(name)
	return err == nil
}

// renameUnlessThere is renameNoReplace in two steps (a stat, then a rename
// that would replace a file made in between).
func renameUnlessThere(from, to string) error {
	return renameUnlessThereWith(os.Lstat, from, to)
}

// renameUnlessThereWith is renameUnlessThere with the stat given (the tests
// give failing ones). Only a stat that says to is not there lets the
// rename, which replaces, go ahead: one that failed otherwise (EIO, ESTALE)
// tells nothing, and a delivered record must never be replaced.
func renameUnlessThereWith(lstat func(string) (os.FileInfo, error), from, to string) error {
	_, err := lstat(to)
	switch {
	case err == nil:
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: fs.ErrExist}
	case !errors.Is(err, fs.ErrNotExist):
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return os.Rename(from, to)
}

// storeSynced writes value under key and returns once the file and its
// directory are synced; concurrent writes share the directory syncs.
func (w *fileWriter) storeSynced(ctx context.Context, key string, value []byte) error {
	j, err := w.writeNew(key, value)
	if errors.Is(err, fs.ErrExist) {
		j, err = w.writeTemp(key, value)
	}
	if err != nil {
		return err
	}
	j.done = make(chan error, 1)
	w.batch.Add(j)
	return awaitCommit(ctx, j.done, "the disk")
}

// awaitCommit waits for a queued write's batch to be committed, or ctx. A
// hung disk (a stuck fsync on NFS or a failing drive) must not hold a
// completion, and the payment's locks, beyond its timeout: the caller keeps
// the record in memory and writes it again later.
func awaitCommit(ctx context.Context, done <-chan error, what string) error {
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s to sync: %w", what, ctx.Err())
	}
}

// storeLazy writes value under key in place, without a temporary file and
// without syncing: after a crash the file may be missing, empty or cut
// short, which Ledger.Load reads as no record. Only for what the guard can
// do without: see Ledger.Load.
func (w *fileWriter) storeLazy(key string, value []byte) error {
	final := w.fs.Filename(key)
	f, err := w.open(final, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err == nil {
		_, err = f.Write(value)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", final, err)
	}
	return nil
}

// writeNew writes value to key's file, which must not exist yet (else an
// error that is fs.ErrExist).
func (w *fileWriter) writeNew(key string, value []byte) (*commitJob, error) {
	final := w.fs.Filename(key)
	f, err := w.create(final)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(value); err != nil {
		f.Close()
		os.Remove(final)
		return nil, fmt.Errorf("writing %s: %w", final, err)
	}
	return &commitJob{f: f, final: final}, nil
}

// writeTemp writes value to a new temporary file beside key's file. Its name
// ends in .tmp, never in .json, so listings of records skip it.
func (w *fileWriter) writeTemp(key string, value []byte) (*commitJob, error) {
	final := w.fs.Filename(key)
	tmp := fmt.Sprintf("%s.%d-%s.tmp", final, w.seq.Add(1), newToken()[:8])
	f, err := w.create(tmp)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(value); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("writing %s: %w", tmp, err)
	}
	return &commitJob{f: f, tmp: tmp, final: final}, nil
}

// create creates name exclusively, and its directory when needed.
func (w *fileWriter) create(name string) (*os.File, error) {
	return w.open(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
}

// open opens name for writing with flag, making its directory when needed.
func (w *fileWriter) open(name string, flag int) (*os.File, error) {
	made, _ := w.dirs.LoadOrStore(filepath.Dir(name), new(atomic.Bool))
	return openMakingDir(name, flag, made.(*atomic.Bool))
}

// commit makes one batch durable: fsync every file, rename those written
// aside into place, fsync every directory once. A job whose step fails gets the error;
// a directory sync that fails fails every job in that directory.
func (w *fileWriter) commit(batch []*commitJob) {
	errs := make([]error, len(batch))
	for i, j := range batch {
		errs[i] = j.f.Sync()
		if err := j.f.Close(); errs[i] == nil {
			errs[i] = err
		}
	}
	dirs := map[string]error{}
	for i, j := range batch {
		if errs[i] == nil && j.tmp != "" {
			errs[i] = os.Rename(j.tmp, j.final)
		}
		if errs[i] != nil {
			if j.tmp != "" {
				os.Remove(j.tmp)
			}
			continue
		}
		dirs[filepath.Dir(j.final)] = nil
	}
	for dir := range dirs {
		dirs[dir] = seglog.SyncDir(dir)
		w.syncs.Add(1)
	}
	for i, j := range batch {
		err := errs[i]
		if err == nil {
			err = dirs[filepath.Dir(j.final)]
		}
		if err != nil {
			err = fmt.Errorf("writing %s durably: %w", j.final, err)
		}
		j.done <- err
	}
}
