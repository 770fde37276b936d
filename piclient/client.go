package piclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultBaseURL is the Pi Platform API's production base URL.
const DefaultBaseURL = "https://api.minepi.com/v2"

// Defaults used when Options leaves a field zero. DefaultTimeout bounds each
// HTTP attempt: half the 20 s that Pi's own SDKs allow, so that a re-read
// still fits in the Pi wallet's minute (see the package documentation).
const (
	DefaultTimeout    = 10 * time.Second
	DefaultMaxRetries = 3
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 2 * time.Second
	// MaxResponseBytes bounds how much of a Pi answer is read.
	MaxResponseBytes = 1 << 20
)

// ErrInvalidToken is returned (wrapped) by Me for a malformed access token.
var ErrInvalidToken = errors.New("invalid access token")

// Options configures a Client.
type Options struct {
	// BaseURL of the API, without a trailing slash; default DefaultBaseURL.
	BaseURL string
	// APIKey is the app's server API key, sent as "Authorization: Key <APIKey>".
	APIKey string
	// HTTPClient to use; default a client with its own keep-alive transport.
	// The Client works on a copy that never follows redirects: the Pi API
	// does not redirect, and following one would turn a POST into a GET whose
	// answer (the unchanged payment) would pass for the POST's.
	HTTPClient *http.Client
	// Timeout bounds each HTTP attempt; the caller's context bounds the whole
	// call, retries included. Default DefaultTimeout.
	Timeout time.Duration
	// MaxRetries is how many times a retryable failure is retried; default
	// DefaultMaxRetries. Negative disables retries.
	MaxRetries int
	// MinBackoff and MaxBackoff bound the exponential backoff between retries
	// (and any Retry-After honoured). Defaults DefaultMinBackoff and
	// DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// UserAgent sent with every request; default "caddy-pi-guard".
	UserAgent string
	// Observe, when set, is called after every HTTP attempt (retries
	// included) with the call ("get", "approve", "complete", "cancel",
	// "incomplete" or "me"), Pi's status (0 when no answer came) and how
	// long the attempt took. It must be safe for concurrent use.
	Observe func(op string, status int, took time.Duration)
}

// Client calls the Pi Platform API. It is safe for concurrent use and reuses
// connections.
type Client struct {
	base      string
	shown     string // base with any password redacted
	payments  string // base + "/payments/", which a payment id follows
	cred      *credential
	http      *http.Client
	timeout   time.Duration
	retries   int
	minBack   time.Duration
	maxBack   time.Duration
	userAgent string
	observe   func(op string, status int, took time.Duration)
	calls     atomic.Int64
}

// credential holds the API key. It sits behind a pointer so that printing a
// Client with %#v shows an address, not the key.
type credential struct {
	key    string // never printed
	header string // "Key <api key>"; never printed
	// headers are the values of every request's headers, in the order
	// hdrAuthorization, hdrAccept, hdrUserAgent, hdrContentType; never
	// printed.
	headers [4]string
}

// New returns a Client for opts. It makes no request.
func New(opts Options) (*Client, error) {
	if opts.APIKey == "" {
		return nil, errors.New("piclient: an API key is required (the app's server API key from the Pi Developer Portal)")
	}
	if strings.ContainsAny(opts.APIKey, "\r\n") {
		return nil, errors.New("piclient: the API key contains a line break; check how it is loaded")
	}
	if strings.ContainsFunc(opts.APIKey, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		// net/http would refuse every request carrying it.
		return nil, errors.New("piclient: the API key contains a control character; check how it is loaded")
	}
	base := strings.TrimRight(opts.BaseURL, "/")
	if base == "" {
		base = DefaultBaseURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		shown := base
		if err == nil {
			shown = u.Redacted()
		}
		return nil, fmt.Errorf("piclient: base URL %q must be an absolute http(s) URL without query or fragment, such as %s", shown, DefaultBaseURL)
	}
	c := &Client{
		base:      base,
		shown:     u.Redacted(),
		cred:      &credential{key: opts.APIKey, header: "Key " + opts.APIKey},
		timeout:   opts.Timeout,
		retries:   opts.MaxRetries,
		minBack:   opts.MinBackoff,
		maxBack:   opts.MaxBackoff,
		userAgent: opts.UserAgent,
		observe:   opts.Observe,
	}
	if opts.HTTPClient != nil {
		hc := *opts.HTTPClient
		c.http = &hc
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64
		c.http = &http.Client{Transport: t}
	}
	c.http.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.retries == 0 {
		c.retries = DefaultMaxRetries
	} else if c.retries < 0 {
		c.retries = 0
	}
	if c.minBack <= 0 {
		c.minBack = DefaultMinBackoff
	}
	if c.maxBack <= 0 {
		c.maxBack = DefaultMaxBackoff
	}
	if c.maxBack < c.minBack {
		c.maxBack = c.minBack
	}
	if c.userAgent == "" {
		c.userAgent = "caddy-pi-guard"
	}
	c.payments = c.base + "/payments/"
	c.cred.headers = [4]string{hdrAuthorization: c.cred.header, hdrAccept: "application/json", hdrUserAgent: c.userAgent, hdrContentType: "application/json"}
	return c, nil
}

