package pitest_test

import (
	"context"
	"fmt"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/pitest"
)

// A whole user-to-app payment, with the app's side done through piclient.
func Example() {
	s := pitest.NewServer()
	defer s.Close()
	c, _ := piclient.New(piclient.Options{BaseURL: s.URL, APIKey: s.APIKey})
	ctx := context.Background()

	p := s.CreatePayment(pitest.NewPayment{Amount: "3.14", Memo: "coffee"}) // the user starts a payment
	if _, err := c.Approve(ctx, p.Identifier); err != nil {                 // the app approves it
		panic(err)
	}
	txid, _ := s.SubmitTransaction(p.Identifier) // the user's wallet pays

	// Pi answers 500 once, as it sometimes does.
	s.InjectFault(pitest.EndpointComplete, pitest.Fault{Status: 500, Times: 1})
	_, err := c.Complete(ctx, p.Identifier, txid)
	fmt.Println("first complete:", piclient.StatusCode(err), piclient.IsUnavailable(err))
	done, err := c.Complete(ctx, p.Identifier, txid)
	fmt.Println("second complete:", err == nil, done.IsCompletedWith(txid))
	fmt.Println("complete calls:", s.Calls(pitest.EndpointComplete))
	// Output:
	// first complete: 500 true
	// second complete: true true
	// complete calls: 2
}
