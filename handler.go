package piguard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	pathpkg "path"
	"strings"
	"time"
	"unicode"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

// Phases of a payment, as named in logs, errors, records and the tokens'
// phase claim.
const (
	phaseApprove    = verify.PhaseApprove
	phaseComplete   = verify.PhaseComplete
	phaseIncomplete = verify.PhaseIncomplete
	phaseCancel     = verify.PhaseCancel
)

// step is what one guarded request did, for its log line.
type step struct {
	phase, id, txid, uid string
	claimed              string // incomplete route: the txid the posted body names, if any
	claimedLink          string // incomplete route: the transaction link the posted body names, if any
	outcome              string
	piCalls              int
	piTime               time.Duration
	start, ready         time.Time     // ready: the guard's own work is done; forwarding starts
	upstream             time.Duration // time spent in the app (next handler)
	limit                *piLimit      // bounds the Pi calls in flight
	h                    *Handler      // when set, remembers what Pi's answers settle (Handler.learn)
	// r is the client's request, for the guard's own work nil: every Pi
	// call its client causes is bounded (lookups.call), and, until its
	// first Pi call (while admitPending), so are lookups of ids the guard
	// has not seen (see Handler.LookupRate), with a "not found" from Pi
	// remembered against its client (lookups.missed).
	r               *http.Request
	admitPending    bool
	client, network string // clientOf(r) and its networkOf, once worked out
	// creds and who, once looked up (see Handler.stepCredentials and
	// Handler.stepApprover): the request's credentials and the payment's
	// approver as the guard knew it when the request came.
	creds      []string
	credsKnown bool
	who        *ledger.Approver
	whoKnown   bool
	// then is work that must run under the payment's locks but need not
	// delay the client's answer (recording that the app has the payment):
	// it runs in the background and the locks are released after it.
	then func()
}

// forward hands the request to the next handler (the app), timing it.
func (s *step) forward(x *exchange, w http.ResponseWriter) error {
	s.ready = time.Now()
	err := x.next.ServeHTTP(w, x.r)
	s.upstream += time.Since(s.ready)
	return err
}

// pi runs one Pi API call, within the bound on calls in flight, accounts for
// its latency and remembers what the answer settles.
func (s *step) pi(call func() (*piclient.Payment, error)) (*piclient.Payment, error) {
	lookup := s.admitPending
	if lookup {
		s.admitPending = false
		if ge := s.h.admitLookup(s); ge != nil {
			return nil, ge
		}
	}
	if ge := s.allowCall(); ge != nil {
		return nil, ge
	}
	release, err := s.limit.acquire()
	if err != nil {
		return nil, err
	}
	defer release()
	start := time.Now()
	p, err := call()
	s.piTime += time.Since(start)
	s.piCalls++
	if s.h != nil {
		s.h.learn(s.id, p, err)
	}
	if lookup && piclient.IsNotFound(err) {
		client, network := s.clientAndNetwork()
		s.h.lookups.missedBy(client, network)
	}
	return p, err
}

// allowCall bounds the Pi calls the request's client causes (see
// lookups.call); nil for the guard's own work.
func (s *step) allowCall() *guardError {
	if s.r == nil {
		return nil
	}
	return s.h.lookups.callBy(s.clientOf())
}

// clientOf is clientOf the step's request, worked out once per request.
func (s *step) clientOf() string {
	if s.client == "" {
		s.client = clientOf(s.r)
	}
	return s.client
}

// clientAndNetwork is clientAndNetwork of the step's request, worked out
// once per request.
func (s *step) clientAndNetwork() (client, network string) {
	if s.network == "" {
		s.network = networkOf(s.clientOf())
	}
	return s.client, s.network
}

// exchange is the request being guarded and where it goes next.
type exchange struct {
	w    http.ResponseWriter
	r    *http.Request
	next caddyhttp.Handler
	body []byte
}

