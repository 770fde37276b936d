//go:build linux

package ledger

import (
	"context"
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

// The two-step rename goes ahead only when the stat says the target is not
// there: a stat that failed otherwise (an I/O error on a network file
// system) must not let a pending record replace a delivered one.
func TestRenameUnlessThereNeedsToKnow(t *testing.T) {
	dir := t.TempDir()
	from, to := filepath.Join(dir, "owed"), filepath.Join(dir, "delivered")
	require.NoError(t, os.WriteFile(from, []byte("pending"), 0o600))
	require.NoError(t, os.WriteFile(to, []byte("delivered"), 0o600))
	failing := func(string) (os.FileInfo, error) { return nil, unix.EIO }

	err := renameUnlessThereWith(failing, from, to)
	assert.ErrorIs(t, err, unix.EIO)
	data, err := os.ReadFile(to)
	require.NoError(t, err)
	assert.Equal(t, "delivered", string(data), "not replaced")
	assert.FileExists(t, from)

	require.NoError(t, os.Remove(to))
	require.NoError(t, renameUnlessThereWith(os.Lstat, from, to), "a stat that finds nothing lets it go ahead")
	assert.NoFileExists(t, from)
}

// A payments/ directory removed (by hand) after this process made it is made
// again for a move, instead of the move reading as "no owed file".
func TestRenameMakesARemovedDirectoryAgain(t *testing.T) {
	fs, st := fileLedger(t)
	ctx := context.Background()
	rec := completedRecord(t)
	require.NoError(t, st.Save(ctx, rec))
	rec.Delivery.State = Delivered
	require.NoError(t, st.Save(ctx, rec)) // payments/ made, the owed file moved there
	payments := filepath.Dir(fs.Filename(st.RecordKey(rec.PaymentID)))
	require.NoError(t, os.RemoveAll(payments))

	// A crash left a settled record in owed/; clearing moves it to payments/.
	leaveSettledInOwed(t, fs, st, rec)
	require.NoError(t, st.ClearOwed(ctx, rec.PaymentID))
	got, err := st.Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	require.NotNil(t, got, "moved, not deleted")
	assert.Equal(t, Delivered, got.Delivery.State)
}
