package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger/seglog"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddyserver/certmagic"
)

// Ledger keeps records in Caddy storage, under prefix:
//
//	<prefix>/owed/<id>.json      the record while its delivery is pending or exhausted
//	<prefix>/payments/<id>.json  the record once the app accepted the payment
//	<prefix>/locks/<id>          cross-instance lock name
//
// A completion is one durable write (to owed/) before anything is
// forwarded; the worker lists owed/ to find what is due. Once the app has
// the payment, the record moves to payments/; with file_system storage that
// write is not synced (see Save). A record whose write failed
// (disk full, read-only storage) is kept in memory instead, where load and
// owed find it, until a later save succeeds (see unsavedRecords).
type Ledger struct {
	s      certmagic.Storage
	prefix string
	// files replaces the storage's own lock for file_system storage (see
	// pathLocker); nil for other storage modules.
	files pathLocker
	// unsaved holds the records this process could not write; shared by
	// every store of the process over the same storage and prefix, so a
	// config reload keeps them.
	unsaved *unsavedRecords
	// w replaces the storage's Store for file_system storage (see
	// fileWriter); nil for other storage modules, and for a file_system
	// storage wrapped by another module, whose Store is used as it is.
	w *fileWriter
	// expiry lists delivered records for the retention sweep, with w;
	// else nil. expirySpan is the span of the files this store starts
	// (see expirySpan): its handler's, set at provisioning, so that a
	// config that never loads changes nothing in the shared log.
	expiry     *expiryLog
	expirySpan time.Duration
	// journalOffLogged: the redelivery worker logged that the journal
	// failed (once per store, so once per config load).
	journalOffLogged atomic.Bool
	// seg keeps new records in segments (LayoutSegments, file_system
	// storage on Linux); nil: a file per payment. Files of the other
	// layout are still read (see Load).
	seg *segStore
}

// Record layouts of file_system storage (other storage modules keep a key
// per payment whatever the layout).
const (
	// LayoutSegments appends records to segment files, a few per instance
	// (<prefix>/log/, docs/segment-store.md): the default where flock is.
	LayoutSegments = "segments"
	// LayoutFiles keeps a file per payment (owed/, payments/): the layout
	// of earlier versions, for a cluster that still runs one.
	LayoutFiles = "files"
)

// New returns a ledger over s under prefix, in the default layout.
func New(s certmagic.Storage, prefix string) *Ledger { return NewLayout(s, prefix, "") }

// NewLayout returns a ledger over s under prefix with its records in
// layout (LayoutSegments, LayoutFiles, or "" for the default).
func NewLayout(s certmagic.Storage, prefix, layout string) *Ledger {
	st := &Ledger{s: s, prefix: prefix, unsaved: unsavedFor(s, prefix)}
	fs, ok := s.(*certmagic.FileStorage)
	if ok && seglog.Supported && layout != LayoutFiles {
		st.seg = segStoreFor(fs.Filename(path.Join(prefix, "log")))
	}
	if ok {
		st.w = newFileWriter(fs)
		st.w.journal = journalFor(fs.Filename(path.Join(prefix, "journal")))
		st.expiry = expiryLogFor(fs.Filename(st.expiryDir()))
		st.expirySpan = expirySpan(DefaultRetention)
	}
	if w, wraps := s.(interface{ Unwrap() certmagic.Storage }); !ok && wraps {
		fs, ok = w.Unwrap().(*certmagic.FileStorage)
	}
	if ok {
		st.files = newFileLocker(fs.Path)
	}
	return st
}

// CheckLayout refuses the files layout over file_system storage whose
// log/ holds segments (written in the segments layout): the files layout
// does not read them, and their owed records would never be delivered.
func (st *Ledger) CheckLayout() error {
	if st.seg != nil || st.w == nil {
		return nil
	}
	dir := st.w.fs.Filename(path.Join(st.prefix, "log"))
	if segs, _ := filepath.Glob(filepath.Join(dir, "*.seg")); len(segs) > 0 {
		return fmt.Errorf("%s holds %d segment files of the segments layout, which the files layout does not read: "+
			"remove record_layout files (segments read both layouts' records)", dir, len(segs))
	}
	return nil
}

// Prefix is the storage prefix the ledger keeps its files under.
func (st *Ledger) Prefix() string { return st.prefix }

// ID names the ledger's storage and prefix: two ledgers with the same ID
// share their records.
func (st *Ledger) ID() string { return storageID(st.s) + "\x00" + st.prefix }