// ServeHTTP strips any client-sent copy of the guard's headers from every
// request (as headers, as trailers, and from the Connection list that would
// make a proxy drop the guard's own copy), then guards the payment routes and
// passes everything else on.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	body := h.stripHeaders(r)
	phase := h.phaseOf(r.URL.Path)
	if phase == "" && h.nearRoute(r.URL.Path) {
		// Not a payment route, but one an app's router or file server may
		// take for one (another encoding, extension or letter folding):
		// never passed on unguarded.
		closeIfUnread(w, r, body)
		h.allowOrigin(w, r)
		writeError(w, refuse(http.StatusNotFound, "not_a_payment_route", "%q is not a payment route: post to the route itself", r.URL.Path))
		return nil
	}
	if phase != "" && r.Method == http.MethodOptions && h.servePreflight(w, r) {
		return nil
	}
	if phase == "" || r.Method == http.MethodOptions {
		if h.JWKSPath != "" && r.URL.Path == h.JWKSPath {
			return h.serveJWKS(w, r)
		}
		// OPTIONS on a payment route is a CORS preflight (a frontend on
		// another origin, as in Pi's reference app): the app answers it,
		// unless its origin is in cors_origins (servePreflight). It carries
		// no payment and is never verified.
		return next.ServeHTTP(w, r)
	}
	// A route variant is guarded as its route, and goes on (and is recorded)
	// as the route itself: the app never sees a variant a stranger picked.
	r.URL.Path, r.URL.RawPath = h.routePath(phase), ""
	st := &step{phase: phase, start: time.Now(), limit: h.piLimit, h: h, r: r, admitPending: true}
	err := h.serve(w, r, next, st)
	if ge, ok := asGuardError(err); ok {
		st.outcome = ge.Code
		h.logStep(st, ge)
		h.allowOrigin(w, r) // the guard's own answer: readable by a cors_origins frontend
		if errors.Is(ge.cause, context.Canceled) && r.Context().Err() != nil {
			return nil // the client went away; nobody to answer
		}
		ge.PaymentID = st.id
		closeIfUnread(w, r, body)
		writeError(w, ge)
		return nil
	}
	h.logStep(st, err)
	return err
}

// phaseOf returns the payment route path is, or "". Besides the exact
// configured path it matches the variants a web framework routes to the same
// handler (Express, by default: any letter case, a trailing slash; also
// "//" and dot segments), so that a frontend posting to one never passes
// through unguarded.
func (h *Handler) phaseOf(path string) string {
	switch path {
	case h.ApprovePath:
		return phaseApprove
	case h.CompletePath:
		return phaseComplete
	case h.IncompletePath:
		return phaseIncomplete
	case h.CancelPath:
		return phaseCancel
	}
	return h.routes[routeKey(path)]
}

// routePath is the configured path of a phase's route.
func (h *Handler) routePath(phase string) string {
	switch phase {
	case phaseApprove:
		return h.ApprovePath
	case phaseComplete:
		return h.CompletePath
	case phaseIncomplete:
		return h.IncompletePath
	}
	return h.CancelPath
}

// nearRoute reports whether path is close enough to a payment route for
// some web framework or file server to route it there (see looseKey).
func (h *Handler) nearRoute(path string) bool {
	_, near := h.nearRoutes[looseKey(path)]
	return near
}

// looseKey is routeKey, and more: what a lenient router may read a path as.
// Percent-escapes are decoded once more, backslashes read as slashes,
// matrix parameters cut from every segment, a segment cut at a NUL byte or
// an NTFS stream name ("::$DATA") and stripped of trailing dots and white
// space (Windows file names), letters folded through upper case (so that
// "ſ" is "s" and "ı" is "i", as in JavaScript and Java), and every
// extension of the last segment dropped.
func looseKey(p string) string {
	if u, err := url.PathUnescape(p); err == nil {
		p = u
	}
	segs := strings.Split(strings.ReplaceAll(p, "\\", "/"), "/")
	for i, s := range segs {
		s, _, _ = strings.Cut(s, ";")
		s, _, _ = strings.Cut(s, "\x00")
		s, _, _ = strings.Cut(s, "::") // an NTFS stream: name::$DATA
		if s != "." && s != ".." {
			s = strings.TrimRightFunc(s, func(r rune) bool { return r == '.' || unicode.IsSpace(r) || unicode.IsControl(r) })
		}
		segs[i] = strings.Map(func(r rune) rune { return unicode.ToLower(unicode.ToUpper(r)) }, s)
	}
	p = pathpkg.Clean("/" + strings.Join(segs, "/"))
	if dot := strings.IndexByte(p[strings.LastIndexByte(p, '/')+1:], '.'); dot > 0 {
		p = p[:strings.LastIndexByte(p, '/')+1+dot] // every extension: complete.json.html
	}
	return p
}

