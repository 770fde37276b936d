//go:build linux

package ledger

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/caddyserver/certmagic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func inode(t *testing.T, name string) uint64 {
	t.Helper()
	fi, err := os.Stat(name)
	require.NoError(t, err)
	return fi.Sys().(*syscall.Stat_t).Ino
}

// leaveSettledInOwed writes rec, delivered, over its owed file, as a crash
// between moveDelivered's write and its rename leaves it, and returns the
// bytes and the owed file's name.
func leaveSettledInOwed(t *testing.T, fs *certmagic.FileStorage, st *Ledger, rec *Record) (data []byte, owed string) {
	t.Helper()
	rec.Delivery.State = Delivered
	data, err := json.Marshal(rec)
	require.NoError(t, err)
	owed = fs.Filename(st.OwedKey(rec.PaymentID))
	require.NoError(t, os.WriteFile(owed, data, 0o600))
	return data, owed
}

// A delivery writes the delivered record over the owed file the completion
// created and renames it into payments/: one file per payment, created
// once, with the delivered record whole in it.
func TestDeliveryMovesTheOwedFile(t *testing.T) {
	fs, st := fileLedger(t)
	ctx := context.Background()
	rec := completedRecord(t)
	require.NoError(t, st.Save(ctx, rec))
	owed := fs.Filename(st.OwedKey(rec.PaymentID))
	created := inode(t, owed)

	rec.Delivery.State = Delivered
	require.NoError(t, st.Save(ctx, rec))
	delivered := fs.Filename(st.RecordKey(rec.PaymentID))
	assert.Equal(t, created, inode(t, delivered), "the owed file, moved: no new file")
	_, err := os.Stat(owed)
	assert.ErrorIs(t, err, os.ErrNotExist)
	data, err := os.ReadFile(delivered)
	require.NoError(t, err)
	var got Record
	require.NoError(t, json.Unmarshal(data, &got), "whole: %s", data)
	assert.Equal(t, Delivered, got.Delivery.State)
	assert.Empty(t, st.w.kept, "nothing left open")

	// A shorter delivered record leaves no tail of the owed one.
	short := completedRecord(t)
	require.NoError(t, st.Save(ctx, short))
	short.Request = nil
	short.Delivery.State = Delivered
	require.NoError(t, st.Save(ctx, short))
	data, err = os.ReadFile(fs.Filename(st.RecordKey(short.PaymentID)))
	require.NoError(t, err)
	var shorter Record
	require.NoError(t, json.Unmarshal(data, &shorter), "no tail: %s", data)
	assert.Nil(t, shorter.Request)
}

// An owed record written again (a failed delivery counts an attempt) is a
// new file: the one kept open is closed and never written over the new one.
func TestDeliveryAfterTheOwedRecordWasReplaced(t *testing.T) {
	fs, st := fileLedger(t)
	ctx := context.Background()
	rec := completedRecord(t)
	require.NoError(t, st.Save(ctx, rec))
	rec.Delivery.Attempts = 1
	require.NoError(t, st.Save(ctx, rec))
	assert.Empty(t, st.w.kept)
	rec.Delivery.State = Delivered
	require.NoError(t, st.Save(ctx, rec))
	got, err := st.Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	assert.Equal(t, Delivered, got.Delivery.State)
	assert.Equal(t, 1, got.Delivery.Attempts)
	_, err = os.Stat(fs.Filename(st.OwedKey(rec.PaymentID)))
	assert.ErrorIs(t, err, os.ErrNotExist)

	// Another process replaced the owed file behind the open one: the
	// delivery writes a new file and removes the owed one, as before.
	other := completedRecord(t)
	require.NoError(t, st.Save(ctx, other))
	owed := fs.Filename(st.OwedKey(other.PaymentID))
	pending, err := os.ReadFile(owed)
	require.NoError(t, err)
	require.NoError(t, os.Remove(owed))
	require.NoError(t, os.WriteFile(owed, pending, 0o600))
	replaced := inode(t, owed)
	other.Delivery.State = Delivered
	require.NoError(t, st.Save(ctx, other))
	got, err = st.Load(ctx, other.PaymentID)
	require.NoError(t, err)
	assert.Equal(t, Delivered, got.Delivery.State)
	assert.NotEqual(t, replaced, inode(t, fs.Filename(st.RecordKey(other.PaymentID))))
}

// A crash between writing the delivered record over the owed file and the
// rename leaves a settled record in owed/: it loads as delivered, is listed
// as owed until the redelivery pass clears it, and clearing moves it to
// payments/ instead of deleting the only copy.
func TestSettledRecordLeftInOwed(t *testing.T) {
	fs, st := fileLedger(t)
	ctx := context.Background()
	rec := completedRecord(t)
	require.NoError(t, st.Save(ctx, rec))
	leaveSettledInOwed(t, fs, st, rec)

	got, err := st.Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	assert.Equal(t, Delivered, got.Delivery.State)
	require.NoError(t, st.ClearOwed(ctx, rec.PaymentID))
	got, err = st.Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	require.NotNil(t, got, "moved, not deleted")
	assert.Equal(t, Delivered, got.Delivery.State)
	_, err = os.Stat(fs.Filename(st.RecordKey(rec.PaymentID)))
	assert.NoError(t, err)
	ids, err := st.Owed(ctx)
	require.NoError(t, err)
	assert.Empty(t, ids)
}