// String describes the client without its API key.
func (c *Client) String() string { return "piclient.Client{" + c.shown + "}" }

// CloseIdleConnections closes the client's idle keep-alive connections.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// BaseURL returns the API base URL the client calls.
func (c *Client) BaseURL() string { return c.base }

// Attempts returns how many HTTP requests the client has sent, retries included.
func (c *Client) Attempts() int64 { return c.calls.Load() }

// GetPayment reads a payment: GET /payments/{id}.
func (c *Client) GetPayment(ctx context.Context, id string) (*Payment, error) {
	if err := ValidatePaymentID(id); err != nil {
		return nil, &Error{Op: "get", Err: err}
	}
	var p Payment
	return c.checkPayment("get", &p, id, c.do(ctx, call{op: "get", id: id, method: http.MethodGet, url: c.payments + id, idempotent: true}, &p))
}

// Approve approves a payment: POST /payments/{id}/approve.
func (c *Client) Approve(ctx context.Context, id string) (*Payment, error) {
	if err := ValidatePaymentID(id); err != nil {
		return nil, &Error{Op: "approve", Err: err}
	}
	var p Payment
	return c.checkPayment("approve", &p, id, c.do(ctx, call{op: "approve", id: id, method: http.MethodPost, url: c.payments + id + "/approve"}, &p))
}

// Complete completes a payment with the transaction id the user's wallet
// submitted: POST /payments/{id}/complete {"txid": txid}. The txid is sent in
// lower case (NormalizeTxID), as Pi writes it.
func (c *Client) Complete(ctx context.Context, id, txid string) (*Payment, error) {
	if err := ValidatePaymentID(id); err != nil {
		return nil, &Error{Op: "complete", Err: err}
	}
	if err := ValidateTxID(txid); err != nil {
		return nil, &Error{Op: "complete", PaymentID: id, Err: err}
	}
	// What json.Marshal writes for struct{TxID string `json:"txid"`}: a
	// valid txid is hex digits, which JSON needs no escape for.
	body := make([]byte, 0, len(`{"txid":""}`)+TxIDLength)
	body = append(append(append(body, `{"txid":"`...), NormalizeTxID(txid)...), `"}`...)
	var p Payment
	return c.checkPayment("complete", &p, id, c.do(ctx, call{op: "complete", id: id, method: http.MethodPost, url: c.payments + id + "/complete", body: body}, &p))
}

// Cancel cancels a payment: POST /payments/{id}/cancel.
func (c *Client) Cancel(ctx context.Context, id string) (*Payment, error) {
	if err := ValidatePaymentID(id); err != nil {
		return nil, &Error{Op: "cancel", Err: err}
	}
	var p Payment
	return c.checkPayment("cancel", &p, id, c.do(ctx, call{op: "cancel", id: id, method: http.MethodPost, url: c.payments + id + "/cancel"}, &p))
}

// IncompleteServerPayments lists the app's incomplete app-to-user payments:
// GET /payments/incomplete_server_payments.
func (c *Client) IncompleteServerPayments(ctx context.Context) ([]Payment, error) {
	var out struct {
		Payments *[]Payment `json:"incomplete_server_payments"`
	}
	if err := c.do(ctx, call{op: "incomplete", method: http.MethodGet, url: c.payments + "incomplete_server_payments", idempotent: true}, &out); err != nil {
		return nil, err
	}
	if out.Payments == nil {
		return nil, &Error{Op: "incomplete", StatusCode: http.StatusOK, Err: errors.New("answer has no incomplete_server_payments field")}
	}
	return *out.Payments, nil
}

// Me reads the user an access token belongs to: GET /me with
// "Authorization: Bearer <accessToken>". A 401 (IsUnauthorized) means the
// token is invalid or expired.
func (c *Client) Me(ctx context.Context, accessToken string) (*User, error) {
	if accessToken == "" || len(accessToken) > 4096 || strings.ContainsFunc(accessToken, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return nil, &Error{Op: "me", Err: fmt.Errorf("%w: must be 1 to 4096 printable ASCII characters", ErrInvalidToken)}
	}
	var u User
	if err := c.do(ctx, call{op: "me", method: http.MethodGet, url: c.base + "/me", idempotent: true, bearer: accessToken}, &u); err != nil {
		return nil, err
	}
	if u.UID == "" {
		return nil, &Error{Op: "me", StatusCode: http.StatusOK, Err: errors.New("answer has no uid")}
	}
	return &u, nil
}

