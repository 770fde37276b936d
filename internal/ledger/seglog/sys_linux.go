//go:build linux

package seglog

import (
	"errors"
	"os"

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