// SetRetention sets how long delivered records are kept, which sizes the
// expiry files this ledger starts (see expirySpan).
func (st *Ledger) SetRetention(d time.Duration) { st.expirySpan = expirySpan(d) }

// Close releases what the ledger holds open (its expiry file). Records
// stay, and a ledger for the same storage may be made again.
func (st *Ledger) Close() {
	if st.expiry != nil {
		st.expiry.close()
	}
}

// DetachedLocks reports whether a payment's lock outlives the context it
// was taken with (file_system storage's flock): the caller may then finish
// work in the background before unlocking. Other storage modules may keep
// their lock fresh only while that context lives.
func (st *Ledger) DetachedLocks() bool { return st.files != nil }

// JournalFailure returns, once per ledger, the error that turned the
// journal off (each completion is then synced on its own); nil when the
// journal works, is not used, or its failure was already returned.
func (st *Ledger) JournalFailure() error {
	if st.w == nil || st.journalOffLogged.Load() {
		return nil
	}
	if err := st.w.journal.failure(); err != nil && !st.journalOffLogged.Swap(true) {
		return err
	}
	return nil
}

// Recover writes back the records journalled by an instance that stopped
// before it wrote them durably; it returns how many it restored. The
// redelivery pass calls it on every pass.
func (st *Ledger) Recover(ctx context.Context) (int, error) { return st.recoverJournal(ctx) }

// Unsaved maps each record this process keeps in memory, because its write
// failed, to whether its delivery is owed.
func (st *Ledger) Unsaved() map[string]bool { return st.unsaved.states() }

// SaveResolved keeps an operator's resolution of a payment (the admin
// API's resolve) at <prefix>/resolved/<id>.json.
func (st *Ledger) SaveResolved(ctx context.Context, id string, data []byte) error {
	return st.s.Store(ctx, path.Join(st.prefix, "resolved", id+".json"), data)
}

// TryLockReconciler takes the cluster-wide reconciler lock if it is free.
func (st *Ledger) TryLockReconciler(ctx context.Context) (func(), bool) {
	return st.tryLockName(ctx, path.Join(st.prefix, "reconciler"), time.Second)
}

// RecordKey is where a delivered payment's record is kept in storage.
func (st *Ledger) RecordKey(id string) string { return path.Join(st.prefix, "payments", id+".json") }

// OwedKey is where an owed payment's record is kept in storage.
func (st *Ledger) OwedKey(id string) string  { return path.Join(st.prefix, "owed", id+".json") }
func (st *Ledger) lockName(id string) string { return path.Join(st.prefix, "locks", id) }
func (st *Ledger) expiryDir() string         { return path.Join(st.prefix, "expiry") }

// Load returns the payment's record, or nil when there is none. A record
// kept in memory is newer than any written one; of the written ones, a
// settled record wins over an owed one (both exist only if a crash came
// between writing the first and deleting the second).
//
// With file_system storage a written record that does not parse counts as
// missing: a settled record is written without a sync, so a crash can leave
// it empty or cut short (the owed one, if its removal was lost too, or Pi
// decides); a new owed record is created in place and synced before
// anything is forwarded on it, so one a crash cut short was never acted on
// (Pi decides again). Other storage modules write whole records: a broken
// one is an error.
func (st *Ledger) Load(ctx context.Context, id string) (*Record, error) {
	if data, ok := st.unsaved.get(id); ok {
		var rec Record
		if err := json.Unmarshal(data, &rec); err != nil {
			return nil, fmt.Errorf("record of payment %s is corrupt: %w", id, err)
		}
		rec.Unsaved = true
		return &rec, nil
	}
	if st.seg != nil {
		if rec, err := st.seg.load(id); rec != nil || err != nil {
			return rec, err
		}
		if !st.seg.legacyFiles(st.w.fs.Filename(st.prefix)) {
			return nil, nil
		}
	}
	for _, key := range []string{st.RecordKey(id), st.OwedKey(id)} {
		data, err := st.s.Load(ctx, key)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("loading the record of payment %s: %w", id, err)
		}
		var rec Record
		if err := json.Unmarshal(data, &rec); err != nil {
			if st.w != nil {
				continue // cut short by a crash before its write returned
			}
			return nil, fmt.Errorf("record of payment %s is corrupt: %w", id, err)
		}
		return &rec, nil
	}
	return nil, nil
}

