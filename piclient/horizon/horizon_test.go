package horizon_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/horizon"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

func TestCheckAgainstFakeHorizon(t *testing.T) {
	s := pitest.NewServer()
	defer s.Close()
	c, err := horizon.New(s.HorizonURL, 0)
	require.NoError(t, err)
	pc, err := piclient.New(piclient.Options{BaseURL: s.URL, APIKey: s.APIKey})
	require.NoError(t, err)

	pay := func(tx *pitest.Tx) (*piclient.Payment, *horizon.Transaction) {
		p := s.CreatePayment(pitest.NewPayment{Amount: "3.14"})
		_, err := pc.Approve(t.Context(), p.Identifier)
		require.NoError(t, err)
		if tx == nil {
			_, err = s.SubmitTransaction(p.Identifier)
		} else {
			_, err = s.SubmitTransactionWith(p.Identifier, *tx)
		}
		require.NoError(t, err)
		got, ok := s.Payment(p.Identifier)
		require.True(t, ok)
		onChain, err := c.Transaction(t.Context(), got.TxID())
		require.NoError(t, err)
		return &got, onChain
	}

	p, tx := pay(nil)
	assert.NoError(t, horizon.Check(tx, p, s.Wallet))
	assert.ErrorContains(t, horizon.Check(tx, p, "GOTHERWALLET"), "app's wallet")

	cases := map[string]struct {
		tx   pitest.Tx
		want string
	}{
		"wrong amount": {pitest.Tx{Amount: "0.01"}, "not 3.14"},
		"wrong memo":   {pitest.Tx{Memo: "another-payment"}, "memo"},
		"failed":       {pitest.Tx{Failed: true}, "did not succeed"},
		"elsewhere":    {pitest.Tx{To: "GBOTHERWALLETXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"}, "app's wallet"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p, tx := pay(&tc.tx)
			assert.ErrorContains(t, horizon.Check(tx, p, s.Wallet), tc.want)
		})
	}

	_, err = c.Transaction(t.Context(), "ab")
	assert.ErrorIs(t, err, piclient.ErrInvalidTxID)
	_, err = c.Transaction(t.Context(), "00000000000000000000000000000000000000000000000000000000000000aa")
	assert.ErrorIs(t, err, horizon.ErrNotFound)
	_, err = horizon.New("ftp://x", 0)
	assert.Error(t, err)
}

// Horizon writes txids in lower case and compares them exactly: an
// upper-case txid is read in lower case, and a hash in either case matches.
func TestUpperCaseTxID(t *testing.T) {
	s := pitest.NewServer()
	defer s.Close()
	c, err := horizon.New(s.HorizonURL, 0)
	require.NoError(t, err)
	pc, err := piclient.New(piclient.Options{BaseURL: s.URL, APIKey: s.APIKey})
	require.NoError(t, err)
	p := s.CreatePayment(pitest.NewPayment{Amount: "3.14"})
	_, err = pc.Approve(t.Context(), p.Identifier)
	require.NoError(t, err)
	txid, err := s.SubmitTransaction(p.Identifier)
	require.NoError(t, err)
	tx, err := c.Transaction(t.Context(), strings.ToUpper(txid))
	require.NoError(t, err)
	assert.Equal(t, txid, tx.Hash)
	got, _ := s.Payment(p.Identifier)
	got.Transaction.TxID = strings.ToUpper(txid)
	assert.NoError(t, horizon.Check(tx, &got, s.Wallet))
}
