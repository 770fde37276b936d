package piguard

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"go.uber.org/zap"
)

// PayerBinding names what identifies a payment's payer from one of its
// requests to the next. The payer is whoever approved the payment (Pi's SDK
// calls the approve route from the payer's browser): the guard remembers
// the approving request's credential, and only a request that carries it
// unchanged receives the app's answer to the completion, or may approve the
// payment again. Payment ids and txids are public; the credential is not.
type PayerBinding struct {
	// From is "cookie" (the session cookie Name, matched by value whatever
	// other cookies come and go), "header" (header Name) or
	// "authorization" (the Authorization header).
	From string `json:"from,omitempty"`
	// Name is the cookie or header name, for From "cookie" and "header".
	Name string `json:"name,omitempty"`
}

// carriedBy reports whether a request presenting these digests is a's,
// the approver's.
func carriedBy(a *ledger.Approver, presented []string) bool {
	return a != nil && (carriesAll(a.Payer, presented) || carriesAll(a.Before, presented))
}

const (
	// minSessionValue is the shortest cookie value the default payer
	// binding counts as a credential: session ids are long and secret,
	// preferences such as lang=en or consent=yes are short and shared.
	minSessionValue = 16
	// maxCredentials bounds the credentials remembered of one request.
	maxCredentials = 16
)

// credentials returns digests of what identifies the request's user (see
// credentialsWith).
func (h *Handler) credentials(r *http.Request, uid string) []string {
	return h.credentialsWith(r, uid, nil)
}