// Save writes rec where its delivery state puts it: an owed record (pending
// or exhausted) in one write to owed/; a delivered one to payments/, then
// its owed copy is removed. When the write fails, the record is kept in
// memory (rec.Unsaved), still listed, loaded and redelivered, and the error
// says so; the redelivery worker tries to write it again on every pass.
func (st *Ledger) Save(ctx context.Context, rec *Record) error {
	now := time.Now().UTC()
	if rec.Created.IsZero() {
		rec.Created = now
	}
	rec.Updated = now
	rec.Version++
	data, err := marshalRecord(rec)
	if err != nil {
		return err
	}
	if err := st.write(ctx, rec, data); err != nil {
		st.unsaved.keep(rec.PaymentID, data, rec.Owed())
		rec.Unsaved = true
		return fmt.Errorf("%w (kept in memory until storage accepts it)", err)
	}
	st.unsaved.drop(rec.PaymentID)
	rec.Unsaved = false
	return nil
}

// write stores an owed record durably (with file_system storage through the
// group-commit writer: on disk, directory included, before write returns;
// concurrent writes share the syncs) and a delivered one without a sync:
// losing that to a crash costs at most an idempotent redelivery (the owed
// record is still there) or a fresh read from Pi (it is not), never a
// payment. With file_system storage a delivered record whose owed file this
// process wrote and still holds open is written over it and renamed into
// payments/ (see fileWriter.moveDelivered): one file per payment, created
// once.
func (st *Ledger) write(ctx context.Context, rec *Record, data []byte) error {
	if st.seg != nil {
		if err := st.seg.save(ctx, rec, data); err != nil {
			return fmt.Errorf("saving the record of payment %s: %w", rec.PaymentID, err)
		}
		return nil
	}
	if rec.Owed() {
		if err := st.put(ctx, st.OwedKey(rec.PaymentID), data, true); err != nil {
			return fmt.Errorf("saving the record of payment %s: %w", rec.PaymentID, err)
		}
		return nil
	}
	moved := st.w != nil && st.w.moveDelivered(st.OwedKey(rec.PaymentID), st.RecordKey(rec.PaymentID), data)
	if !moved {
		if err := st.put(ctx, st.RecordKey(rec.PaymentID), data, false); err != nil {
			return fmt.Errorf("saving the record of payment %s: %w", rec.PaymentID, err)
		}
		if err := st.clearOwed(ctx, rec.PaymentID, true); err != nil {
			return err
		}
	}
	if st.expiry != nil {
		// Best effort: the retention sweep's walk finds what the log misses.
		_ = st.expiry.add(rec.PaymentID, st.expirySpan)
	}
	return nil
}

// put stores data under key: through the file writer for file_system
// storage (synced when durable), else through the storage module, whose
// Store is trusted to be durable.
func (st *Ledger) put(ctx context.Context, key string, data []byte, durable bool) error {
	if st.w != nil {
		st.w.forget(key) // any file kept open for key is no longer its
	}
	switch {
	case st.w == nil:
		return st.s.Store(ctx, key, data)
	case durable:
		return st.w.storeDurable(ctx, key, data)
	default:
		return st.w.storeLazy(key, data)
	}
}

// ClearOwed deletes the owed copy of a payment whose settled record is
// written. With file_system storage a settled record found only in owed/
// (a crash came between writing it over the owed file and renaming it,
// see fileWriter.moveDelivered) is moved to payments/ instead, and replaces
// one there that a crash cut short. The owed copy is never deleted while it
// may be the only whole record: when it cannot be moved, it is kept and
// ClearOwed fails (the redelivery worker's next pass tries again).
func (st *Ledger) ClearOwed(ctx context.Context, id string) error {
	return st.clearOwed(ctx, id, false)
}

// clearOwed is ClearOwed; justWritten says the settled record in payments/
// was written whole by this call's caller, so it need not be read again.
func (st *Ledger) clearOwed(ctx context.Context, id string, justWritten bool) error {
	// A settled record in a segment supersedes the owed file, which goes.
	has, owed := st.segCurrent(id)
	if st.w != nil && !(has && !owed) {
		owed, settled := st.OwedKey(id), st.RecordKey(id)
		st.w.forget(owed)
		err := st.w.settleInPlace(owed, settled)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, fs.ErrExist):
			if justWritten || st.whole(ctx, settled) {
				break // the owed copy goes, below
			}
			// payments/ holds a record a crash cut short: a settled owed
			// copy replaces it.
			if _, err = st.settledOwedCopy(ctx, owed); err == nil {
				err = st.w.replace(owed, settled)
			}
			if err != nil {
				return fmt.Errorf("replacing the cut-short record of payment %s in payments/ (owed copy kept): %w", id, err)
			}
			return nil
		case errors.Is(err, fs.ErrNotExist):
		case !st.w.exists(settled):
			// The move failed (payments/ on another file system, or not
			// writable): a settled owed copy is copied instead.
			data, cerr := st.settledOwedCopy(ctx, owed)
			if cerr == nil {
				cerr = st.w.storeLazy(settled, data)
			}
			if cerr != nil {
				return fmt.Errorf("moving the settled record of payment %s out of owed/ (kept there): %w; copying it: %w", id, err, cerr)
			}
		}
	}
	if err := st.s.Delete(ctx, st.OwedKey(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("clearing the owed record of payment %s: %w", id, err)
	}
	return nil
}

