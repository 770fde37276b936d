package piguard

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
)

// The guard's JSON answers and the canonical completion body are encoded
// from structs whose fields are in key order: byte for byte what the maps
// they replaced encoded to.
func TestAnswersEncodeAsTheirMaps(t *testing.T) {
	for _, s := range []string{"abc", "a<b>&c\"\\\u2028é\x00", ""} {
		for _, b := range []bool{true, false} {
			rec := &ledger.Record{PaymentID: s, TxID: s + "x"}
			w := httptest.NewRecorder()
			_ = writeCompleted(w, rec, b, !b)
			msg := "the payment is complete and the app has received it; the app's answer goes to the payer's own session only"
			if b {
				msg = "the payment is complete; the app has not confirmed it yet and it is delivered again; the app's answer goes to the payer's own session only"
			}
			var want bytes.Buffer
			_ = json.NewEncoder(&want).Encode(map[string]any{
				"paymentId": s, "txid": s + "x", "completed": true, "replayed": b, "delivered": !b, "message": msg})
			if w.Body.String() != want.String() {
				t.Fatalf("%s\n%s", w.Body, want.String())
			}
			got, _ := json.Marshal(completionBody{PaymentID: s, TxID: s + "y"})
			wm, _ := json.Marshal(map[string]string{"paymentId": s, "txid": s + "y"})
			if string(got) != string(wm) {
				t.Fatal(string(got), string(wm))
			}
			a, _ := json.Marshal(struct {
				Approved  bool   `json:"approved"`
				PaymentID string `json:"paymentId"`
			}{true, s})
			am, _ := json.Marshal(map[string]any{"approved": true, "paymentId": s})
			if string(a) != string(am) {
				t.Fatal(string(a), string(am))
			}
		}
	}
}