// checkPayment turns a decoded answer that is not the payment asked for into
// an "unavailable" error: an answer we cannot trust is no answer.
func (c *Client) checkPayment(op string, p *Payment, id string, err error) (*Payment, error) {
	if err != nil {
		return nil, err
	}
	if p.Identifier != id {
		return nil, &Error{Op: op, PaymentID: id, StatusCode: http.StatusOK,
			Err: fmt.Errorf("answer is for payment %q, not the one asked for", truncate(redact(p.Identifier, c.cred.key), MaxPaymentIDLength))}
	}
	return p, nil
}

type call struct {
	op, id, method, url string
	body                []byte
	idempotent          bool
	bearer              string
}

// do runs a call with retries and decodes a 200 answer into out.
func (c *Client) do(ctx context.Context, cl call, out any) error {
	for attempt := 0; ; attempt++ {
		retryable, err := c.attempt(ctx, cl, out)
		if err == nil {
			return nil
		}
		if !retryable || attempt >= c.retries || ctx.Err() != nil {
			return err
		}
		wait := c.backoff(attempt, err)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// backoff is full-jitter exponential backoff, or Pi's Retry-After when longer,
// never more than MaxBackoff.
func (c *Client) backoff(attempt int, err error) time.Duration {
	ceil := c.minBack
	for i := 0; i < attempt && ceil < c.maxBack; i++ {
		if ceil > c.maxBack/2 {
			ceil = c.maxBack
			break
		}
		ceil *= 2
	}
	ceil = min(ceil, c.maxBack)
	d := c.minBack/2 + rand.N(ceil)
	if d < 0 || d > c.maxBack {
		d = c.maxBack
	}
	var e *Error
	if errors.As(err, &e) && e.RetryAfter > d {
		d = min(e.RetryAfter, c.maxBack)
	}
	return d
}

// The request headers, in the order of credential.headers.
const (
	hdrAuthorization = iota
	hdrAccept
	hdrUserAgent
	hdrContentType
)

// writeTrace notes whether a request was written to a connection.
type writeTrace struct {
	trace httptrace.ClientTrace
	wrote atomic.Bool
}

// attempt makes one HTTP request. It reports whether a failure may be retried.
func (c *Client) attempt(ctx context.Context, cl call, out any) (retryable bool, err error) {
	// Bound the attempt by the timeout, unless the caller's deadline comes
	// first: context.WithDeadline would then only add a cancel to it.
	actx := ctx
	if d := time.Now().Add(c.timeout); !deadlineBefore(ctx, d) {
		var cancel context.CancelFunc
		actx, cancel = context.WithDeadline(ctx, d)
		defer cancel()
	}
	secret := c.cred.key
	if cl.bearer != "" {
		secret = cl.bearer
	}
	// A read is retried whether or not it was written; a state-changing
	// call only when it certainly was not.
	var wt *writeTrace
	if !cl.idempotent {
		wt = new(writeTrace)
		wt.trace.WroteHeaders = func() { wt.wrote.Store(true) }
		actx = httptrace.WithClientTrace(actx, &wt.trace)
	}
	var body io.Reader
	if cl.body != nil {
		body = bytes.NewReader(cl.body)
	}
	req, err := http.NewRequestWithContext(actx, cl.method, cl.url, body)
	if err != nil {
		return false, &Error{Op: cl.op, PaymentID: cl.id, Err: redactErr(err, secret)}
	}
	// The header's keys are canonical already, and each request has values
	// of its own, as Header.Set would give it.
	vals := make([]string, len(c.cred.headers))
	copy(vals, c.cred.headers[:])
	if cl.bearer != "" {
		vals[hdrAuthorization] = "Bearer " + cl.bearer
	}
	h := req.Header
	h["Authorization"] = vals[hdrAuthorization : hdrAuthorization+1 : hdrAuthorization+1]
	h["Accept"] = vals[hdrAccept : hdrAccept+1 : hdrAccept+1]
	h["User-Agent"] = vals[hdrUserAgent : hdrUserAgent+1 : hdrUserAgent+1]
	if cl.body != nil {
		h["Content-Type"] = vals[hdrContentType : hdrContentType+1 : hdrContentType+1]
	}
	c.calls.Add(1)
	start := time.Now()
	resp, err := c.http.Do(req)
	if c.observe != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		defer func() { c.observe(cl.op, status, time.Since(start)) }()
	}
	if err != nil {
		// A request never written certainly did not reach Pi.
		return cl.idempotent || !wt.wrote.Load(), &Error{Op: cl.op, PaymentID: cl.id, Err: redactErr(scrubURL(err), secret)}
	}
	return c.answer(resp, &cl, out, secret)
}

// answer reads and closes resp's body and decodes a 200 answer into out. It
// reports whether a failure may be retried.
func (c *Client) answer(resp *http.Response, cl *call, out any, secret string) (retryable bool, err error) {
	defer resp.Body.Close()
	buf := answerBufs.Get().(*[]byte)
	defer putAnswerBuf(buf)
	data, readErr := readAnswer(resp.Body, resp.ContentLength, buf)
	if readErr == nil && len(data) > MaxResponseBytes {
		readErr = fmt.Errorf("answer larger than %d bytes", MaxResponseBytes)
	}
	// data goes back to the pool when answer returns: what is kept of it
	// must be copied. encoding/json copies every string and RawMessage it
	// decodes, Amount.UnmarshalJSON copies its text, and parseErrorBody
	// keeps only decoded values.
	if resp.StatusCode != http.StatusOK {
		e := &Error{Op: cl.op, PaymentID: cl.id, StatusCode: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
		switch eb, ok := parseErrorBody(data, secret); {
		case readErr != nil:
			e.Err = redactErr(fmt.Errorf("reading answer: %w", scrubURL(readErr)), secret)
		case ok:
			e.Code, e.Message, e.VerificationError, e.Payment = eb.Code, eb.Message, eb.VerificationError, eb.Payment
		default:
			e.Err = notAPIError(resp.Header.Get("Content-Type"))
		}
		// 429 means Pi did not act on the request; reads retry on any
		// unavailability.
		return resp.StatusCode == http.StatusTooManyRequests || (cl.idempotent && e.Unavailable()), e
	}
	if readErr != nil {
		return cl.idempotent, &Error{Op: cl.op, PaymentID: cl.id, StatusCode: resp.StatusCode, Err: redactErr(fmt.Errorf("reading answer: %w", scrubURL(readErr)), secret)}
	}
	// Decode into a fresh value: a failed earlier attempt may have filled
	// part of out, and fields this answer omits must not keep that data.
	reflect.ValueOf(out).Elem().SetZero()
	if p, ok := out.(*Payment); ok {
		if decodePayment(data, p) {
			return false, nil
		}
		*p = Payment{}
	}
	if err := json.Unmarshal(data, out); err != nil {
		reflect.ValueOf(out).Elem().SetZero()
		return cl.idempotent, &Error{Op: cl.op, PaymentID: cl.id, StatusCode: resp.StatusCode, Err: redactErr(fmt.Errorf("malformed answer: %w", err), secret)}
	}
	return false, nil
}

// deadlineBefore reports whether ctx has a deadline before d.
func deadlineBefore(ctx context.Context, d time.Time) bool {
	dl, ok := ctx.Deadline()
	return ok && dl.Before(d)
}

// answerBufs holds buffers to read answers into. A Pi answer is about a
// kilobyte; a buffer grown past maxPooledAnswer is left to the garbage
// collector rather than kept.
var answerBufs = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledAnswer = 64 << 10

func putAnswerBuf(buf *[]byte) {
	if cap(*buf) <= maxPooledAnswer {
		*buf = (*buf)[:0]
		answerBufs.Put(buf)
	}
}

// readAnswer reads body to its end, but no more than MaxResponseBytes+1
// bytes, into *buf (growing it, and leaving the grown buffer in *buf), as
// io.ReadAll(io.LimitReader(body, MaxResponseBytes+1)) does. size is the
// answer's Content-Length, or -1 when unknown: the buffer is sized for it at
// once, up to maxPooledAnswer, past which it grows as the answer comes.
func readAnswer(body io.Reader, size int64, buf *[]byte) ([]byte, error) {
	b := (*buf)[:0]
	want := int64(512) // as io.ReadAll starts
	if size >= 0 {
		// One byte more than announced, so that the read that finds the
		// end need not grow the buffer.
		want = min(size, maxPooledAnswer) + 1
	}
	if int64(cap(b)) < want {
		b = make([]byte, 0, want)
	}
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		room := b[len(b):cap(b)]
		if left := MaxResponseBytes + 1 - len(b); len(room) > left {
			room = room[:left]
		}
		n, err := body.Read(room)
		b = b[:len(b)+n]
		if err != nil || len(b) > MaxResponseBytes {
			*buf = b
			if err == io.EOF {
				err = nil
			}
			return b, err
		}
	}
}

// scrubURL drops the URL from *url.Error so errors stay short; the key is
// never in a URL, but a base URL with user info could be.
func scrubURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", strings.ToLower(ue.Op), ue.Err)
	}
	return err
}

// maxRetryAfterSeconds bounds a Retry-After in seconds (one day).
const maxRetryAfterSeconds = 24 * 60 * 60

// retryAfter parses a Retry-After header (seconds or HTTP date).
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && s >= 0 {
		// Clamp so that the multiplication cannot overflow into a negative or
		// small duration; the caller caps it at MaxBackoff anyway.
		return time.Duration(min(s, maxRetryAfterSeconds)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}