// readRecord returns the bytes stored at key and the record they parse to.
func (st *Ledger) readRecord(ctx context.Context, key string) ([]byte, *Record, error) {
	data, err := st.s.Load(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	var rec Record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, nil, err
	}
	return data, &rec, nil
}

// whole reports whether key holds a record that parses (Load skips one that
// does not: a write a crash cut short).
func (st *Ledger) whole(ctx context.Context, key string) bool {
	_, _, err := st.readRecord(ctx, key)
	return err == nil
}

// settledOwedCopy returns the owed copy at key owed when it is a settled
// record, whole.
func (st *Ledger) settledOwedCopy(ctx context.Context, owed string) ([]byte, error) {
	data, rec, err := st.readRecord(ctx, owed)
	if err != nil {
		return nil, err
	}
	if rec.Owed() {
		return nil, errors.New("the owed copy is not settled")
	}
	return data, nil
}

// OwedWritten reports whether payment id's owed copy is in storage (one
// stat, or one call to a networked storage): a listing of what is owed may
// be older than the delivery that removed it.
func (st *Ledger) OwedWritten(ctx context.Context, id string) bool {
	if _, owed := st.segCurrent(id); owed {
		return true
	}
	return st.s.Exists(ctx, st.OwedKey(id))
}

// segCurrent reports whether the segments hold a record of payment id,
// and whether it is owed.
func (st *Ledger) segCurrent(id string) (has, owed bool) {
	if st.seg == nil {
		return false, false
	}
	return st.seg.has(id)
}

// Owed lists the ids of payments whose delivery is pending or exhausted,
// written or kept in memory. On a listing error it still returns the ones
// in memory.
func (st *Ledger) Owed(ctx context.Context) ([]string, error) {
	dir := path.Join(st.prefix, "owed")
	var keys []string
	var err error
	for try := 0; try < 3; try++ {
		keys, err = st.s.List(ctx, dir, false)
		if errors.Is(err, fs.ErrNotExist) && !st.s.Exists(ctx, dir) {
			keys, err = nil, nil // nothing was ever owed
		}
		// file_system storage also answers "not exist" when an entry is
		// deleted while the directory is read: that is not "nothing owed",
		// so list again, and fail rather than report an empty list.
		if err == nil {
			break
		}
	}
	var segIDs []string
	if st.seg != nil {
		var serr error
		if segIDs, serr = st.seg.owed(); serr != nil {
			err = errors.Join(err, serr)
		}
	}
	mem := st.unsaved.states()
	ids := make([]string, 0, len(keys)+len(segIDs)+len(mem))
	listed := make(map[string]bool, len(segIDs))
	for _, id := range segIDs {
		if _, inMemory := mem[id]; !inMemory {
			ids = append(ids, id)
			listed[id] = true
		}
	}
	for _, k := range keys {
		base := path.Base(k)
		if id, ok := strings.CutSuffix(base, ".json"); ok && piclient.ValidatePaymentID(id) == nil && !listed[id] {
			if _, inMemory := mem[id]; !inMemory {
				ids = append(ids, id)
			}
		}
	}
	for id, owed := range mem {
		if owed {
			ids = append(ids, id)
		}
	}
	return ids, err
}

// Lock takes the cross-instance lock of a payment. Storage locks are coarse
// and may mis-synchronise; the guard's correctness never rests on them alone
// (it re-reads Pi before acting and treats "already done" as success).
func (st *Ledger) Lock(ctx context.Context, id string) (func(), error) {
	name := st.lockName(id)
	if st.files != nil {
		unlock, err := st.files.lock(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("taking the lock of payment %s: %w", id, err)
		}
		return unlock, nil
	}
	if err := st.s.Lock(ctx, name); err != nil {
		return nil, fmt.Errorf("taking the storage lock of payment %s: %w", id, err)
	}
	return func() {
		// Unlock even if the request's context is already done.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockAnswer)
		defer cancel()
		_ = st.s.Unlock(ctx, name)
	}, nil
}

