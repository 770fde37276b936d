package ledger

import (
	"context"
	"testing"

	"github.com/caddyserver/certmagic"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

// benchID is a well-formed payment id for tests that need one.
const benchID = "q6dCgzMcZk4RbMnyeuC4aYIZYCBi"

// testStorage is real file storage in a temporary directory.
func testStorage(t testing.TB) certmagic.Storage {
	return &certmagic.FileStorage{Path: t.TempDir()}
}

// fileLedger is a ledger on file storage of its own, in a temporary
// directory, under the prefix the tests use.
func fileLedger(t testing.TB) (*certmagic.FileStorage, *Ledger) {
	fs := &certmagic.FileStorage{Path: t.TempDir()}
	return fs, NewLayout(fs, "pi_guard/test", LayoutFiles)
}

// completedRecord is the record of a payment completed at the fake Pi, as
// the guard's complete phase saves it: Pi's PaymentDTO, the stored request,
// owed delivery.
func completedRecord(t testing.TB) *Record {
	t.Helper()
	s := pitest.NewServer()
	t.Cleanup(s.Close)
	pi, err := piclient.New(piclient.Options{BaseURL: s.URL, APIKey: s.APIKey})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p := s.CreatePayment(pitest.NewPayment{Amount: "3.14", Memo: "benchmark order 1234", Metadata: []byte(`{"orderId":1234}`)})
	if _, err := pi.Approve(ctx, p.Identifier); err != nil {
		t.Fatal(err)
	}
	txid, err := s.SubmitTransaction(p.Identifier)
	if err != nil {
		t.Fatal(err)
	}
	dto, err := pi.Complete(ctx, p.Identifier, txid)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"paymentId":"` + p.Identifier + `","txid":"` + txid + `"}`)
	return &Record{PaymentID: p.Identifier, Phase: PhaseComplete, TxID: txid, Payment: dto,
		Request:  &Request{Method: "POST", Path: "/payments/complete", Header: map[string][]string{"Content-Type": {"application/json"}}, Body: body},
		Delivery: Delivery{State: Pending}}
}