// routeKey is the form of a path under which route variants compare equal:
// letter case, a trailing slash, "//" and dot segments, path parameters
// (";jsessionid=...", read by Java servlets) and a ".json" format suffix
// (read by Rails) do not matter.
func routeKey(p string) string {
	p, _, _ = strings.Cut(p, ";")
	p = strings.ToLower(pathpkg.Clean("/" + p))
	if len(p) > 1 {
		p = strings.TrimRight(p, "/")
	}
	return strings.TrimSuffix(p, ".json")
}

// serve reads and checks the callback, takes the payment's lock (held until
// the app has answered, so duplicates queue instead of racing) and runs the
// phase. Completions also take the cross-instance storage lock and read the
// payment's record; approvals and cancellations change nothing that a
// duplicate on another instance could double, so they lock in-process only.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, st *step) error {
	body, ge := h.readCallback(w, r, st)
	if ge != nil {
		return ge
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(h.Timeout))
	defer cancel()
	if h.users != nil {
		if st.uid, ge = h.users.authenticate(ctx, r, st, h.lookups); ge != nil {
			return ge
		}
	}
	if ge := h.facts.refuse(st); ge != nil {
		return ge // settled by what Pi already told: no lock, no Pi call
	}
	early := st.phase == phaseIncomplete || (st.phase == phaseComplete && h.stranger(ctx, st, r))
	if early && !h.completedHere(ctx, st.id) {
		// Most posts of an unfinished payment by anyone but its payer are
		// refused on what Pi shows (no transaction yet, another or an
		// unverified one): settled from a shared read (see peek), without
		// queueing on the payment's lock and without a Pi call each, so
		// that a flood of them never delays the payer nor burns the app's
		// Pi quota. (A payment the guard recorded complete is replayed
		// from its record.)
		if ge := h.refuseEarly(ctx, st, r); ge != nil {
			return ge
		}
	}
	x := &exchange{w: w, r: r, next: next, body: body}
	if st.phase == phaseApprove || st.phase == phaseCancel {
		unlock, ge := h.lockLocal(ctx, st.id)
		if ge != nil {
			return ge
		}
		defer unlock()
		if ge := h.facts.refuse(st); ge != nil {
			return ge // learnt while this request waited
		}
		if st.phase == phaseApprove {
			return h.serveApprove(ctx, st, x)
		}
		return h.serveCancel(ctx, st, x)
	}
	unlock, ge := h.lockPayment(ctx, st.id)
	if ge != nil {
		return ge
	}
	defer h.release(st, unlock)
	if ge := h.facts.refuse(st); ge != nil {
		return ge // learnt while this request waited
	}
	rec, err := h.store.Load(ctx, st.id)
	if err != nil {
		return storageFailure(err, st.id)
	}
	switch st.phase {
	case phaseComplete:
		return h.serveComplete(ctx, st, rec, x)
	default:
		return h.serveIncomplete(ctx, st, rec, x)
	}
}

// refuseEarly is the answer to an incomplete post, or a stranger's complete
// post, that Pi's state, as peek reads it, refuses; nil when the guard must
// act. (The payer's completion reads Pi afresh under the payment's lock.)
func (h *Handler) refuseEarly(ctx context.Context, st *step, r *http.Request) *guardError {
	p, ge := h.peek(ctx, st, r)
	if ge != nil {
		return ge
	}
	if st.phase == phaseIncomplete {
		return h.incompleteRefusal(p, st)
	}
	if paid(p, st.txid) {
		return nil
	}
	if ge := h.completable(p, st); ge != nil {
		return ge
	}
	if p.TxID() == st.txid && !(p.Transaction.Verified && p.Status.TransactionVerified) {
		ge := refuse(http.StatusConflict, "transaction_not_verified", "Pi has not verified the payment's transaction yet; retry later")
		ge.Retryable = true
		return ge
	}
	return nil
}

// completedHere reports whether the guard holds a record of payment id
// completed (read without its lock: a completed record never goes back).
func (h *Handler) completedHere(ctx context.Context, id string) bool {
	rec, err := h.store.Load(ctx, id)
	return err == nil && rec.Completed()
}

