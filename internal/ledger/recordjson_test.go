package ledger

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// recordPieces are what generated strings are made of: plain text, what
// encoding/json escapes, multi-byte and broken UTF-8.
var recordPieces = []string{
	"a", "pay_TEST-1", " ", "/payments/complete", `"`, `\`, "<", ">", "&", "\x00", "\x1f", "\n", "\t", "\x7f", "é",
	"日本", "\u2028", "\u2029", "\ufffd", "\U0001F600", "\xff", "\xe2\x80", "\xed\xa0\x80",
}

func randText(rng *rand.Rand) string {
	if rng.IntN(4) == 0 {
		return ""
	}
	var b strings.Builder
	for range rng.IntN(5) + 1 {
		b.WriteString(recordPieces[rng.IntN(len(recordPieces))])
	}
	return b.String()
}

var zones = []*time.Location{time.UTC, time.FixedZone("", 5*3600+30*60), time.FixedZone("", -8*3600), time.FixedZone("", 90), time.FixedZone("", 24*3600), time.Local}

func randTime(rng *rand.Rand) time.Time {
	switch rng.IntN(8) {
	case 0:
		return time.Time{}
	case 1:
		return time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) // MarshalJSON refuses it
	case 2:
		return time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	t := time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)*int64(rng.IntN(2)))
	return t.In(zones[rng.IntN(len(zones))])
}

func randStrings(rng *rand.Rand) []string {
	switch rng.IntN(4) {
	case 0:
		return nil
	case 1:
		return []string{}
	}
	s := make([]string, rng.IntN(3)+1)
	for i := range s {
		s[i] = randText(rng)
	}
	return s
}

func randPayment(rng *rand.Rand) *piclient.Payment {
	if rng.IntN(6) == 0 {
		return nil
	}
	amounts := []piclient.Amount{"", "1", "3.14", "1e-7", "-0", "x", "01"}
	metas := []string{"", "null", `{"order":42}`, ` { "a" : [1, "<&>"] } `, `{"a":`, "\"\u2028\"", `[]`}
	p := &piclient.Payment{
		Identifier: randText(rng), UserUID: randText(rng), Amount: amounts[rng.IntN(len(amounts))], Memo: randText(rng),
		FromAddress: randText(rng), ToAddress: randText(rng), Direction: randText(rng), CreatedAt: randText(rng), Network: randText(rng),
		Status: piclient.Status{DeveloperApproved: rng.IntN(2) == 0, TransactionVerified: rng.IntN(2) == 0, DeveloperCompleted: rng.IntN(2) == 0,
			Cancelled: rng.IntN(2) == 0, UserCancelled: rng.IntN(2) == 0},
	}
	if m := metas[rng.IntN(len(metas))]; m != "" {
		p.Metadata = json.RawMessage(m)
	}
	if rng.IntN(2) == 0 {
		p.Transaction = &piclient.Transaction{TxID: randText(rng), Verified: rng.IntN(2) == 0, Link: randText(rng)}
	}
	return p
}

func randRecord(rng *rand.Rand) *Record {
	rec := &Record{
		PaymentID: randText(rng), Phase: randText(rng), TxID: randText(rng), Payment: randPayment(rng),
		Delivery: Delivery{State: randText(rng), Attempts: rng.IntN(20) - 2, NextAttempt: randTime(rng), LastError: randText(rng), DeliveredAt: randTime(rng)},
		Payer:    randStrings(rng), PayerBefore: randStrings(rng), Caller: randText(rng),
		CompletedAt: randTime(rng), Created: randTime(rng), Updated: randTime(rng), Unsaved: rng.IntN(2) == 0,
	}
	if rng.IntN(2) == 0 {
		rec.Version = rng.Uint64() >> rng.IntN(64)
	}
	if rng.IntN(4) != 0 {
		r := &Request{Method: randText(rng), Path: randText(rng), Host: randText(rng)}
		switch rng.IntN(4) {
		case 0:
		case 1:
			r.Header = http.Header{}
		default:
			r.Header = http.Header{}
			for range rng.IntN(6) + 1 {
				r.Header[randText(rng)] = randStrings(rng)
			}
		}
		switch rng.IntN(3) {
		case 0:
		case 1:
			r.Body = []byte{}
		default:
			r.Body = []byte(randText(rng) + randText(rng))
		}
		rec.Request = r
	}
	return rec
}

// checkRecord fails unless marshalRecord writes what json.Marshal writes (or
// both fail), and reports whether the hand encoder took rec.
func checkRecord(t *testing.T, rec *Record) bool {
	t.Helper()
	want, wantErr := json.Marshal(rec)
	got, ok := appendRecord(nil, rec)
	if ok && (wantErr != nil || !bytes.Equal(got, want)) {
		t.Fatalf("appendRecord differs from encoding/json for %#v:\n got %s\nwant %s (%v)", rec, got, want, wantErr)
	}
	m, err := marshalRecord(rec)
	if (err == nil) != (wantErr == nil) || err == nil && !bytes.Equal(m, want) {
		t.Fatalf("marshalRecord: %s, %v; encoding/json %s, %v", m, err, want, wantErr)
	}
	return ok
}

func TestAppendRecordMatchesEncodingJSON(t *testing.T) {
	// Every field set: a field added to Record, Request or Delivery and not
	// to appendRecord fails here.
	at := time.Date(2026, 12, 5, 2, 3, 4, 500600700, time.UTC)
	full := &Record{
		PaymentID: "pay-1", Phase: PhaseComplete, TxID: "tx", Payer: []string{"a", "b"}, PayerBefore: []string{"c"}, Caller: "d",
		Payment: &piclient.Payment{Identifier: "pay-1", Amount: "1.5", Metadata: json.RawMessage(`{"x":1}`),
			Status: piclient.Status{DeveloperCompleted: true}, Transaction: &piclient.Transaction{TxID: "tx", Verified: true, Link: "l"}},
		Request:     &Request{Method: "POST", Path: "/p", Host: "h", Header: http.Header{"B": {"2"}, "A": {"1", "<"}, "C": nil}, Body: []byte(`{"paymentId":"pay-1"}`)},
		Delivery:    Delivery{State: Delivered, Attempts: 2, NextAttempt: at, LastError: "e", DeliveredAt: at.Add(time.Second)},
		CompletedAt: at, Created: at, Updated: at.In(time.FixedZone("", 3600)), Version: 18446744073709551615,
	}
	if !checkRecord(t, full) {
		t.Fatal("a record with every field set went to encoding/json")
	}
	if !checkRecord(t, &Record{}) {
		t.Fatal("the zero record went to encoding/json")
	}
	rng := rand.New(rand.NewPCG(22, 5))
	taken := 0
	for range 20000 {
		if checkRecord(t, randRecord(rng)) {
			taken++
		}
	}
	if taken < 1000 {
		t.Fatalf("only %d of 20000 random records were encoded by hand", taken)
	}
}

func BenchmarkMarshalRecord(b *testing.B) {
	at := time.Now().UTC()
	rec := &Record{
		PaymentID: "8tdwLDL6IkRdBCKOSOOP5u38quzW", Phase: PhaseComplete, TxID: strings.Repeat("ab", 32), Payer: []string{strings.Repeat("f", 32)},
		Payment: &piclient.Payment{Identifier: "8tdwLDL6IkRdBCKOSOOP5u38quzW", UserUID: "6f1c9a2e-3b4d-4e5f-8a7b-9c0d1e2f3a4b", Amount: "1", Memo: "benchmark",
			Metadata: json.RawMessage(`{}`), FromAddress: strings.Repeat("G", 56), ToAddress: strings.Repeat("G", 56), Direction: "user_to_app",
			CreatedAt: "2026-12-05T01:56:46.499Z", Network: "Pi Testnet", Status: piclient.Status{DeveloperApproved: true, TransactionVerified: true, DeveloperCompleted: true},
			Transaction: &piclient.Transaction{TxID: strings.Repeat("ab", 32), Verified: true, Link: "https://api.testnet.minepi.com/transactions/ab"}},
		Request: &Request{Method: "POST", Path: "/payments/complete", Host: "127.0.0.1:18401",
			Header: http.Header{"Content-Type": {"application/json"}, "User-Agent": {"Go-http-client/1.1"}}, Body: []byte(`{"paymentId":"8tdwLDL6IkRdBCKOSOOP5u38quzW","txid":"abab"}`)},
		Delivery: Delivery{State: Pending}, CompletedAt: at, Created: at, Updated: at,
	}
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := marshalRecord(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
}