// When that move fails for any reason but "payments/ has one already" (here
// payments/ cannot be made: a file stands in its place), the owed copy may
// be the only one: it is kept, ClearOwed says so, and a later pass moves it.
func TestSettledRecordLeftInOwedKeptWhenItCannotMove(t *testing.T) {
	fs, st := fileLedger(t)
	ctx := context.Background()
	rec := completedRecord(t)
	require.NoError(t, st.Save(ctx, rec))
	data, owed := leaveSettledInOwed(t, fs, st, rec)
	payments := filepath.Dir(fs.Filename(st.RecordKey(rec.PaymentID)))
	require.NoError(t, os.WriteFile(payments, []byte("in the way"), 0o600))

	err := st.ClearOwed(ctx, rec.PaymentID)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "kept there")
	kept, err := os.ReadFile(owed)
	require.NoError(t, err, "the only copy is not deleted")
	assert.Equal(t, data, kept)

	require.NoError(t, os.Remove(payments))
	require.NoError(t, st.ClearOwed(ctx, rec.PaymentID))
	got, err := st.Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	require.NotNil(t, got)
	assert.Equal(t, Delivered, got.Delivery.State)
	_, err = os.Stat(owed)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// A crash can cut short the unsynced write of a delivered record to
// payments/ while its owed copy is already settled and whole (written over
// the owed file first). Clearing then replaces the cut-short record with the
// owed copy instead of deleting the only whole one; an owed copy that is
// not settled is kept.
func TestSettledRecordLeftInOwedReplacesACutShortOne(t *testing.T) {
	fs, st := fileLedger(t)
	ctx := context.Background()
	rec := completedRecord(t)
	require.NoError(t, st.Save(ctx, rec))
	pending, err := os.ReadFile(fs.Filename(st.OwedKey(rec.PaymentID)))
	require.NoError(t, err)
	rec.Delivery.State = Delivered
	require.NoError(t, st.Save(ctx, rec))
	owed, settled := fs.Filename(st.OwedKey(rec.PaymentID)), fs.Filename(st.RecordKey(rec.PaymentID))

	// The owed copy not settled: both kept.
	require.NoError(t, os.WriteFile(settled, []byte(`{"payment_id":`), 0o600))
	require.NoError(t, os.WriteFile(owed, pending, 0o600))
	require.Error(t, st.ClearOwed(ctx, rec.PaymentID))
	assert.FileExists(t, owed)

	data, _ := leaveSettledInOwed(t, fs, st, rec)
	got, err := st.Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	require.NotNil(t, got)
	assert.Equal(t, Delivered, got.Delivery.State, "read from owed/: the one in payments/ is cut short")
	require.NoError(t, st.ClearOwed(ctx, rec.PaymentID))
	assert.NoFileExists(t, owed)
	moved, err := os.ReadFile(settled)
	require.NoError(t, err)
	assert.Equal(t, data, moved)

	// A whole record in payments/: the owed copy goes.
	require.NoError(t, os.WriteFile(owed, pending, 0o600))
	require.NoError(t, st.ClearOwed(ctx, rec.PaymentID))
	assert.NoFileExists(t, owed)
	got, err = st.Load(ctx, rec.PaymentID)
	require.NoError(t, err)
	assert.Equal(t, Delivered, got.Delivery.State)
}

// payments/ on another file system (a symbolic link to a tmpfs): a settled
// record left in owed/ cannot be renamed there (EXDEV), so it is copied.
func TestSettledRecordLeftInOwedCopiedAcrossFileSystems(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "pi-guard-test-")
	if err != nil {
		t.Skip("no /dev/shm here:", err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	fs, st := fileLedger(t)
	ctx := context.Background()
	rec := completedRecord(t)
	require.NoError(t, st.Save(ctx, rec))
	payments := filepath.Dir(fs.Filename(st.RecordKey(rec.PaymentID)))
	require.NoError(t, os.Symlink(shm, payments))
	data, owed := leaveSettledInOwed(t, fs, st, rec)
	var probe unix.Stat_t
	require.NoError(t, unix.Stat(shm, &probe))
	var home unix.Stat_t
	require.NoError(t, unix.Stat(filepath.Dir(owed), &home))
	if probe.Dev == home.Dev {
		t.Skip("/dev/shm is on the test directory's file system")
	}

	require.NoError(t, st.ClearOwed(ctx, rec.PaymentID))
	assert.NoFileExists(t, owed)
	copied, err := os.ReadFile(filepath.Join(shm, filepath.Base(fs.Filename(st.RecordKey(rec.PaymentID)))))
	require.NoError(t, err)
	assert.Equal(t, data, copied)
}