// readCallback checks the method, reads the body (bounded, restored on r)
// and validates the payment id, and the txid on the complete route.
func (h *Handler) readCallback(w http.ResponseWriter, r *http.Request, st *step) ([]byte, *guardError) {
	if r.Method != http.MethodPost {
		return nil, refuse(http.StatusMethodNotAllowed, "method_not_allowed", "%s accepts POST only", r.URL.Path)
	}
	if len(r.Trailer) > 0 {
		return nil, refuse(http.StatusBadRequest, "trailers_not_allowed", "payment routes do not accept trailers: send every header before the body")
	}
	for _, name := range []string{"Content-Type", "Content-Encoding", "Content-Length", "Transfer-Encoding"} {
		if len(r.Header.Values(name)) > 1 {
			// An app could read another one than the guard (the last
			// Content-Type, say) and so another payment out of the body.
			return nil, refuse(http.StatusBadRequest, "ambiguous_request", "payment routes take one %s header: send it once", name)
		}
	}
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		// Many frameworks merge the query into the request's parameters
		// (Rails, PHP's $_REQUEST, Express's req.query with brackets), where
		// it could name another payment than the body.
		return nil, refuse(http.StatusBadRequest, "bad_request", "payment routes take no query string: send the payment's fields in the body only")
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		// The guard reads the body as sent; an app's parser may inflate it.
		return nil, refuse(http.StatusUnsupportedMediaType, "unsupported_media_type", "payment routes take no Content-Encoding (got %q): send the body uncompressed", ce)
	}
	body, err := readBody(w, r, h.MaxBody)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, refuse(http.StatusRequestEntityTooLarge, "body_too_large", "the request body is larger than %d bytes", h.MaxBody)
		}
		ge := refuse(http.StatusBadRequest, "bad_body", "the request body could not be read")
		ge.cause = err
		return nil, ge
	}
	if len(r.Trailer) > 0 { // undeclared trailers appear only at the end of the body
		return nil, refuse(http.StatusBadRequest, "trailers_not_allowed", "payment routes do not accept trailers: send every header before the body")
	}
	r.Trailer = nil
	cb, err := parseCallback(r.Header.Get("Content-Type"), body)
	if err != nil {
		if errors.Is(err, errUnsupportedMedia) {
			return nil, refuse(http.StatusUnsupportedMediaType, "unsupported_media_type", "%v", err)
		}
		return nil, refuse(http.StatusBadRequest, "bad_request", "%v", err)
	}
	id, err := cb.id()
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "bad_request", "%v", err)
	}
	if err := piclient.ValidatePaymentID(id); err != nil {
		return nil, refuse(http.StatusBadRequest, "invalid_payment_id", "paymentId: %v", err)
	}
	st.id = id
	if st.phase == phaseIncomplete {
		st.claimedLink = cb.PostedLink
		// Not used, but an app may read them: checked against Pi's.
		for _, tx := range []string{cb.TxID, cb.PostedTxID} {
			if tx != "" && piclient.ValidateTxID(tx) != nil {
				return nil, refuse(http.StatusBadRequest, "invalid_txid", "the posted txid is not a transaction id")
			}
			if tx != "" && st.claimed != "" && !strings.EqualFold(tx, st.claimed) {
				return nil, refuse(http.StatusBadRequest, "bad_request", "the body names two different transactions")
			}
			if tx != "" {
				st.claimed = strings.ToLower(tx)
			}
		}
	}
	if st.phase == phaseComplete {
		if err := piclient.ValidateTxID(cb.TxID); err != nil {
			return nil, refuse(http.StatusBadRequest, "invalid_txid", "txid: %v", err)
		}
		// Pi and Horizon write txids in lower case; so does the guard, in
		// comparisons, records and URLs.
		st.txid = piclient.NormalizeTxID(cb.TxID)
	}
	return body, nil
}

// stripHeaders removes every incoming copy of the guard's headers,
// including spellings with underscores, which CGI, WSGI and PHP apps read as
// the same header. It also removes their names from the Connection header (a
// proxy drops the headers it names, which would delete the guard's own
// copy) and from trailers, declared or not. It returns the wrapper it put
// around the body (nil without a body), which tells whether the body was
// read to its end.
func (h *Handler) stripHeaders(r *http.Request) *trailerStripper {
	for name := range r.Header {
		if h.ownHeader(name) {
			delete(r.Header, name)
		}
	}
	for _, list := range []string{"Connection", "Trailer"} {
		if vals, ok := r.Header[list]; ok {
			if kept := h.dropTokens(vals); len(kept) > 0 {
				r.Header[list] = kept
			} else {
				delete(r.Header, list)
			}
		}
	}
	for name := range r.Trailer {
		if h.ownHeader(name) {
			delete(r.Trailer, name)
		}
	}
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	ts := &trailerStripper{ReadCloser: r.Body, r: r, h: h}
	r.Body = ts
	return ts
}

