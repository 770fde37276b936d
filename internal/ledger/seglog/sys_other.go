//go:build !linux

package seglog

import (
	"errors"
	"os"
)

func preallocate(*os.File, int64, int64) error { return errors.ErrUnsupported }

func datasync(f *os.File) error { return f.Sync() }

func lockFile(*os.File) error { return nil }

// Free reports whether nobody holds f's segment; without flock, never.
func Free(*os.File) bool { return false }

// Hold takes f's segment for a compaction; without flock, never.
func Hold(*os.File) bool { return false }

// Supported: segments can be shared between processes here (flock).
const Supported = false

// Links is a file's number of names (not known here: one).
func Links(os.FileInfo) uint64 { return 1 }

// Inode is a file's inode number (not known here: 0).
func Inode(os.FileInfo) uint64 { return 0 }
