//go:build !unix

package ledger

// newFileLocker returns the lock for file_system storage rooted at
// storageRoot: lock files where there is no flock(2).
func newFileLocker(storageRoot string) pathLocker { return newLockFiles(storageRoot) }

// Interface guards.
var _ pathLocker = (*lockFiles)(nil)
