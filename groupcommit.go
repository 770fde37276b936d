package piguard

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/certmagic"
)

// fileWriter writes records into a certmagic FileStorage's directory, in the
// storage's own layout (FileStorage.Filename), so that FileStorage's Load,
// List and Delete, and other instances sharing the directory, see them as if
// Store had written them. It replaces Store for two reasons:
//
//   - Store (certmagic v0.25.6, internal/atomicfile) syncs the temporary
//     file but never the directory after the rename, so a crash can lose
//     a record the guard believed durable. A durable write here is: write a
//     temporary file, fsync it, rename it into place, fsync the directory.
//   - Concurrent durable writes share their syncs (group commit): a writer
//     queues its written temporary file, and one committer goroutine takes
//     everything queued, fsyncs each file (the first fsync commits the file
//     system's journal for all of them), renames each, and fsyncs each
//     directory once. Every writer returns only after the batch holding its
//     record is on disk.
//
// Writes that only save work after a crash (a delivered record: losing it
// costs at most an idempotent redelivery) skip the syncs: see storeLazy.
type fileWriter struct {
	fs   *certmagic.FileStorage
	dirs sync.Map // directories known to exist
	seq  atomic.Uint64

	mu      sync.Mutex
	queue   []*commitJob
	running bool

	// syncs counts the directory syncs made, for tests and benchmarks.
	syncs atomic.Int64
}

// commitJob is one durable write waiting for its batch.
type commitJob struct {
	f          *os.File
	tmp, final string
	done       chan error
}

func newFileWriter(fs *certmagic.FileStorage) *fileWriter {
	return &fileWriter{fs: fs}
}

// storeDurable writes value under key and returns once it is on disk.
func (w *fileWriter) storeDurable(key string, value []byte) error {
	j, err := w.writeTemp(key, value)
	if err != nil {
		return err
	}
	j.done = make(chan error, 1)
	w.mu.Lock()
	w.queue = append(w.queue, j)
	if !w.running {
		w.running = true
		go w.commitLoop()
	}
	w.mu.Unlock()
	return <-j.done
}

// storeLazy writes value under key atomically (no reader ever sees a partial
// file), without syncing: after a crash the file may be missing or empty.
// Only for what the guard can do without: see store.load.
func (w *fileWriter) storeLazy(key string, value []byte) error {
	j, err := w.writeTemp(key, value)
	if err != nil {
		return err
	}
	err = j.f.Close()
	if err == nil {
		err = os.Rename(j.tmp, j.final)
	}
	if err != nil {
		os.Remove(j.tmp)
		return fmt.Errorf("writing %s: %w", j.final, err)
	}
	return nil
}

// writeTemp writes value to a new temporary file beside key's file. Its name
// ends in .tmp, never in .json, so listings of records skip it.
func (w *fileWriter) writeTemp(key string, value []byte) (*commitJob, error) {
	final := w.fs.Filename(key)
	dir := filepath.Dir(final)
	if _, ok := w.dirs.Load(dir); !ok {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		w.dirs.Store(dir, struct{}{})
	}
	tmp := fmt.Sprintf("%s.%d-%s.tmp", final, w.seq.Add(1), newToken()[:8])
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		// The directory was removed behind the cache's back: make it again.
		w.dirs.Delete(dir)
		if err = os.MkdirAll(dir, 0o700); err == nil {
			f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		}
	}
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

// commitLoop commits batches until the queue is empty.
func (w *fileWriter) commitLoop() {
	for {
		w.mu.Lock()
		batch := w.queue
		w.queue = nil
		if len(batch) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		w.commit(batch)
	}
}

// commit makes one batch durable: fsync every file, rename every file into
// place, fsync every directory once. A job whose step fails gets the error;
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
		if errs[i] == nil {
			errs[i] = os.Rename(j.tmp, j.final)
		}
		if errs[i] != nil {
			os.Remove(j.tmp)
			continue
		}
		dirs[filepath.Dir(j.final)] = nil
	}
	for dir := range dirs {
		dirs[dir] = syncDir(dir)
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

// syncDir fsyncs a directory, which makes the renames into it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
