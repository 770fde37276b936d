//go:build linux

package ledger

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// renameNoReplace renames from to to unless to exists (an error that is
// fs.ErrExist), in one system call: renameat2(2) with RENAME_NOREPLACE, where
// os.Rename first stats to.
func renameNoReplace(from, to string) error {
	return renameNoReplaceWith(renameat2NoReplace, from, to)
}

func renameat2NoReplace(from, to string) error {
	return unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
}

// renameNoReplaceWith is renameNoReplace with the system call given (the
// tests give failing ones). Only the answers renameat2 alone can be trusted
// with end there: done, to exists, from (or to's directory) is missing. Any
// other error goes to the Lstat and os.Rename (renameat on amd64), which
// decides: file systems without RENAME_NOREPLACE answer EINVAL, kernels
// before 3.15 ENOSYS, seccomp filters written before renameat2 existed EPERM
// (Docker's default for a system call it does not list), some FUSE and
// network file systems EOPNOTSUPP; a real failure (EACCES, EXDEV, EIO)
// comes back from os.Rename as it would have.
func renameNoReplaceWith(renameat2 func(from, to string) error, from, to string) error {
	for {
		err := renameat2(from, to)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOENT):
			return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
		}
		return renameUnlessThere(from, to)
	}
}
