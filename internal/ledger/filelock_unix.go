//go:build unix

package ledger

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// newFileLocker returns the lock for file_system storage rooted at
// storageRoot: flock(2) on Unix.
func newFileLocker(storageRoot string) pathLocker { return newFlockLocker(storageRoot) }

// flockLocker locks by name with flock(2) on a file under
// <root>/locks/pi_guard/. A payment's lock ("<prefix>/locks/<id>") is one
// of lockStripes stripe files, chosen by a hash of its name; any other name
// (the reconciler's) has a file of its own.
//
// Compared with one lock file per lock (lockFiles, the fallback where there
// is no flock), a lock creates and removes no file, so a completion makes
// no directory change for its lock, and the stripe file stays open for the
// next lock on it, so a lock is one flock(2) and no open(2); and the kernel drops a lock the moment
// its process dies, so a kill -9 leaves nothing stale to expire and no
// takeover to race. Two payments on one stripe wait for each other; with
// 1024 stripes that is rare, and short.
//
// flock locks exclude each other between processes on a local file system,
// and through the NFS lock manager on NFS, where they are POSIX locks, owned
// by the process rather than the open file. So within a process a file is
// held by one lock at a time (slots, shared by every handler of the
// process), which gives the same exclusion on both.
type flockLocker struct {
	dir  string
	made atomic.Bool // dir is known to exist
}

// lockStripes is the number of stripe files payment locks are spread over.
const lockStripes = 1024

func newFlockLocker(storageRoot string) *flockLocker {
	return &flockLocker{dir: filepath.Join(storageRoot, "locks", "pi_guard")}
}

// flockSlots holds, for every lock file of the process, the slot taken by
// the one lock that holds it, and the file kept open between locks.
var flockSlots = struct {
	sync.Mutex
	m    map[string]*flockSlotT
	open int // files kept open, at most maxOpenLockFiles
}{m: map[string]*flockSlotT{}}

// maxOpenLockFiles bounds the lock files kept open by the process: past
// it, a lock opens and closes its file as it goes.
const maxOpenLockFiles = 1100

// flockSlotT is one lock file's slot: whoever holds the slot holds f (when
// it is open) and may flock it.
type flockSlotT struct {
	held chan struct{}
	f    *os.File // kept open between locks; nil: open it for each lock
}

func flockSlot(path string) *flockSlotT {
	flockSlots.Lock()
	defer flockSlots.Unlock()
	s, ok := flockSlots.m[path]
	if !ok {
		s = &flockSlotT{held: make(chan struct{}, 1)}
		flockSlots.m[path] = s
	}
	return s
}

// path is the file that name's lock is taken on.
func (l *flockLocker) path(name string) string {
	if strings.Contains(name, "/locks/") {
		h := fnv.New32a()
		h.Write([]byte(name))
		return filepath.Join(l.dir, fmt.Sprintf("stripe-%04d.flock", h.Sum32()%lockStripes))
	}
	return filepath.Join(l.dir, safeName(name)+".flock")
}

func (l *flockLocker) lock(ctx context.Context, name string) (func(), error) {
	path := l.path(name)
	slot := flockSlot(path)
	select {
	case slot.held <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	f, err := l.file(slot, path)
	if err != nil {
		<-slot.held
		return nil, err
	}
	// Held by another process: poll, as certmagic's locks do.
	return release(slot, f, poll(ctx, func() (bool, error) { return flockNB(f) }))
}

func (l *flockLocker) tryLock(name string) (func(), error) {
	path := l.path(name)
	slot := flockSlot(path)
	select {
	case slot.held <- struct{}{}:
	default:
		return nil, nil // held in this process
	}
	f, err := l.file(slot, path)
	if err != nil {
		<-slot.held
		return nil, err
	}
	held, err := flockNB(f)
	if err == nil && !held {
		unlockFile(slot, f, false)
		return nil, nil // held by another process
	}
	return release(slot, f, err)
}

// file returns the open lock file of the slot, whose holder the caller is,
// opening (and creating, the first time) the file at path when it is not
// open. The file stays open for the next lock, up to maxOpenLockFiles in
// the process: a lock then costs one flock(2) and no open(2), with the same
// exclusion (a flock belongs to the open file, and the slot lets one lock
// of the process use the file at a time).
func (l *flockLocker) file(slot *flockSlotT, path string) (*os.File, error) {
	if slot.f != nil {
		return slot.f, nil
	}
	f, err := openMakingDir(path, os.O_RDWR|os.O_CREATE, &l.made)
	if err != nil {
		return nil, err
	}
	flockSlots.Lock()
	if flockSlots.open < maxOpenLockFiles {
		flockSlots.open++
		slot.f = f
	}
	flockSlots.Unlock()
	return f, nil
}

// release returns the unlock of a lock held on f, the slot's file, or,
// with err, frees f and the slot and returns err.
func release(slot *flockSlotT, f *os.File, err error) (func(), error) {
	if err != nil {
		unlockFile(slot, f, false)
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { unlockFile(slot, f, true) }) }, nil
}

// unlockFile drops the flock on f (when locked), closes f unless the slot
// keeps it open, and frees the slot.
func unlockFile(slot *flockSlotT, f *os.File, locked bool) {
	if slot.f != f {
		f.Close() // not kept: closing it drops the lock
	} else if locked {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_UN); err != nil {
			// Closing the file drops the lock whatever went wrong.
			f.Close()
			slot.f = nil
			flockSlots.Lock()
			flockSlots.open--
			flockSlots.Unlock()
		}
	}
	<-slot.held
}

// flockNB takes an exclusive flock on f without waiting: false when another
// open file holds it.
func flockNB(f *os.File) (bool, error) {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, syscall.EWOULDBLOCK):
			return false, nil
		case errors.Is(err, syscall.EINTR):
			continue
		default:
			return false, fmt.Errorf("flock %s: %w", f.Name(), err)
		}
	}
}

// Interface guards.
var (
	_ pathLocker = (*flockLocker)(nil)
	_ pathLocker = (*lockFiles)(nil)
)
