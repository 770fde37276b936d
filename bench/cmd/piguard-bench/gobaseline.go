package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// gobaseline serves the routes of the Node/Express baseline
// (bench/node-baseline/server.js) in plain Go: the same job without Caddy,
// and without Node. It is the "Go floor" of `make bench`: what the five HTTP
// exchanges of a payment flow (2 requests served, 3 Pi calls made) cost at
// least in Go, with net/http, a keep-alive client and encoding/json, nothing
// durable and no log line per request.
//
//	POST /payments/approve  {paymentId}        GET /v2/payments/{id}, then POST /v2/payments/{id}/approve
//	POST /payments/complete {paymentId, txid}  POST /v2/payments/{id}/complete {txid}
//	GET  /hello                                 a line of text (for a readiness check)
//
// Answers and status codes are server.js's: 200 {"message": "Approved the
// payment <id>"} or {"message": "Completed the payment <id>"}; 500
// {"error": "pi_error", "message": ...} when a Pi call fails or answers other
// than 2xx (axios's "Request failed with status code N"); 400 for a body that
// is not JSON and 413 for one over 100 KiB (express.json()); 404 for any other
// route. As Express routes, paths match without regard to case or a trailing
// slash.
func gobaseline(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gobaseline", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:18409", "listen address (loopback)")
	piURL := fs.String("pi-url", "", "Pi API base URL including /v2, such as http://127.0.0.1:18405/v2 (server.js's PI_API_URL)")
	apiKey := fs.String("api-key", "", "the app's server API key (server.js's PI_API_KEY)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *piURL == "" || *apiKey == "" {
		return errors.New("gobaseline: -pi-url and -api-key are required")
	}
	return serveUntilDone(ctx, "gobaseline", *addr, newGoBaseline(*piURL, *apiKey))
}

// goBaseline is the handler of the gobaseline command.
type goBaseline struct {
	api    string // Pi API base URL, without a trailing slash
	auth   string // "Key <api key>"
	client *http.Client
}

// Node's baseline: axios with a 20 s timeout and an http.Agent of at most 256
// sockets, all kept alive.
const (
	goBaselinePiTimeout = 20 * time.Second
	goBaselineConns     = 256
	// jsonBodyLimit is express.json()'s default limit, "100kb".
	jsonBodyLimit = 100 << 10
)

func newGoBaseline(piURL, apiKey string) *goBaseline {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &goBaseline{
		api:  strings.TrimSuffix(piURL, "/"),
		auth: "Key " + apiKey,
		client: &http.Client{
			Timeout: goBaselinePiTimeout,
			Transport: &http.Transport{
				DialContext:         dialer.DialContext,
				MaxIdleConns:        goBaselineConns,
				MaxIdleConnsPerHost: goBaselineConns, // 64 flows in flight keep up to 64 connections to Pi busy
				MaxConnsPerHost:     goBaselineConns,
				IdleConnTimeout:     90 * time.Second,
			},
		},
	}
}

func (b *goBaseline) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(strings.ToLower(r.URL.Path), "/")
	switch {
	case r.Method == http.MethodPost && path == "/payments/approve":
		b.approve(w, r)
	case r.Method == http.MethodPost && path == "/payments/complete":
		b.complete(w, r)
	case (r.Method == http.MethodGet || r.Method == http.MethodHead) && path == "/hello":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "hello from the go baseline\n")
	default:
		expressError(w, http.StatusNotFound, "Cannot "+r.Method+" "+r.URL.Path)
	}
}

// paymentBody is the fields of the routes' JSON bodies.
type paymentBody struct {
	PaymentID jsString `json:"paymentId"`
	TxID      jsString `json:"txid"`
}

// jsString is a JSON value as server.js turns it into a string with
// String(value ?? ”): a string as it is, null (or absent) as "", any other
// value as its JSON text (String() would differ for a few numbers, 1e3, and
// for objects and arrays, which no client sends).
type jsString string

func (s *jsString) UnmarshalJSON(data []byte) error {
	switch {
	case string(data) == "null":
		*s = ""
	case len(data) > 0 && data[0] == '"':
		var v string
		if err := json.Unmarshal(data, &v); err != nil {
			return err
		}
		*s = jsString(v)
	default:
		*s = jsString(data)
	}
	return nil
}

