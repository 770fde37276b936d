package piguard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// fileLocker is the per-payment lock for Caddy's file_system storage.
//
// certmagic's FileStorage lock keeps a lock file fresh from a goroutine that
// outlives the unlock by up to five seconds and refreshes whatever file is at
// that path, whoever owns it. With locks taken and released as often as one
// per payment step, a surviving instance's leftover goroutine keeps the lock
// of an instance that died holding it fresh forever, and the payment is
// never redelivered. This lock names its owner: only the owner refreshes or
// removes it, and a lock whose owner stopped refreshing expires.
type fileLocker struct {
	dir string
	ttl time.Duration
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

func newFileLocker(storageRoot string) *fileLocker {
	return &fileLocker{dir: filepath.Join(storageRoot, "locks", "pi_guard"), ttl: fileLockTTL}
}

// lock waits until name is free or ctx is done.
func (l *fileLocker) lock(ctx context.Context, name string) (func(), error) {
	wait := fileLockPoll
	for {
		unlock, err := l.tryLock(name)
		if err != nil || unlock != nil {
			return unlock, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(wait*2, 250*time.Millisecond)
	}
}

// tryLock takes name if it is free (or its owner let it expire); it returns
// nil, nil when someone else holds it.
func (l *fileLocker) tryLock(name string) (func(), error) {
	path := filepath.Join(l.dir, safeName(name)+".lock")
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return nil, err
	}
	token := newToken()
	for attempt := 0; attempt < 2; attempt++ {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			err = json.NewEncoder(f).Encode(lockFile{Token: token, Expires: time.Now().Add(l.ttl)})
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(path)
				return nil, err
			}
			return l.hold(path, token), nil
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

// hold keeps the lock fresh until the returned unlock is called.
func (l *fileLocker) hold(path, token string) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(l.ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if held, ok := readLock(path); !ok || held.Token != token {
					return // no longer ours: never refresh someone else's lock
				}
				_ = writeLock(path, lockFile{Token: token, Expires: time.Now().Add(l.ttl)})
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		if held, ok := readLock(path); ok && held.Token == token {
			os.Remove(path)
		}
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
