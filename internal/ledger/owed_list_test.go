package ledger

import (
	"context"
	"io/fs"
	"testing"

	"github.com/caddyserver/certmagic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// racingList is file storage whose List answers "not exist" the first n
// times, as certmagic's FileStorage does when an entry is deleted while the
// directory is read.
type racingList struct {
	*certmagic.FileStorage
	n int
}

func (r *racingList) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	if r.n > 0 {
		r.n--
		return nil, fs.ErrNotExist
	}
	return r.FileStorage.List(ctx, prefix, recursive)
}

// A listing that races a delete is never taken for "nothing is owed" (which
// would zero the gauge and empty the admin listing).
func TestOwedListingRacingADeleteIsNotEmpty(t *testing.T) {
	base := &certmagic.FileStorage{Path: t.TempDir()}
	ctx := context.Background()
	st := NewLayout(base, "p", LayoutFiles)
	require.NoError(t, st.Save(ctx, &Record{PaymentID: "pay1", Phase: PhaseComplete, Delivery: Delivery{State: Pending}}))

	racing := &racingList{FileStorage: base, n: 2}
	ids, err := NewLayout(racing, "p", LayoutFiles).Owed(ctx)
	require.NoError(t, err, "listed again")
	assert.Equal(t, []string{"pay1"}, ids)

	racing.n = 5
	_, err = NewLayout(racing, "p", LayoutFiles).Owed(ctx)
	assert.Error(t, err, "still racing: an error, not an empty list")

	ids, err = NewLayout(&racingList{FileStorage: base, n: 1}, "never", LayoutFiles).Owed(ctx)
	require.NoError(t, err)
	assert.Empty(t, ids, "a directory that does not exist is nothing owed")
}
