package ledger

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// pathLocker is a lock by name for Caddy's file_system storage, shared by
// every instance (process) using the same storage directory: newFileLocker
// returns flockLocker on Unix and lockFiles elsewhere.
type pathLocker interface {
	// lock waits until name is free or ctx is done.
	lock(ctx context.Context, name string) (func(), error)
	// tryLock takes name if it is free; it returns nil, nil when someone
	// else holds it.
	tryLock(name string) (func(), error)
}

// lockFiles is the per-payment lock for Caddy's file_system storage where
// flock(2) is not available: one lock file per held lock.
//
// certmagic's FileStorage lock keeps a lock file fresh from a goroutine that
// outlives the unlock by up to five seconds and refreshes whatever file is at
// that path, whoever owns it. With locks taken and released as often as one
// per payment step, a surviving instance's leftover goroutine keeps the lock
// of an instance that died holding it fresh forever, and the payment is
// never redelivered. This lock names its owner: only the owner refreshes or
// removes it, and a lock whose owner stopped refreshing expires.
type lockFiles struct {
	dir string
	ttl time.Duration
	// made: dir is known to exist (it is made again if removed).
	made atomic.Bool
}

// lockFile is the content of a lock file.
type lockFile struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

const (
	fileLockTTL  = 10 * time.Second
	fileLockPoll = 20 * time.Millisecond
)

func newLockFiles(storageRoot string) *lockFiles {
	return &lockFiles{dir: filepath.Join(storageRoot, "locks", "pi_guard"), ttl: fileLockTTL}
}

// lock waits until name is free or ctx is done.
func (l *lockFiles) lock(ctx context.Context, name string) (func(), error) {
	var unlock func()
	err := poll(ctx, func() (bool, error) {
		var err error
		unlock, err = l.tryLock(name)
		return unlock != nil, err
	})
	return unlock, err
}

// poll calls try until it reports true or fails, or ctx is done, waiting
// fileLockPoll between tries and twice as long each time, at most 250 ms
// (as certmagic's locks poll).
func poll(ctx context.Context, try func() (bool, error)) error {
	wait := fileLockPoll
	for {
		if ok, err := try(); err != nil || ok {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(wait*2, 250*time.Millisecond)
	}
}

// openMakingDir opens name with flag (permissions 0600), making its
// directory first unless made says it exists, and again if the directory
// was removed behind made's back.
func openMakingDir(name string, flag int, made *atomic.Bool) (*os.File, error) {
	dir := filepath.Dir(name)
	if !made.Load() {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		made.Store(true)
	}
	f, err := openFile(name, flag)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(dir, 0o700); err == nil {
			f, err = openFile(name, flag)
		}
	}
	return f, err
}

// tryLock takes name if it is free (or its owner let it expire); it returns
// nil, nil when someone else holds it.
func (l *lockFiles) tryLock(name string) (func(), error) {
	path := filepath.Join(l.dir, safeName(name)+".lock")
	token := newToken()
	for attempt := 0; attempt < 2; attempt++ {
		f, err := openMakingDir(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, &l.made)
		if err == nil {
			expires := time.Now().Add(l.ttl)
			data, _ := json.Marshal(lockFile{Token: token, Expires: expires})
			_, err = f.Write(data)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(path)
				return nil, err
			}
			return l.hold(path, token, expires), nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		held, ok := readLock(path)
		if ok && time.Now().Before(held.Expires) {
			return nil, nil
		}
		if !ok {
			// Being written right now, or left half-written by a crash: the
			// latter is stale once the file is older than a whole ttl.
			if info, err := os.Stat(path); err != nil || time.Since(info.ModTime()) < l.ttl {
				return nil, nil
			}
		}
		os.Remove(path) // expired: its owner is gone
	}
	return nil, nil
}

// hold keeps the lock fresh until the returned unlock is called: a timer
// rewrites it every ttl/3 (no goroutine waits in between).
//
// Unlock removes the file without reading it back while the lock is
// certainly still ours: no other instance takes a lock before it expires,
// and the last expiry this holder wrote is more than ttl/2 away. Otherwise
// (a refresh failed, or the holder was stalled) it removes the file only if
// it still holds this holder's token.
func (l *lockFiles) hold(path, token string, expires time.Time) func() {
	h := &heldLock{path: path, token: token, expires: expires, ttl: l.ttl}
	h.mu.Lock()
	h.timer = time.AfterFunc(l.ttl/3, h.refresh)
	h.mu.Unlock()
	return h.unlock
}

// heldLock is one lock file this process holds.
type heldLock struct {
	path, token string
	ttl         time.Duration

	mu       sync.Mutex // held by refresh and unlock: they never overlap
	timer    *time.Timer
	expires  time.Time // the expiry in the file, as this holder last wrote it
	released bool
}

func (h *heldLock) refresh() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.released {
		return
	}
	if held, ok := readLock(h.path); !ok || held.Token != h.token {
		return // no longer ours: never refresh someone else's lock
	}
	expires := time.Now().Add(h.ttl)
	if writeLock(h.path, lockFile{Token: h.token, Expires: expires}) == nil {
		h.expires = expires
	}
	h.timer.Reset(h.ttl / 3)
}

func (h *heldLock) unlock() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.released {
		return
	}
	h.released = true
	h.timer.Stop()
	if time.Until(h.expires) > h.ttl/2 {
		os.Remove(h.path)
		return
	}
	if held, ok := readLock(h.path); ok && held.Token == h.token {
		os.Remove(h.path)
	}
}

func readLock(path string) (lockFile, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return lockFile{}, false
	}
	var lf lockFile
	if json.Unmarshal(data, &lf) != nil || lf.Token == "" {
		return lockFile{}, false
	}
	return lf, true
}

// writeLock replaces the lock file atomically (write, then rename).
func writeLock(path string, lf lockFile) error {
	tmp := path + "." + newToken() + ".tmp"
	data, _ := json.Marshal(lf)
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// safeName turns a lock name (prefix/locks/<id>) into a file name.
func safeName(name string) string {
	out := []byte(name)
	for i, c := range out {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			out[i] = '_'
		}
	}
	return string(out)
}
