package pitest

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Endpoint names an endpoint of the fake, for faults and call counts.
type Endpoint string

// The endpoints of the fake.
const (
	EndpointGet        Endpoint = "get"        // GET /v2/payments/{id}
	EndpointApprove    Endpoint = "approve"    // POST /v2/payments/{id}/approve
	EndpointComplete   Endpoint = "complete"   // POST /v2/payments/{id}/complete
	EndpointCancel     Endpoint = "cancel"     // POST /v2/payments/{id}/cancel
	EndpointIncomplete Endpoint = "incomplete" // GET /v2/payments/incomplete_server_payments
	EndpointMe         Endpoint = "me"         // GET /v2/me
	EndpointHorizon    Endpoint = "horizon"    // GET /horizon/transactions/{txid}[/operations]
)

// Endpoints lists every Endpoint.
var Endpoints = []Endpoint{EndpointGet, EndpointApprove, EndpointComplete, EndpointCancel, EndpointIncomplete, EndpointMe, EndpointHorizon}

func (ep Endpoint) valid() bool {
	for _, e := range Endpoints {
		if ep == e {
			return true
		}
	}
	return false
}

// Fault is a failure to inject into the calls of an endpoint. Its parts act in
// this order: Delay; then Drop, or Status; otherwise the call is performed and
// its answer replaced as DropResponse, Truncated or Malformed say.
type Fault struct {
	// Status answers with this status (400-599) and an error body, without
	// performing the call.
	Status int
	// HTML makes Status answer with an HTML page instead of Pi's JSON error
	// body: for 500 the Rails page Pi's front servers have sent ("We're
	// sorry, but something went wrong (500)"), for any other status a
	// proxy's page. It needs Status.
	HTML bool
	// RetryAfter sends a Retry-After header with Status, in whole seconds
	// rounded up.
	RetryAfter time.Duration
	// Delay sleeps before handling the call. If the client goes away (or the
	// Server closes) meanwhile, the call is not performed and the connection
	// is closed.
	Delay time.Duration
	// Drop closes the connection without answering; the call is not
	// performed. Note that Go's http.Transport silently replays an idempotent
	// request (GET) whose reused keep-alive connection closes unanswered, so
	// one client attempt may be counted twice.
	Drop bool
	// Malformed performs the call, then answers with its status and a body
	// that is not JSON.
	Malformed bool
	// Truncated performs the call, then answers with its status and the first
	// half of its JSON body (with an honest Content-Length).
	Truncated bool
	// DropResponse performs the call, then closes the connection without
	// answering.
	DropResponse bool
	// Times applies the fault to the next Times calls; 0 means every call
	// until ClearFaults.
	Times int
	// Fraction, if above 0, applies the fault to this fraction of calls at
	// random, until ClearFaults; Times is then ignored.
	Fraction float64
}

func (f Fault) validate() error {
	switch {
	case f.Status != 0 && (f.Status < 400 || f.Status > 599):
		return fmt.Errorf("%w: fault status %d is not 400-599", ErrInvalid, f.Status)
	case f.HTML && f.Status == 0:
		return fmt.Errorf("%w: an HTML fault needs a status", ErrInvalid)
	case f.RetryAfter < 0 || f.Delay < 0:
		return fmt.Errorf("%w: fault durations must not be negative", ErrInvalid)
	case f.Times < 0:
		return fmt.Errorf("%w: fault times must not be negative", ErrInvalid)
	case f.Fraction < 0 || f.Fraction > 1:
		return fmt.Errorf("%w: fault fraction must be between 0 and 1", ErrInvalid)
	}
	return nil
}

type queuedFault struct {
	f    Fault
	left int // calls left for a Times fault
}

// InjectFault queues f for the calls of ep. Faults of one endpoint apply in
// the order injected: a Times fault is used up before the next one applies, a
// permanent fault (Times 0) hides every fault after it, and a Fraction fault
// that does not hit a call lets the next fault in the queue be tried. It
// panics if ep is unknown or f is invalid (a Status outside 400-599, negative
// Times or durations, Fraction outside [0, 1]).
func (s *Server) InjectFault(ep Endpoint, f Fault) {
	if err := s.injectFault(ep, f); err != nil {
		panic(err.Error())
	}
}

func (s *Server) injectFault(ep Endpoint, f Fault) error {
	if !ep.valid() {
		return fmt.Errorf("%w: unknown endpoint %q", ErrInvalid, ep)
	}
	if err := f.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[ep] = append(s.faults[ep], &queuedFault{f: f, left: f.Times})
	return nil
}

// ClearFaults removes every injected fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.faults)
}

// SetLatency adds d to every call of the API and of Horizon (not of the
// control API), to measure with a realistic round trip.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = max(d, 0)
}

