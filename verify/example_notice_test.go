package verify_test

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// An app's payment routes with net/http, each reading its own header:
// Pi-Payment-Notice on approve and cancel (never proof of payment),
// Pi-Payment-Verified on complete (Middleware), and on incomplete the verified
// header when there is one, never falling back to the notice when it fails.
// Register the routes with their full paths (or verify before
// http.StripPrefix): tokens are bound to the path the guard forwarded.
func ExampleVerifier_VerifyNotice() {
	key, err := verify.HS256Key("", []byte("example secret, at least 32 bytes long!"))
	if err != nil {
		log.Fatal(err)
	}
	now := func() time.Time { return time.Unix(1767225600, 0) }
	v, err := verify.NewVerifier(verify.Options{Keys: []verify.Key{key}, Now: now})
	if err != nil {
		log.Fatal(err)
	}

	notice := func(status string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			c, err := v.VerifyNotice(r)
			if err != nil {
				http.Error(w, `{"error":"notice_not_verified"}`, http.StatusUnauthorized)
				return
			}
			fmt.Printf("%s: order %s %s, not paid\n", c.Phase, c.Subject, status)
		}
	}
	paid := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := verify.FromContext(r.Context())
		fmt.Printf("%s: order %s paid, tx %s\n", c.Phase, c.Subject, c.Payment.TxID())
	})
	app := http.NewServeMux()
	app.Handle("POST /payments/approve", notice("pending"))
	app.Handle("POST /payments/complete", verify.Middleware(v, paid))
	app.HandleFunc("POST /payments/incomplete", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(verify.HeaderVerified) != "" {
			verify.Middleware(v, paid).ServeHTTP(w, r) // the guard completed it
			return
		}
		notice("released")(w, r) // cancelled at Pi: no transaction
	})
	app.Handle("POST /payments/cancelled_payment", notice("released"))

	// The guard's side, played here by a Signer.
	s, err := verify.NewSigner(verify.SignerOptions{Keys: []verify.Key{key}, Now: now})
	if err != nil {
		log.Fatal(err)
	}
	deliver := func(header string, kind verify.Kind, phase, path string, p *piclient.Payment) int {
		body := `{"paymentId":"` + p.Identifier + `"}`
		token, err := s.Sign(kind, phase, p, verify.Binding{Method: "POST", Path: path, Body: []byte(body)}, "")
		if err != nil {
			log.Fatal(err)
		}
		r := httptest.NewRequest("POST", path, strings.NewReader(body))
		r.Header.Set(header, token)
		w := httptest.NewRecorder()
		app.ServeHTTP(w, r)
		return w.Code
	}
	pending := &piclient.Payment{Identifier: "pay_123", Amount: "3.14"}
	completed := &piclient.Payment{
		Identifier:  "pay_123",
		Amount:      "3.14",
		Status:      piclient.Status{DeveloperApproved: true, TransactionVerified: true, DeveloperCompleted: true},
		Transaction: &piclient.Transaction{TxID: "abc", Verified: true},
	}
	deliver(verify.HeaderNotice, verify.KindNotice, verify.PhaseApprove, "/payments/approve", pending)
	deliver(verify.HeaderVerified, verify.KindVerified, verify.PhaseComplete, "/payments/complete", completed)
	deliver(verify.HeaderVerified, verify.KindVerified, verify.PhaseIncomplete, "/payments/incomplete", completed)
	cancelled := &piclient.Payment{Identifier: "pay_456", Amount: "1", Status: piclient.Status{Cancelled: true}}
	deliver(verify.HeaderNotice, verify.KindNotice, verify.PhaseIncomplete, "/payments/incomplete", cancelled)
	// A notice is refused where a verified header is required.
	code := deliver(verify.HeaderVerified, verify.KindNotice, verify.PhaseApprove, "/payments/complete", pending)
	fmt.Println("notice on complete:", code)
	// Output:
	// approve: order pay_123 pending, not paid
	// complete: order pay_123 paid, tx abc
	// incomplete: order pay_123 paid, tx abc
	// incomplete: order pay_456 released, not paid
	// notice on complete: 401
}
