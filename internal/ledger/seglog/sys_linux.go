//go:build linux

package seglog

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// preallocate reserves n bytes of f from off (the file's size grows with
// them); errors.ErrUnsupported where the file system cannot.
func preallocate(f *os.File, off, n int64) error {
	err := retry(func() error { return unix.Fallocate(int(f.Fd()), 0, off, n) })
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return errors.ErrUnsupported
	}
	return err
}

func datasync(f *os.File) error { return retry(func() error { return unix.Fdatasync(int(f.Fd())) }) }

// lockFile takes an flock on f, held until f is closed.
func lockFile(f *os.File) error {
	return retry(func() error { return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) })
}

// retry calls a system call again when a signal interrupted it (network and
// FUSE file systems return EINTR; os.File's methods retry, raw calls must).
func retry(call func() error) error {
	for {
		if err := call(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// Free reports whether nobody holds f's segment: its writer finished it or
// died (a live writer, or a compaction, holds an flock on it).
func Free(f *os.File) bool {
	if retry(func() error { return unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB) }) != nil {
		return false
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return true
}

// Hold takes f's segment for a compaction, if nobody holds it: an flock
// held until f is closed.
func Hold(f *os.File) bool { return lockFile(f) == nil }

// Supported: segments can be shared between processes here (flock).
const Supported = true

// Links is a file's number of names.
func Links(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}

// Inode is a file's inode number.
func Inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}
