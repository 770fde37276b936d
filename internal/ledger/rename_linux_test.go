//go:build linux

package ledger

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Where renameat2 fails for a reason of its own (no RENAME_NOREPLACE on the
// file system, an old kernel, a seccomp filter that predates it, a FUSE
// file system), the move still happens, and an existing target is still
// never replaced.
func TestRenameNoReplaceWithoutRenameat2(t *testing.T) {
	for _, errno := range []unix.Errno{unix.EINVAL, unix.ENOSYS, unix.EPERM, unix.EOPNOTSUPP} {
		t.Run(errno.Error(), func(t *testing.T) {
			failing := func(from, to string) error { return errno }
			dir := t.TempDir()
			from, to := filepath.Join(dir, "from"), filepath.Join(dir, "to")
			require.NoError(t, os.WriteFile(from, []byte("record"), 0o600))

			require.NoError(t, renameNoReplaceWith(failing, from, to))
			data, err := os.ReadFile(to)
			require.NoError(t, err)
			assert.Equal(t, "record", string(data))

			require.NoError(t, os.WriteFile(from, []byte("another"), 0o600))
			err = renameNoReplaceWith(failing, from, to)
			assert.ErrorIs(t, err, fs.ErrExist)
			data, err = os.ReadFile(to)
			require.NoError(t, err)
			assert.Equal(t, "record", string(data), "not replaced")
		})
	}
}

// renameat2's own answers are final: an existing target, a missing source;
// an interrupted call is made again.
func TestRenameNoReplaceAnswers(t *testing.T) {
	dir := t.TempDir()
	from, to := filepath.Join(dir, "from"), filepath.Join(dir, "to")
	require.NoError(t, os.WriteFile(from, []byte("a"), 0o600))
	require.NoError(t, os.WriteFile(to, []byte("b"), 0o600))
	assert.ErrorIs(t, renameNoReplace(from, to), fs.ErrExist)
	assert.ErrorIs(t, renameNoReplace(filepath.Join(dir, "missing"), filepath.Join(dir, "c")), fs.ErrNotExist)

	calls := 0
	interrupted := func(from, to string) error {
		if calls++; calls == 1 {
			return unix.EINTR
		}
		return renameat2NoReplace(from, to)
	}
	require.NoError(t, renameNoReplaceWith(interrupted, from, filepath.Join(dir, "c")))
	assert.Equal(t, 2, calls)
}
