//go:build unix

package ledger

import (
	"os"
	"syscall"
)

// openFile is os.OpenFile(name, flag, 0o600) for the ledger's regular files,
// in two system calls instead of six: os.OpenFile offers every file it opens
// to the network poller, which costs four fcntl(2) and an epoll_ctl(2) that a
// regular file refuses; os.NewFile leaves the file out of the poller (one
// fcntl to look). The files are read and written blocking either way.
func openFile(name string, flag int) (*os.File, error) {
	for {
		fd, err := syscall.Open(name, flag|syscall.O_CLOEXEC, 0o600)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: name, Err: err}
		}
		return os.NewFile(uintptr(fd), name), nil
	}
}
