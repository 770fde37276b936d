package piguard

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"mime"
	"net/http"
	"strings"
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

// approver is what the guard remembers of the request that approved a
// payment: digests of its credentials (see Handler.credentials), the host
// it was sent to and whether it posted a form, so that a completion by
// someone else is recorded and delivered in the shape the app takes.
type approver struct {
	Payer []string `json:"payer,omitempty"`
	Host  string   `json:"host,omitempty"`
	Form  bool     `json:"form,omitempty"`
}

const (
	// minSessionValue is the shortest cookie value the default payer
	// binding counts as a credential: session ids are long and secret,
	// preferences such as lang=en or consent=yes are short and shared.
	minSessionValue = 16
	// maxCredentials bounds the credentials remembered of one request.
	maxCredentials = 16
)

// credentials returns digests of what identifies the request's user: with
// bind_user the user's uid (Pi checked the token); with a payer binding the
// value it names; by default the Authorization header and each cookie whose
// value is at least minSessionValue long. Nothing secret is stored: each
// digest is a salted SHA-256.
func (h *Handler) credentials(r *http.Request, uid string) []string {
	if uid != "" {
		return []string{h.digest("uid", "", uid)}
	}
	var out []string
	add := func(kind, name, v string) {
		if v = strings.TrimSpace(v); v != "" && len(out) < maxCredentials {
			out = append(out, h.digest(kind, name, v))
		}
	}
	b := h.Payer
	switch {
	case b != nil && b.From == "cookie":
		for _, c := range r.CookiesNamed(b.Name) {
			add("cookie", c.Name, c.Value)
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
			add("authorization", "", v)
		}
		for _, c := range r.Cookies() {
			if len(c.Value) >= minSessionValue {
				add("cookie", c.Name, c.Value)
			}
		}
	}
	return out
}

// digest is the stored form of one credential, salted with the app's id.
func (h *Handler) digest(kind, name, value string) string {
	sum := sha256.Sum256([]byte(h.app + "\x00" + kind + "\x00" + name + "\x00" + value))
	return hex.EncodeToString(sum[:16])
}

// sharesCredential reports whether the two lists have a digest in common.
func sharesCredential(remembered, presented []string) bool {
	found := 0
	for _, a := range remembered {
		for _, b := range presented {
			found |= subtle.ConstantTimeCompare([]byte(a), []byte(b))
		}
	}
	return found == 1
}

// approverOf returns what the guard remembers of payment id's approver: in
// this process, or from the watch list (written by any instance), or nil.
func (h *Handler) approverOf(ctx context.Context, id string) *approver {
	if a := h.approvals.approverOf(id); a != nil {
		return a
	}
	if e := h.watched.queued(id); e != nil {
		return e.approver()
	}
	if h.store == nil {
		return nil
	}
	if e, err := h.loadWatch(ctx, id); err == nil && e != nil {
		return e.approver()
	}
	return nil
}

// newApprover is what is remembered of an approving request.
func (h *Handler) newApprover(r *http.Request, uid string) *approver {
	return &approver{Payer: h.credentials(r, uid), Host: r.Host, Form: postsForm(r)}
}

// postsForm reports whether r's body is a urlencoded form.
func postsForm(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "application/x-www-form-urlencoded"
}

// isPayer reports whether the request comes from rec's payer: the
// payment's owner signed in with bind_user, or a request carrying a
// credential of its approver.
func (h *Handler) isPayer(st *step, rec *record, r *http.Request) bool {
	if st.uid != "" && rec.Payment != nil && rec.Payment.UserUID == st.uid {
		return true
	}
	if sharesCredential(rec.Payer, h.credentials(r, st.uid)) {
		return true
	}
	// Records written before payers were remembered hold the completing
	// session's hash instead.
	c := callerOf(r)
	return c != "" && rec.Caller != "" && subtle.ConstantTimeCompare([]byte(c), []byte(rec.Caller)) == 1
}