// closeIfUnread makes the guard's own answer the last on an HTTP/1
// connection whose request body was not read to its end: whatever of the
// body is still on the wire must never be parsed as another request (a
// smuggled request, whose answer a front proxy would hand to someone else).
func closeIfUnread(w http.ResponseWriter, r *http.Request, body *trailerStripper) {
	if body != nil && !body.eof && r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
}

// ownHeader reports whether an app could read header name as one of the
// guard's headers.
func (h *Handler) ownHeader(name string) bool {
	return sameHeader(name, h.Header) || sameHeader(name, h.NoticeHeader)
}

// dropTokens returns the comma-separated header values without the tokens
// that name one of the guard's headers; nil when nothing is left.
func (h *Handler) dropTokens(vals []string) []string {
	var kept []string
	for _, v := range vals {
		var keep []string
		for tok := range strings.SplitSeq(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" && !h.ownHeader(tok) {
				keep = append(keep, tok)
			}
		}
		if len(keep) > 0 {
			kept = append(kept, strings.Join(keep, ", "))
		}
	}
	return kept
}

// trailerStripper removes the guard's headers from the request's trailers
// when the body is read to its end, which is when net/http fills them in:
// reverse_proxy copies the trailers it forwards in that same Read.
type trailerStripper struct {
	io.ReadCloser
	r   *http.Request
	h   *Handler
	eof bool // the body was read to its end
}

func (t *trailerStripper) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if err == io.EOF {
		t.eof = true
		for name := range t.r.Trailer {
			if t.h.ownHeader(name) {
				delete(t.r.Trailer, name)
			}
		}
	}
	return n, err
}

// sameHeader compares header names case-insensitively, with '_' and '-' equal.
func sameHeader(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == '_' {
			x = '-'
		}
		if y == '_' {
			y = '-'
		}
		if x|0x20 != y|0x20 {
			return false
		}
	}
	return true
}

// lockLocal takes the payment's in-process lock, waiting at most lockWait.
func (h *Handler) lockLocal(ctx context.Context, id string) (func(), *guardError) {
	if ctx.Err() == nil {
		// A free lock is taken at once, without a timer for the wait.
		if unlock, ok := h.locks.TryLock(id); ok {
			return unlock, nil
		}
	}
	wait, stop := h.lockWaitContext(ctx)
	unlock, err := h.locks.Lock(wait, id)
	stop()
	if err != nil {
		return nil, busyIfWaited(piFailure(err, id), ctx, id)
	}
	return unlock, nil
}

// lockPayment serialises work on one payment: first in this process
// (waiting at most lockWait), then across instances through the storage
// lock. The storage lock gets the request's own context: a storage module
// may keep its lock fresh only while that context lives.
func (h *Handler) lockPayment(ctx context.Context, id string) (func(), *guardError) {
	unlockLocal, ge := h.lockLocal(ctx, id)
	if ge != nil {
		return nil, ge
	}
	unlockShared, err := h.lockShared(ctx, id)
	if err != nil {
		unlockLocal()
		return nil, storageFailure(err, id)
	}
	return func() { unlockShared(); unlockLocal() }, nil
}

// errStorageBusy: the storage lock of a payment was not free within the
// lock wait (a storage module may keep a dead instance's lock for seconds).
var errStorageBusy = errors.New("the payment's storage lock was not free in time")