// TryLock takes the lock if it is free, without waiting, where the storage
// supports that; otherwise it waits at most wait.
func (st *Ledger) TryLock(ctx context.Context, id string, wait time.Duration) (func(), bool) {
	return st.tryLockName(ctx, st.lockName(id), wait)
}

// tryLockName takes the lock name if it is free, without waiting, where the
// storage supports that; otherwise it waits at most wait.
func (st *Ledger) tryLockName(ctx context.Context, name string, wait time.Duration) (func(), bool) {
	if st.files != nil {
		unlock, err := st.files.tryLock(name)
		return unlock, err == nil && unlock != nil
	}
	if tl, ok := st.s.(certmagic.TryLocker); ok {
		// A try-lock is one answer from the storage: wait for it as long
		// as for an unlock's.
		return st.lockWithin(ctx, name, tryLockAnswer, tl.TryLock)
	}
	return st.lockWithin(ctx, name, wait, func(ctx context.Context, name string) (bool, error) {
		return true, st.s.Lock(ctx, name)
	})
}

// Bounds on the wait for a storage's answer to a try-lock and to an
// unlock: each is one answer, not a wait for another holder. Variables
// only so that a test need not wait seconds.
var (
	tryLockAnswer = 5 * time.Second
	unlockAnswer  = 5 * time.Second
)

// lockWithin takes the storage lock name with lock, waiting at most wait.
// The lock lives on a context derived from ctx that ends only at unlock (a
// storage module may keep its lock fresh only while that context lives):
// the wait is bounded by ending that context only while the lock is not
// held yet.
func (st *Ledger) lockWithin(ctx context.Context, name string, wait time.Duration,
	lock func(context.Context, string) (bool, error)) (func(), bool) {
	lctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(wait, cancel)
	got, err := lock(lctx, name)
	fired := !timer.Stop()
	unlock := func() {
		// Unlock even if ctx is already done.
		uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), unlockAnswer)
		defer ucancel()
		_ = st.s.Unlock(uctx, name)
		cancel()
	}
	switch {
	case err != nil || !got:
	case !fired:
		return unlock, true
	default: // taken as the wait ran out: its context is ending
		unlock()
	}
	cancel()
	return nil, false
}

// unsavedRecords holds, in this process, records whose last write to
// storage failed, as JSON, newest first in every lookup. They are not
// durable: a crash loses them (Pi still has the payment completed).
type unsavedRecords struct {
	mu sync.Mutex
	m  map[string]unsavedRecord
}

type unsavedRecord struct {
	data []byte
	owed bool // pending or exhausted
}

// unsavedByStore maps a storage and prefix to its unsavedRecords.
var unsavedByStore sync.Map // string → *unsavedRecords

// unsavedFor returns the process's unsaved records for s and prefix. A
// storage that names itself (FileStorage names its path) is recognised
// across config reloads.
func unsavedFor(s certmagic.Storage, prefix string) *unsavedRecords {
	u, _ := unsavedByStore.LoadOrStore(storageID(s)+"\x00"+prefix, &unsavedRecords{m: map[string]unsavedRecord{}})
	return u.(*unsavedRecords)
}

func (u *unsavedRecords) keep(id string, data []byte, owed bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.m[id] = unsavedRecord{data: data, owed: owed}
}

func (u *unsavedRecords) drop(id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.m, id)
}

func (u *unsavedRecords) get(id string) ([]byte, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	r, ok := u.m[id]
	return r.data, ok
}

// states maps each unsaved id to whether its delivery is owed.
func (u *unsavedRecords) states() map[string]bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make(map[string]bool, len(u.m))
	for id, r := range u.m {
		out[id] = r.owed
	}
	return out
}

// storageID names a storage: by what it says of itself (FileStorage names
// its path), else by its address.
func storageID(s certmagic.Storage) string {
	if str, ok := s.(fmt.Stringer); ok {
		return fmt.Sprintf("%T:%s", s, str.String())
	}
	return fmt.Sprintf("%T:%p", s, s)
}

// ForgetUnsaved drops this process's in-memory copy of id's record, as a
// crash would: tests of what survives a crash use it.
func (st *Ledger) ForgetUnsaved(id string) { st.unsaved.drop(id) }
