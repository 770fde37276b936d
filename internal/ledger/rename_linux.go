//go:build linux

package ledger

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// renameNoReplace renames from to to unless to exists (an error that is
// fs.ErrExist), in one system call: renameat2(2) with RENAME_NOREPLACE, where
// os.Rename first stats to. File systems without it get the Lstat and
// os.Rename.
func renameNoReplace(from, to string) error {
	for {
		err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS):
			return renameUnlessThere(from, to)
		}
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
}