// takeFault picks the fault for a call of ep, if any, using up one of its
// Times.
func (s *Server) takeFault(ep Endpoint) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.faults[ep]
	for i, qf := range q {
		switch {
		case qf.f.Fraction > 0:
			if s.rnd.Float64() < qf.f.Fraction {
				return qf.f, true
			}
		case qf.left > 0:
			qf.left--
			if qf.left == 0 {
				s.faults[ep] = append(q[:i:i], q[i+1:]...)
			}
			return qf.f, true
		default:
			return qf.f, true
		}
	}
	return Fault{}, false
}

type callKey struct {
	ep Endpoint
	id string
}

// Calls returns how many requests ep received, faulted ones included.
func (s *Server) Calls(ep Endpoint) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[ep]
}

// CallsFor returns how many requests ep received about one payment (for
// EndpointHorizon: about the payment's transaction). EndpointIncomplete and
// EndpointMe are about no payment: use "".
func (s *Server) CallsFor(ep Endpoint, paymentID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.callsFor[callKey{ep, paymentID}]
}

// ResetCalls sets every call count to zero.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.calls)
	clear(s.callsFor)
}

func (s *Server) count(ep Endpoint, paymentID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[ep]++
	s.callsFor[callKey{ep, paymentID}]++
}

// answer is what an endpoint would send.
type answer struct {
	status      int
	contentType string
	body        []byte
}

func jsonAnswer(status int, body []byte) answer {
	return answer{status: status, contentType: "application/json; charset=utf-8", body: body}
}

// malformedBody is what a Malformed fault sends: an HTML error page, as a
// misbehaving proxy would.
const malformedBody = "<!DOCTYPE html>\n<html><body><h1>pitest: malformed answer</h1></body></html>\n"

// railsErrorPage is the page Pi's front servers (nginx, Phusion Passenger,
// Rails) answered 500 with, as posted in pi-apps/pi-platform-docs#27 and
// #29 (styles shortened).
const railsErrorPage = `<!DOCTYPE html>
<html>
<head>
  <title>We're sorry, but something went wrong (500)</title>
  <meta name="viewport" content="width=device-width,initial-scale=1">
  <style>
  .rails-default-error-page { background-color: #EFEFEF; color: #2E2F30; text-align: center; font-family: arial, sans-serif; margin: 0; }
  </style>
</head>
<body class="rails-default-error-page">
  <div class="dialog">
    <div>
      <h1>We're sorry, but something went wrong.</h1>
    </div>
    <p>If you are the application owner check the logs for more information.</p>
  </div>
</body>
</html>
`

// htmlPage is the body of an HTML fault: Rails' page for 500, otherwise the
// kind of page nginx or a firewall sends.
func htmlPage(status int) []byte {
	if status == http.StatusInternalServerError {
		return []byte(railsErrorPage)
	}
	title := strconv.Itoa(status) + " " + http.StatusText(status)
	return []byte("<html>\r\n<head><title>" + title + "</title></head>\r\n<body>\r\n<center><h1>" + title +
		"</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
}

// serveCall runs one call of ep about paymentID through latency and faults;
// perform carries the call out and returns its answer.
func (s *Server) serveCall(w http.ResponseWriter, r *http.Request, ep Endpoint, paymentID string, perform func() answer) {
	s.count(ep, paymentID)
	f, _ := s.takeFault(ep)
	s.mu.Lock()
	wait := s.latency + f.Delay
	s.mu.Unlock()
	if !s.sleep(r.Context(), wait) {
		drop(w)
		return
	}
	if f.Drop {
		drop(w)
		return
	}
	if f.Status != 0 {
		if f.RetryAfter > 0 {
			secs := (f.RetryAfter + time.Second - 1) / time.Second
			w.Header().Set("Retry-After", strconv.FormatInt(int64(secs), 10))
		}
		code := strings.ToLower(strings.ReplaceAll(http.StatusText(f.Status), " ", "_"))
		if code == "" {
			code = "error_" + strconv.Itoa(f.Status)
		}
		msg := "pitest: injected fault"
		if f.HTML {
			writeBody(w, f.Status, "text/html; charset=utf-8", htmlPage(f.Status))
		} else if ep == EndpointHorizon {
			writeProblem(w, f.Status, http.StatusText(f.Status), msg)
		} else {
			writeError(w, f.Status, code, msg)
		}
		return
	}
	a := perform()
	switch {
	case f.DropResponse:
		drop(w)
	case f.Truncated:
		writeBody(w, a.status, a.contentType, a.body[:len(a.body)/2])
	case f.Malformed:
		writeBody(w, a.status, "text/html; charset=utf-8", []byte(malformedBody))
	default:
		writeBody(w, a.status, a.contentType, a.body)
	}
}

// sleep waits d; it reports false if the request or the Server ended first.
func (s *Server) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		// The request may have ended at the same time: select picks at random.
		select {
		case <-s.closing:
			return false
		default:
			return ctx.Err() == nil
		}
	case <-ctx.Done():
		return false
	case <-s.closing:
		return false
	}
}

// drop closes the connection without answering. When w cannot be hijacked it
// panics with http.ErrAbortHandler, which net/http servers treat as an abort.
func drop(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}