// readBody reads a route's body as express.json() does, and answers the
// request itself (false) when that fails. Without a JSON Content-Type there is
// no body (every field ""); an empty body is {}; the body must be a JSON
// object or array ("strict").
func readBody(w http.ResponseWriter, r *http.Request) (paymentBody, bool) {
	var body paymentBody
	ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	if !strings.EqualFold(strings.TrimSpace(ct), "application/json") {
		return body, true
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, jsonBodyLimit+1))
	if err != nil {
		expressError(w, http.StatusBadRequest, "Bad Request")
		return body, false
	}
	if len(data) > jsonBodyLimit {
		expressError(w, http.StatusRequestEntityTooLarge, "Payload Too Large")
		return body, false
	}
	data = bytes.TrimSpace(data)
	switch {
	case len(data) == 0:
		return body, true
	case data[0] == '{':
		if json.Unmarshal(data, &body) == nil {
			return body, true
		}
	case data[0] == '[':
		if json.Valid(data) {
			return body, true
		}
	}
	expressError(w, http.StatusBadRequest, "Bad Request")
	return body, false
}

// piPayment is the part of Pi's PaymentDTO a backend reads (the reference
// stores an order from it).
type piPayment struct {
	Identifier string  `json:"identifier"`
	UserUID    string  `json:"user_uid"`
	Amount     float64 `json:"amount"`
	Memo       string  `json:"memo"`
	Status     struct {
		DeveloperApproved   bool `json:"developer_approved"`
		TransactionVerified bool `json:"transaction_verified"`
		DeveloperCompleted  bool `json:"developer_completed"`
		Cancelled           bool `json:"cancelled"`
		UserCancelled       bool `json:"user_cancelled"`
	} `json:"status"`
	Transaction *struct {
		TxID string `json:"txid"`
	} `json:"transaction"`
}

func (b *goBaseline) approve(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	id := string(body.PaymentID)
	// Node goes on with its Pi calls when the client goes away.
	ctx := context.WithoutCancel(r.Context())
	path := "/payments/" + url.PathEscape(id)
	var p piPayment
	if err := b.pi(ctx, http.MethodGet, path, nil, &p); err != nil {
		piError(w, err)
		return
	}
	// The reference inserts the order here.
	if err := b.pi(ctx, http.MethodPost, path+"/approve", nil, nil); err != nil {
		piError(w, err)
		return
	}
	writeMessage(w, "Approved the payment "+id)
}

func (b *goBaseline) complete(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	id := string(body.PaymentID)
	ctx := context.WithoutCancel(r.Context())
	req, err := json.Marshal(struct {
		TxID string `json:"txid"`
	}{string(body.TxID)})
	if err != nil {
		piError(w, err)
		return
	}
	// The reference updates the order here.
	if err := b.pi(ctx, http.MethodPost, "/payments/"+url.PathEscape(id)+"/complete", req, nil); err != nil {
		piError(w, err)
		return
	}
	writeMessage(w, "Completed the payment "+id)
}

// pi makes one Pi API call as axios does: Authorization: Key, a JSON body when
// there is one, any status but 2xx an error. With v, the answer is decoded
// into it; an answer that is not JSON is no error (axios hands it over as a
// string, and the reference goes on). Other answers are read and dropped.
func (b *goBaseline) pi(ctx context.Context, method, path string, body []byte, v any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.api+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", b.auth)
	req.Header.Set("Accept", "application/json, text/plain, */*")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer drain(resp)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		//lint:ignore ST1005 axios's message, word for word
		return fmt.Errorf("Request failed with status code %d", resp.StatusCode)
	}
	if v != nil {
		_ = json.NewDecoder(resp.Body).Decode(v)
	}
	return nil
}

func writeMessage(w http.ResponseWriter, msg string) {
	writeJSONBody(w, http.StatusOK, struct {
		Message string `json:"message"`
	}{msg})
}

func piError(w http.ResponseWriter, err error) {
	writeJSONBody(w, http.StatusInternalServerError, struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{"pi_error", err.Error()})
}

// writeJSONBody writes v as res.status(status).json(v) does.
func writeJSONBody(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

// expressError answers as Express's final handler does in production: a small
// HTML page with the message.
func expressError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Error</title>\n</head>\n<body>\n<pre>%s</pre>\n</body>\n</html>\n",
		html.EscapeString(msg))
}
