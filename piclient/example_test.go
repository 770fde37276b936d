package piclient_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"sync"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// examplePi is a tiny stand-in for the Pi Platform API, enough for the
// examples: one payment that can be approved and then completed once.
func examplePi() *httptest.Server {
	const id = "aBcD1234eFgH5678iJkL9012mNoP"
	var mu sync.Mutex
	p := map[string]any{
		"identifier": id, "user_uid": "user-1", "amount": json.Number("3.14"), "memo": "A coffee",
		"metadata": map[string]any{"order": 42}, "from_address": "", "to_address": "",
		"direction": piclient.DirectionUserToApp, "created_at": "2024-01-02T03:04:05Z",
		"network": piclient.NetworkTestnet, "transaction": nil,
		"status": map[string]bool{
			"developer_approved": false, "transaction_verified": false,
			"developer_completed": false, "cancelled": false, "user_cancelled": false,
		},
	}
	status := p["status"].(map[string]bool)
	answer := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /payments/"+id, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		answer(w, http.StatusOK, p)
	})
	mux.HandleFunc("POST /payments/"+id+"/approve", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		status["developer_approved"] = true
		answer(w, http.StatusOK, p)
	})
	mux.HandleFunc("POST /payments/"+id+"/complete", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		var body struct {
			TxID string `json:"txid"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		if status["developer_completed"] {
			answer(w, http.StatusBadRequest, map[string]string{
				"error": "already_completed", "error_message": "This payment was already completed",
			})
			return
		}
		status["transaction_verified"], status["developer_completed"] = true, true
		p["transaction"] = map[string]any{"txid": body.TxID, "verified": true, "_link": "https://api.minepi.com/transactions/" + body.TxID}
		answer(w, http.StatusOK, p)
	})
	return httptest.NewServer(mux)
}

// A server approves a payment when the Pi SDK's onReadyForServerApproval
// fires, and completes it with the blockchain transaction id when
// onReadyForServerCompletion fires.
func Example() {
	pi := examplePi()
	defer pi.Close()

	client, err := piclient.New(piclient.Options{
		BaseURL: pi.URL,               // omit for the production API (DefaultBaseURL)
		APIKey:  "app-server-api-key", // from the Pi Developer Portal
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	const paymentID = "aBcD1234eFgH5678iJkL9012mNoP"
	const txid = "85b42e1702877c851eb7412fe958c8fb447c3207b4798fadab42ea8539046ce1"

	// Check the payment is what the app sold before approving it.
	p, err := client.GetPayment(ctx, paymentID)
	if err != nil {
		log.Fatal(err)
	}
	if p.Amount.Cmp("3.14") != 0 || p.Direction != piclient.DirectionUserToApp {
		log.Fatal("not the payment we expected")
	}

	p, err = client.Approve(ctx, paymentID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("approved:", p.Status.DeveloperApproved, "amount:", p.Amount, "metadata:", string(p.Metadata))

	p, err = client.Complete(ctx, paymentID, txid)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("completed:", p.IsCompletedWith(txid))

	// Output:
	// approved: true amount: 3.14 metadata: {"order":42}
	// completed: true
}

// A failed call says whether Pi refused it (IsRejected: asking again will
// not help) or whether no trustworthy answer came (IsUnavailable: a POST may
// or may not have taken effect, so re-read the payment before acting).
func ExampleClient_Complete_errors() {
	pi := examplePi()
	defer pi.Close()
	client, err := piclient.New(piclient.Options{BaseURL: pi.URL, APIKey: "app-server-api-key"})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	const paymentID = "aBcD1234eFgH5678iJkL9012mNoP"
	const txid = "85b42e1702877c851eb7412fe958c8fb447c3207b4798fadab42ea8539046ce1"

	for range 2 {
		_, err = client.Complete(ctx, paymentID, txid)
	}
	switch {
	case err == nil:
		fmt.Println("completed")
	case piclient.IsRejected(err):
		fmt.Println("rejected:", piclient.ErrorCode(err), piclient.StatusCode(err))
		fmt.Println(err)
	case piclient.IsUnavailable(err):
		// Learn the truth before acting.
		p, gerr := client.GetPayment(ctx, paymentID)
		fmt.Println("re-read:", gerr == nil && p.IsCompletedWith(txid))
	}

	// Malformed input is refused before any request.
	_, err = client.Complete(ctx, "../admin", txid)
	fmt.Println("invalid:", piclient.IsInvalid(err))

	// Output:
	// rejected: already_completed 400
	// pi api complete payment aBcD1234eFgH5678iJkL9012mNoP: HTTP 400 already_completed: This payment was already completed
	// invalid: true
}

// Amounts keep their exact decimal text and compare exactly.
func ExampleAmount_Cmp() {
	var p piclient.Payment
	_ = json.Unmarshal([]byte(`{"amount": 0.30000000000000004}`), &p)

	fmt.Println(p.Amount)
	fmt.Println(p.Amount.Cmp("0.3"))
	fmt.Println(piclient.Amount("1.0").Cmp("1"))
	// Output:
	// 0.30000000000000004
	// 1
	// 0
}
