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
// no directory change for its lock; and the kernel drops a lock the moment
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
// the one lock that holds it.
var flockSlots = struct {
	sync.Mutex
	m map[string]chan struct{}
}{m: map[string]chan struct{}{}}

func flockSlot(path string) chan struct{} {
	flockSlots.Lock()
	defer flockSlots.Unlock()
	s, ok := flockSlots.m[path]
	if !ok {
		s = make(chan struct{}, 1)
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
	case slot <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	f, err := l.open(path)
	if err != nil {
		<-slot
		return nil, err
	}
	// Held by another process: poll, as certmagic's locks do.
	return release(f, slot, poll(ctx, func() (bool, error) { return flockNB(f) }))
}

func (l *flockLocker) tryLock(name string) (func(), error) {
	path := l.path(name)
	slot := flockSlot(path)
	select {
	case slot <- struct{}{}:
	default:
		return nil, nil // held in this process
	}
	f, err := l.open(path)
	if err != nil {
		<-slot
		return nil, err
	}
	held, err := flockNB(f)
	if err == nil && !held {
		f.Close()
		<-slot
		return nil, nil // held by another process
	}
	return release(f, slot, err)
}

// release returns the unlock of a lock held on f, or, with err, frees f
// and the slot and returns err.
func release(f *os.File, slot chan struct{}, err error) (func(), error) {
	if err != nil {
		f.Close()
		<-slot
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			f.Close() // drops the flock
			<-slot
		})
	}, nil
}

// open opens (creating it the first time) the lock file at path.
func (l *flockLocker) open(path string) (*os.File, error) {
	return openMakingDir(path, os.O_RDWR|os.O_CREATE, &l.made)
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
