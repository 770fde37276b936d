package verify_test

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// An upstream app protects its completion callback with Middleware. Here the
// guard's side (Signer) is played by the example itself.
func Example() {
	key, err := verify.HS256Key("2026-01", []byte("example secret, at least 32 bytes long!"))
	if err != nil {
		log.Fatal(err)
	}
	now := func() time.Time { return time.Unix(1767225600, 0) }

	// The app.
	v, err := verify.NewVerifier(verify.Options{Keys: []verify.Key{key}, Now: now})
	if err != nil {
		log.Fatal(err)
	}
	complete := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := verify.FromContext(r.Context())
		body, _ := io.ReadAll(r.Body) // still readable after verification
		// Record c.Subject as paid, once: the guard may deliver it again.
		fmt.Printf("paid: %s (%s Pi, tx %s), body %s\n", c.Subject, c.Payment.Amount, c.Payment.TxID(), body)
	})
	app := http.NewServeMux()
	app.Handle("POST /payments/complete", verify.Middleware(v, complete))

	// The guard, after Pi confirmed completion.
	s, err := verify.NewSigner(verify.SignerOptions{Keys: []verify.Key{key}, Now: now})
	if err != nil {
		log.Fatal(err)
	}
	body := `{"paymentId":"pay_123","txid":"abc"}`
	payment := &piclient.Payment{
		Identifier:  "pay_123",
		Amount:      "3.14",
		Status:      piclient.Status{DeveloperApproved: true, TransactionVerified: true, DeveloperCompleted: true},
		Transaction: &piclient.Transaction{TxID: "abc", Verified: true},
	}
	token, err := s.Sign(verify.KindVerified, verify.PhaseComplete, payment,
		verify.Binding{Method: "POST", Path: "/payments/complete", Body: []byte(body)}, "")
	if err != nil {
		log.Fatal(err)
	}

	r := httptest.NewRequest("POST", "/payments/complete", strings.NewReader(body))
	r.Header.Set(verify.HeaderVerified, token)
	app.ServeHTTP(httptest.NewRecorder(), r)

	// Without the header, the handler is not reached.
	w := httptest.NewRecorder()
	app.ServeHTTP(w, httptest.NewRequest("POST", "/payments/complete", strings.NewReader(body)))
	fmt.Println(w.Code, strings.TrimSpace(w.Body.String()))
	// Output:
	// paid: pay_123 (3.14 Pi, tx abc), body {"paymentId":"pay_123","txid":"abc"}
	// 401 {"error":"payment_not_verified","message":"verify: header missing: no Pi-Payment-Verified header"}
}
