// Package horizon reads transactions from the Pi blockchain API, a fork of
// Stellar's Horizon, for the guard's optional blockchain cross-check: before
// a payment is forwarded as verified, its transaction is read from the chain
// and compared with the payment Pi reports.
package horizon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// ErrNotFound is returned (wrapped) when Horizon knows no such transaction.
var ErrNotFound = errors.New("transaction not found on the blockchain")

// Client reads transactions from one Horizon server.
type Client struct {
	base string
	http *http.Client
}

// New returns a client for the Horizon base URL (for example
// https://api.mainnet.minepi.com). It makes no request.
func New(base string, timeout time.Duration) (*Client, error) {
	base = strings.TrimRight(base, "/")
	u, err := url.Parse(base)
	if err != nil {
		return nil, errors.New("horizon: the base URL is not a URL: use an absolute http(s) URL such as https://api.mainnet.minepi.com")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		// Redacted: never echo a password given in the URL.
		return nil, fmt.Errorf("horizon: base URL %q must be an absolute http(s) URL such as https://api.mainnet.minepi.com", u.Redacted())
	}
	return &Client{base: base, http: &http.Client{
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// Transaction is what the cross-check needs of a blockchain transaction.
type Transaction struct {
	Hash       string
	Successful bool
	Memo       string
	MemoType   string
	Payments   []Payment
}

// Payment is one payment operation of a transaction.
type Payment struct {
	From, To  string
	Amount    piclient.Amount
	AssetType string
}

// Transaction reads the transaction txid and its operations.
func (c *Client) Transaction(ctx context.Context, txid string) (*Transaction, error) {
	if err := piclient.ValidateTxID(txid); err != nil {
		return nil, err
	}
	txid = piclient.NormalizeTxID(txid) // Horizon's URLs use lower case
	var tx struct {
		Hash       string `json:"hash"`
		Successful bool   `json:"successful"`
		Memo       string `json:"memo"`
		MemoType   string `json:"memo_type"`
	}
	if err := c.get(ctx, "/transactions/"+txid, &tx); err != nil {
		return nil, err
	}
	var ops struct {
		Embedded struct {
			Records []struct {
				Type      string          `json:"type"`
				From      string          `json:"from"`
				To        string          `json:"to"`
				Amount    piclient.Amount `json:"amount"`
				AssetType string          `json:"asset_type"`
			} `json:"records"`
		} `json:"_embedded"`
	}
	if err := c.get(ctx, "/transactions/"+txid+"/operations", &ops); err != nil {
		return nil, err
	}
	out := &Transaction{Hash: tx.Hash, Successful: tx.Successful, Memo: tx.Memo, MemoType: tx.MemoType}
	for _, op := range ops.Embedded.Records {
		if op.Type == "payment" {
			out.Payments = append(out.Payments, Payment{From: op.From, To: op.To, Amount: op.Amount, AssetType: op.AssetType})
		}
	}
	return out, nil
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("horizon: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("horizon: reading answer: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("horizon: %w", ErrNotFound)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("horizon: HTTP %d", resp.StatusCode)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("horizon: malformed answer: %w", err)
	}
	return nil
}

// Check compares a transaction with the payment it should settle: it must
// have succeeded, carry the payment id as its text memo, and hold exactly one
// native payment of the payment's amount to wallet. It returns nil or an
// error naming the first mismatch.
func Check(tx *Transaction, p *piclient.Payment, wallet string) error {
	switch {
	case !tx.Successful:
		return errors.New("the transaction did not succeed")
	case piclient.NormalizeTxID(tx.Hash) != p.TxID():
		return errors.New("the blockchain returned a different transaction")
	case tx.Memo != p.Identifier:
		return fmt.Errorf("the transaction's memo is not the payment id")
	case len(tx.Payments) != 1:
		return fmt.Errorf("the transaction has %d payment operations, not 1", len(tx.Payments))
	}
	op := tx.Payments[0]
	switch {
	case op.AssetType != "native":
		return fmt.Errorf("the payment is in %q, not Pi", op.AssetType)
	case op.To != wallet:
		return errors.New("the payment does not go to the app's wallet")
	case op.Amount.Cmp(p.Amount) != 0:
		return fmt.Errorf("the payment moved %s Pi, not %s", op.Amount, p.Amount)
	}
	return nil
}
