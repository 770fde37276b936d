package pitest

import (
	"encoding/base32"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

func TestAddressIsValidStrKey(t *testing.T) {
	t.Parallel()
	// A known Stellar address: the all-zero key.
	assert.Equal(t, "GAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAWHF", encodeAccountID([32]byte{}))
	for range 100 {
		a := randomAddress()
		require.Len(t, a, 56)
		raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(a)
		require.NoError(t, err)
		require.Len(t, raw, 35)
		assert.Equal(t, byte(6<<3), raw[0])
		assert.Equal(t, crc16XModem(raw[:33]), binary.LittleEndian.Uint16(raw[33:]))
	}
}

func TestCRC16XModem(t *testing.T) {
	t.Parallel()
	assert.Equal(t, uint16(0x31C3), crc16XModem([]byte("123456789")))
}

func TestHorizonAmount(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"1": "1.0000000", "3.14": "3.1400000", "0.0000001": "0.0000001", "1e2": "100.0000000", "12345678.1234567": "12345678.1234567"} {
		assert.Equal(t, want, horizonAmount(piclient.Amount(in)), in)
	}
}