// lockShared takes the payment's storage lock, waiting at most as long as
// for the in-process lock. The lock keeps the request's own context (a
// storage module may keep its lock fresh only while that context lives):
// the wait is bounded by cancelling that context only while the lock is
// not held yet.
func (h *Handler) lockShared(ctx context.Context, id string) (func(), error) {
	if h.store.DetachedLocks() && ctx.Err() == nil {
		// file_system storage: its lock does not live on the context, so
		// a free one is taken at once, without a timer for the wait.
		if unlock, ok := h.store.TryLock(ctx, id, 0); ok {
			return unlock, nil
		}
	}
	lctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(min(lockWait, time.Duration(h.Timeout)/2), cancel)
	unlock, err := h.store.Lock(lctx, id)
	fired := !timer.Stop()
	switch {
	case err == nil && !fired:
		return func() { unlock(); cancel() }, nil
	case err == nil: // taken as the wait ran out: its context is cancelled
		unlock()
	}
	cancel()
	switch {
	case fired && ctx.Err() == nil && err != nil:
		return nil, fmt.Errorf("%w: %w", errStorageBusy, err)
	case fired && ctx.Err() == nil:
		return nil, errStorageBusy
	}
	return nil, err
}

// release frees a payment's locks once the step's background work (st.then),
// if any, is done; the request itself does not wait for that work. With a
// storage module other than file_system the work runs before the request
// returns: such a module may keep its lock only while the request's
// context lives.
func (h *Handler) release(st *step, unlock func()) {
	if st.then == nil || !h.store.DetachedLocks() {
		if st.then != nil {
			st.then()
		}
		unlock()
		return
	}
	then := st.then
	h.background.Go(func() {
		defer unlock()
		then()
	})
}

// lockWait bounds how long a request waits for a payment another request is
// working on: a flood of requests for one payment must not make its owner's
// request wait out the whole timeout.
const lockWait = 5 * time.Second

// lockWaitContext is ctx, bounded for waiting on a lock. Locks use it only
// while waiting, so stop may be called as soon as the lock is held.
func (h *Handler) lockWaitContext(ctx context.Context) (wait context.Context, stop context.CancelFunc) {
	return context.WithTimeout(ctx, min(lockWait, time.Duration(h.Timeout)/2))
}

// busyIfWaited turns a lock wait that ran out (while the request itself still
// had time) into its own retryable answer.
func busyIfWaited(ge *guardError, ctx context.Context, id string) *guardError {
	if ctx.Err() != nil || !errors.Is(ge, context.DeadlineExceeded) {
		return ge
	}
	busy := refuse(http.StatusConflict, "payment_busy", "another request for this payment is in progress; retry in a moment")
	busy.Retryable, busy.cause, busy.PaymentID = true, ge.cause, id
	busy.retryAfter = 1
	return busy
}

// logStep counts the request in the metrics and writes its log line: payment
// id, phase, outcome, the time spent waiting for Pi, the time until the
// request was forwarded (duration), the time in the app (upstream) and the
// whole request (total); the guard's own time is total - pi_latency -
// upstream. Secrets are never logged.
func (h *Handler) logStep(st *step, err error) {
	switch {
	case st.outcome != "":
	case err != nil:
		st.outcome = "error"
	default:
		st.outcome = "ok"
	}
	h.metrics.request(st.phase, st.outcome)
	ge, isGE := asGuardError(err)
	level, msg := zapcore.InfoLevel, "payment step"
	switch {
	case err == nil:
	case isGE && ge.Status < 500:
		level, msg = zapcore.WarnLevel, "payment refused"
	default:
		level, msg = zapcore.ErrorLevel, "payment failed"
	}
	// The fields are built only for a line the logger writes.
	ce := h.logger.Check(level, msg)
	if ce == nil {
		return
	}
	now := time.Now()
	ready := st.ready
	if ready.IsZero() {
		ready = now
	}
	fields := make([]zap.Field, 0, 13)
	fields = append(fields,
		zap.String("phase", st.phase),
		zap.String("payment_id", st.id),
		zap.String("outcome", st.outcome),
		zap.Int("pi_calls", st.piCalls),
		zap.Duration("pi_latency", st.piTime),
		zap.Duration("duration", ready.Sub(st.start)),
		zap.Duration("upstream", st.upstream),
		zap.Duration("total", now.Sub(st.start)),
	)
	if st.txid != "" {
		fields = append(fields, zap.String("txid", st.txid))
	}
	if st.uid != "" {
		fields = append(fields, zap.String("user_uid", st.uid))
	}
	switch {
	case err == nil:
	case isGE:
		fields = append(fields, zap.String("error", ge.Code), zap.String("message", ge.Message), zap.NamedError("cause", ge.cause))
	default:
		fields = append(fields, zap.String("error", "internal"), zap.Error(err))
	}
	ce.Write(fields...)
}
