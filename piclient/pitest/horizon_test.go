package pitest_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

type horizonTx struct {
	ID         string `json:"id"`
	Hash       string `json:"hash"`
	Successful bool   `json:"successful"`
	Memo       string `json:"memo"`
	MemoType   string `json:"memo_type"`
	Ledger     int64  `json:"ledger"`
	CreatedAt  string `json:"created_at"`
	Links      struct {
		Operations struct {
			Href string `json:"href"`
		} `json:"operations"`
	} `json:"_links"`
}

type horizonOps struct {
	Embedded struct {
		Records []struct {
			Type                  string `json:"type"`
			From                  string `json:"from"`
			To                    string `json:"to"`
			Amount                string `json:"amount"`
			AssetType             string `json:"asset_type"`
			TransactionSuccessful bool   `json:"transaction_successful"`
		} `json:"records"`
	} `json:"_embedded"`
}

func getHorizon(t *testing.T, url string, v any) {
	t.Helper()
	r := do(t, "GET", url, "", "")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.NoError(t, json.Unmarshal(r.body, v))
}

func TestHorizonTransaction(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)
	p := s.CreatePayment(pitest.NewPayment{Amount: "3.14"})
	_, err := c.Approve(t.Context(), p.Identifier)
	require.NoError(t, err)
	txid, err := s.SubmitTransaction(p.Identifier)
	require.NoError(t, err)

	got := mustPayment(t, s, p.Identifier)
	var tx horizonTx
	getHorizon(t, got.Transaction.Link, &tx) // the DTO's _link works
	assert.Equal(t, txid, tx.ID)
	assert.Equal(t, txid, tx.Hash)
	assert.True(t, tx.Successful)
	assert.Equal(t, p.Identifier, tx.Memo)
	assert.Equal(t, "text", tx.MemoType)
	assert.Positive(t, tx.Ledger)
	_, err = time.Parse(time.RFC3339, tx.CreatedAt)
	assert.NoError(t, err)
	assert.Equal(t, s.HorizonURL+"/transactions/"+txid+"/operations", tx.Links.Operations.Href)

	var ops horizonOps
	getHorizon(t, tx.Links.Operations.Href, &ops)
	require.Len(t, ops.Embedded.Records, 1)
	op := ops.Embedded.Records[0]
	assert.Equal(t, "payment", op.Type)
	assert.Equal(t, p.FromAddress, op.From)
	assert.Equal(t, s.Wallet, op.To)
	assert.Equal(t, "3.1400000", op.Amount)
	assert.Equal(t, "native", op.AssetType)
	assert.True(t, op.TransactionSuccessful)

	// Ledgers increase.
	id2, _ := paidPayment(t, s, c)
	var tx2 horizonTx
	getHorizon(t, mustPayment(t, s, id2).Transaction.Link, &tx2)
	assert.Greater(t, tx2.Ledger, tx.Ledger)
}

func TestHorizonForgedTransaction(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	c := newClient(t, s)
	p := approvedPayment(t, s, c)
	elsewhere := "GAAZI4TCR3TY5OJHCTJC2A4QSY6CJWJH5IAJTGKIN2ER7LBNVKOCCWN7"
	txid, err := s.SubmitTransactionWith(p.Identifier, pitest.Tx{Amount: "0.5", Memo: "other", To: elsewhere, Failed: true})
	require.NoError(t, err)
	got := mustPayment(t, s, p.Identifier)
	assert.True(t, got.Transaction.Verified, "overrides other than Unverified leave Pi's verdict alone")

	var tx horizonTx
	getHorizon(t, s.HorizonURL+"/transactions/"+txid, &tx)
	assert.False(t, tx.Successful)
	assert.Equal(t, "other", tx.Memo)
	var ops horizonOps
	getHorizon(t, s.HorizonURL+"/transactions/"+txid+"/operations", &ops)
	require.Len(t, ops.Embedded.Records, 1)
	assert.Equal(t, "0.5000000", ops.Embedded.Records[0].Amount)
	assert.Equal(t, elsewhere, ops.Embedded.Records[0].To)
	assert.False(t, ops.Embedded.Records[0].TransactionSuccessful)
}

func TestHorizonAppToUser(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	p := s.CreatePayment(pitest.NewPayment{Direction: piclient.DirectionAppToUser, Amount: "10"})
	txid, err := s.SubmitTransaction(p.Identifier)
	require.NoError(t, err)
	var ops horizonOps
	getHorizon(t, s.HorizonURL+"/transactions/"+txid+"/operations", &ops)
	assert.Equal(t, s.Wallet, ops.Embedded.Records[0].From)
	assert.Equal(t, p.ToAddress, ops.Embedded.Records[0].To)
	assert.Equal(t, "10.0000000", ops.Embedded.Records[0].Amount)
}

func TestHorizonErrors(t *testing.T) {
	t.Parallel()
	s := newFake(t)
	for _, path := range []string{"/transactions/" + otherTxID, "/transactions/" + otherTxID + "/operations", "/transactions/", "/ledgers/1", "/transactions/x/effects"} {
		r := do(t, "GET", s.HorizonURL+path, "", "")
		assert.Equal(t, http.StatusNotFound, r.status, path)
		assert.Contains(t, r.header.Get("Content-Type"), "application/problem+json", path)
		var pb struct {
			Status int    `json:"status"`
			Type   string `json:"type"`
		}
		require.NoError(t, json.Unmarshal(r.body, &pb))
		assert.Equal(t, 404, pb.Status)
	}
	r := do(t, "POST", s.HorizonURL+"/transactions/"+otherTxID, "", "")
	assert.Equal(t, http.StatusMethodNotAllowed, r.status)
	assert.Equal(t, 2, s.Calls(pitest.EndpointHorizon), "only routed GETs are counted")

	s.InjectFault(pitest.EndpointHorizon, pitest.Fault{Status: 503, Times: 1})
	r = do(t, "GET", s.HorizonURL+"/transactions/"+otherTxID, "", "")
	assert.Equal(t, http.StatusServiceUnavailable, r.status)
	assert.Contains(t, r.header.Get("Content-Type"), "application/problem+json")
}
