package ledger

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKeyedMutexHonoursContext(t *testing.T) {
	k := NewKeyedMutex()
	ctx := t.Context()
	unlock, err := k.Lock(ctx, "a")
	require.NoError(t, err)
	other, err := k.Lock(ctx, "b")
	require.NoError(t, err, "other keys are independent")
	other()

	short, cancel := context.WithCancel(ctx)
	cancel()
	_, err = k.Lock(short, "a")
	require.Error(t, err, "a held key times out with the context")
	unlock()
	again, err := k.Lock(ctx, "a")
	require.NoError(t, err)
	again()
	assert.Empty(t, k.entries, "entries are released")
}
