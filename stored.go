package piguard

import (
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
)

// keptHeaders are the request headers stored for redelivery and replays:
// those an app may need to interpret the body. Cookies and authorization are
// not kept (the verified header is the app's proof), nor X-Forwarded-*: on
// the live path reverse_proxy sets those from the connection, and a stored
// copy would only repeat what a client claimed.
var keptHeaders = []string{"Content-Type", "Content-Encoding", "Accept", "User-Agent", "X-Request-Id"}

func newStoredRequest(r *http.Request, body []byte) *ledger.Request {
	sr := &ledger.Request{Method: r.Method, Path: r.URL.Path, Host: r.Host, Header: http.Header{}, Body: body}
	for _, k := range keptHeaders {
		if v := r.Header.Values(k); len(v) > 0 {
			sr.Header[k] = append([]string(nil), v...)
		}
	}
	return sr
}

// keptHeader returns sr's stored headers that may be sent again: only
// keptHeaders, whatever an older record holds.
func keptHeader(sr *ledger.Request) http.Header {
	out := http.Header{}
	for _, k := range keptHeaders {
		if v := sr.Header.Values(k); len(v) > 0 {
			out[k] = append([]string(nil), v...)
		}
	}
	return out
}

// canonicalCompletion is the completion the guard records and delivers when
// the payer did not post it (a stranger did, or the reconciler completed the
// payment): the reference frontend's completion body, {"paymentId", "txid"},
// on the complete route, as JSON or, when the payer's approve was a form,
// as a form; sent to the host the payer's approve was sent to.
func canonicalCompletion(completePath, id, txid string, who *ledger.Approver) *ledger.Request {
	sr := &ledger.Request{Method: http.MethodPost, Path: completePath, Header: http.Header{}}
	if who != nil {
		sr.Host = who.Host
	}
	if who != nil && who.Form {
		sr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		sr.Body = []byte(url.Values{"paymentId": {id}, "txid": {txid}}.Encode())
		return sr
	}
	sr.Header.Set("Content-Type", "application/json")
	sr.Body, _ = json.Marshal(completionBody{PaymentID: id, TxID: txid})
	return sr
}

// completionBody is the reference frontend's completion, {"paymentId",
// "txid"}: encoded as a map of the two would be (same key order), without
// the map.
type completionBody struct {
	PaymentID string `json:"paymentId"`
	TxID      string `json:"txid"`
}

// deliverable is the request to deliver for rec: the stored one, or, for a
// record written without one, the reference frontend's completion body on
// the complete route.
func deliverable(rec *ledger.Record, completePath string) *ledger.Request {
	if rec.Request != nil {
		return rec.Request
	}
	body, _ := json.Marshal(completionBody{PaymentID: rec.PaymentID, TxID: rec.TxID})
	return &ledger.Request{Method: http.MethodPost, Path: completePath,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: body}
}
