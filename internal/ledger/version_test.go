package ledger

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEveryWriteOfARecordIsAVersionMore: each Save writes the version it
// loaded plus one, so that of two copies of one payment's record (in two
// instances' segments, one day) the current one can be told; with
// file_system storage (a file moved from owed/ to payments/) and with any
// other storage module alike.
func TestEveryWriteOfARecordIsAVersionMore(t *testing.T) {
	ctx := context.Background()
	_, files := fileLedger(t)
	for name, st := range map[string]*Ledger{"file_system": files, "storage module": New(wrappedStorage{testStorage(t)}, "pi_guard/test")} {
		t.Run(name, func(t *testing.T) {
			rec := completedRecord(t)
			require.NoError(t, st.Save(ctx, rec))
			got, err := st.Load(ctx, rec.PaymentID)
			require.NoError(t, err)
			assert.Equal(t, uint64(1), got.Version, "the completion")

			got.Delivery.State = Delivered
			require.NoError(t, st.Save(ctx, got))
			got, err = st.Load(ctx, rec.PaymentID)
			require.NoError(t, err)
			assert.Equal(t, uint64(2), got.Version, "its delivery, written over the completion")
			assert.Equal(t, Delivered, got.Delivery.State)
		})
	}
}