// credentialsWith returns digests of what identifies the request's user:
// with bind_user the user's uid (Pi checked the token); with a payer
// binding the value it names; by default the Authorization header (unless
// it carries no token of its own) and each cookie whose value is at least
// minSessionValue long, except cookies that many visitors share or that
// change by themselves (sharedCookie). set, the Set-Cookie of the app's
// answer to the request, replaces the request's cookies of the same name:
// the browser sends those next. Nothing secret is stored: each digest is a
// salted SHA-256 of the credential's kind, name and value. A request is the
// payer's when it carries every one of its approver's digests (isPayer).
func (h *Handler) credentialsWith(r *http.Request, uid string, set []*http.Cookie) []string {
	if uid != "" {
		return []string{h.digest("uid", "", uid)}
	}
	var out []string
	add := func(kind, name, v string) {
		if v = strings.TrimSpace(v); v != "" && len(out) < maxCredentials {
			out = append(out, h.digest(kind, name, v))
		}
	}
	cookies := withSetCookies(r.Cookies(), set)
	b := h.Payer
	switch {
	case b != nil && b.From == "cookie":
		for _, c := range cookies {
			if c.Name == b.Name {
				add("cookie", c.Name, c.Value)
			}
		}
	case b != nil && b.From == "header":
		for _, v := range r.Header.Values(b.Name) {
			add("header", http.CanonicalHeaderKey(b.Name), v)
		}
	case b != nil && b.From == "authorization":
		for _, v := range r.Header.Values("Authorization") {
			add("authorization", "", v)
		}
	default:
		for _, v := range r.Header.Values("Authorization") {
			if ownToken(v) {
				add("authorization", "", v)
			}
		}
		for _, c := range cookies {
			if len(c.Value) >= minSessionValue && !sharedCookie(c.Name) {
				add("cookie", c.Name, c.Value)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// withSetCookies is the cookies a browser sends after an answer that set
// set: the request's, with those of the same name replaced or removed.
func withSetCookies(cookies, set []*http.Cookie) []*http.Cookie {
	if len(set) == 0 {
		return cookies
	}
	now := time.Now()
	out := make([]*http.Cookie, 0, len(cookies)+len(set))
	for _, c := range cookies {
		if !slices.ContainsFunc(set, func(s *http.Cookie) bool { return s.Name == c.Name }) {
			out = append(out, c)
		}
	}
	for _, s := range set {
		expired := s.MaxAge < 0 || (!s.Expires.IsZero() && s.Expires.Before(now))
		if s.Value != "" && !expired {
			out = append(out, &http.Cookie{Name: s.Name, Value: s.Value})
		}
	}
	return out
}

// ownToken reports whether an Authorization value carries a credential of
// its own: not a bare scheme, nor a frontend's "Bearer null" or
// "Bearer undefined", nor Basic (a site-wide password many visitors share).
func ownToken(v string) bool {
	scheme, token, _ := strings.Cut(strings.TrimSpace(v), " ")
	token = strings.TrimSpace(token)
	switch {
	case strings.EqualFold(scheme, "basic"), token == "", strings.EqualFold(token, "null"), strings.EqualFold(token, "undefined"):
		return false
	}
	return true
}

// sharedCookiePrefixes name cookies that are not a visitor's session:
// load balancers' sticky cookies (the same value for every visitor of one
// backend), bot and analytics cookies (set and changed by scripts).
var sharedCookiePrefixes = []string{
	"lb", "awsalb", "awselb", "_traefik", "route", "srv_id", "__cf", "_cf", "cf_",
	"_ga", "_gid", "_gcl", "_gat", "__utm", "_fbp", "_fbc", "_hj", "ajs_", "mp_", "amplitude", "_pk_", "__stripe", "_dd_s",
}

// sharedCookie reports whether a cookie's name says that many visitors may
// hold its value, or that it changes by itself.
func sharedCookie(name string) bool {
	name = strings.ToLower(name)
	for _, p := range sharedCookiePrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// digest is the stored form of one credential, salted with the app's id.
func (h *Handler) digest(kind, name, value string) string {
	var buf [192]byte // most credentials fit: no allocation for the input
	in := append(buf[:0], h.app...)
	in = append(append(in, 0), kind...)
	in = append(append(in, 0), name...)
	in = append(append(in, 0), value...)
	sum := sha256.Sum256(in)
	var out [32]byte
	hex.Encode(out[:], sum[:16])
	return string(out[:])
}

// carriesAll reports whether presented holds every remembered digest (and
// there is one): the approver's whole credential, not one cookie of it that
// others may share.
func carriesAll(remembered, presented []string) bool {
	if len(remembered) == 0 {
		return false
	}
	for _, a := range remembered {
		found := 0
		for _, b := range presented {
			found |= subtle.ConstantTimeCompare([]byte(a), []byte(b))
		}
		if found == 0 {
			return false
		}
	}
	return true
}

// stepCredentials is credentials of the step's request, computed once.
func (h *Handler) stepCredentials(st *step, r *http.Request) []string {
	if !st.credsKnown {
		st.creds, st.credsKnown = h.credentials(r, st.uid), true
	}
	return st.creds
}

// stepApprover is approverOf the step's payment, looked up once per request
// (it may read storage). Decisions under the payment's lock look again.
func (h *Handler) stepApprover(ctx context.Context, st *step) *ledger.Approver {
	if !st.whoKnown {
		st.who, st.whoKnown = h.approverOf(ctx, st.id), true
	}
	return st.who
}

// approverOf returns what the guard remembers of payment id's approver: in
// this process, or from the watch list (written by any instance), or nil.
func (h *Handler) approverOf(ctx context.Context, id string) *ledger.Approver {
	if a := h.approvals.approverOf(id); a != nil {
		return a
	}
	if e := h.watched.Queued(id); e != nil {
		return e.By
	}
	if h.store == nil {
		return nil
	}
	if e, err := h.store.LoadWatch(ctx, id); err == nil && e != nil {
		return e.By
	}
	return nil
}

// newApprover is what is remembered of an approving request, whose answer
// (the app's) set the cookies set.
func (h *Handler) newApprover(r *http.Request, uid string, set []*http.Cookie) *ledger.Approver {
	a := &ledger.Approver{Payer: h.credentialsWith(r, uid, set), Host: r.Host, Form: postsForm(r)}
	if len(set) > 0 {
		if before := h.credentials(r, uid); !slices.Equal(before, a.Payer) {
			a.Before = before
		}
	}
	return a
}

// fillPayer gives a record written before its approver was known here (a
// completion within the second before the approval's watch entry reached
// the storage, on another instance) its payer, once the guard knows it,
// and keeps it. The payment's locks are held.
func (h *Handler) fillPayer(ctx context.Context, rec *ledger.Record) {
	if len(rec.Payer) > 0 || rec.Caller != "" {
		return
	}
	who := h.approverOf(ctx, rec.PaymentID)
	if who == nil || len(who.Payer) == 0 {
		return
	}
	rec.Payer, rec.PayerBefore = who.Payer, who.Before
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(h.Timeout))
	defer cancel()
	if err := h.store.Save(sctx, rec); err != nil {
		h.logger.Warn("could not write the delivery record", zap.String("payment_id", rec.PaymentID), zap.Error(err))
	}
}

// postsForm reports whether r's body is a urlencoded form.
func postsForm(r *http.Request) bool {
	mt, _, _ := mediaType(r.Header.Get("Content-Type"))
	return mt == "application/x-www-form-urlencoded"
}

// isPayer reports whether the request comes from rec's payer: the
// payment's owner signed in with bind_user, or a request carrying a
// credential of its approver.
func (h *Handler) isPayer(st *step, rec *ledger.Record, r *http.Request) bool {
	if st.uid != "" && rec.Payment != nil && rec.Payment.UserUID == st.uid {
		return true
	}
	if carriedBy(&ledger.Approver{Payer: rec.Payer, Before: rec.PayerBefore}, h.stepCredentials(st, r)) {
		return true
	}
	// Records written before payers were remembered hold the completing
	// session's hash instead.
	c := callerOf(r)
	return c != "" && rec.Caller != "" && subtle.ConstantTimeCompare([]byte(c), []byte(rec.Caller)) == 1
}
