package verify

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

var update = flag.Bool("update", false, "rewrite examples/testdata/vectors.json")

// vectorsPath is the golden file the Node and Python examples test against.
var vectorsPath = filepath.Join("..", "examples", "testdata", "vectors.json")

// Vectors is the file format of examples/testdata/vectors.json.
type Vectors struct {
	Comment       string   `json:"comment"`
	Alg           string   `json:"alg"`
	Kid           string   `json:"kid"`
	Secret        string   `json:"secret"`
	Issuer        string   `json:"issuer"`
	Audience      string   `json:"audience"`
	LeewaySeconds int64    `json:"leeway_seconds"`
	Now           int64    `json:"now"`
	ErrorCodes    []string `json:"error_codes"`
	Cases         []Vector `json:"cases"`
}

// Vector is one request as an app receives it, and the expected outcome.
type Vector struct {
	Name         string   `json:"name"`
	Description  string   `json:"description"`
	Header       string   `json:"header"`        // the header the app reads; it decides the kind expected
	HeaderValues []string `json:"header_values"` // values of that header on the request, usually one
	Method       string   `json:"method"`
	Path         string   `json:"path"`
	Body         string   `json:"body"`
	PaymentID    string   `json:"payment_id,omitempty"` // the payment the app expects, when it knows it
	Now          int64    `json:"now,omitempty"`        // overrides the top-level now
	Expect       string   `json:"expect"`               // "valid" or "invalid"
	Error        string   `json:"error,omitempty"`      // one of error_codes, when invalid
	// Strict marks a refusal that adds nothing once the signature holds
	// (docs/header.md, "Checks a library may skip"): a strict verifier
	// refuses with Error, a JWT library (jose, PyJWT) may accept.
	Strict bool `json:"strict,omitempty"`
	Claims *struct {
		Sub        string `json:"sub"`
		Kind       Kind   `json:"kind"`
		Phase      string `json:"phase"`
		TxID       string `json:"txid"`
		Amount     string `json:"amount"`
		AmountText string `json:"amount_text"`
		UID        string `json:"uid"`
	} `json:"claims,omitempty"` // expected claims, when valid
}

// errorCodes maps the sentinel errors to the language-neutral codes of the
// vectors, in the order they are tested.
var errorCodes = []struct {
	err  error
	code string
}{
	{ErrMissing, "missing"}, {ErrMalformed, "malformed"}, {ErrSignature, "signature"},
	{ErrExpired, "expired"}, {ErrNotYetValid, "not_yet_valid"}, {ErrIssuer, "issuer"},
	{ErrAudience, "audience"}, {ErrKind, "kind"}, {ErrBinding, "binding"},
	{ErrNotCompleted, "not_completed"}, {ErrPaymentID, "payment_id"},
}

func errorCode(err error) string {
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	return "other: " + err.Error()
}

const vectorKid = "test-2026-01"

func buildVectors(t *testing.T) *Vectors {
	now := testNow.Unix()
	key := hsKey(t, vectorKid, testSecret)
	at := func(d time.Duration) func() time.Time { return func() time.Time { return testNow.Add(d) } }
	jti := &countingReader{} // one reproducible jti sequence for every token
	signer := func(o SignerOptions) *Signer {
		if len(o.Keys) == 0 {
			o.Keys = []Key{key}
		}
		s := newTestSigner(t, o)
		s.rand = jti
		return s
	}
	s := signer(SignerOptions{})
	sign := func(s *Signer, kind Kind, phase string, p *piclient.Payment, method, path, body string) string {
		tok, err := s.Sign(kind, phase, p, Binding{Method: method, Path: path, Body: []byte(body)}, "")
		require.NoError(t, err)
		return tok
	}
	completeBody := `{"paymentId":"` + testPaymentID + `","txid":"` + testTxID + `"}`
	approveBody := `{"paymentId":"` + testPaymentID + `"}`
	const (
		complete   = "/payments/complete"
		approve    = "/payments/approve"
		incomplete = "/payments/incomplete"
		cancel     = "/payments/cancelled_payment"
	)
	completeTok := sign(s, KindVerified, PhaseComplete, completedPayment(), "POST", complete, completeBody)
	approveTok := sign(s, KindNotice, PhaseApprove, pendingPayment(), "POST", approve, approveBody)
	cancelled := pendingPayment()
	cancelled.Status.Cancelled, cancelled.Status.UserCancelled = true, true

	utf8Payment := completedPayment()
	utf8Payment.Memo = "café ☕ — 日本"
	utf8Body := `{"paymentId":"` + testPaymentID + `","note":"café ☕ — 日本"}`

	withUID, err := s.Sign(KindVerified, PhaseComplete, completedPayment(), Binding{Method: "POST", Path: complete, Body: []byte(completeBody)}, "user-uid-TEST")
	require.NoError(t, err)

	noKid := validClaims(KindVerified)
	noKid.ID = "bm8ta2lkLXRlc3QtMDAwMDA"
	noKid.AmountText = AmountText(noKid.Payment.Amount)
	noKidTok := signRawAlg(t, "HS256", testSecret, "", TypeVerified, noKid)

	mixed := validClaims(KindNotice)
	notCompleted := validClaims(KindVerified)
	notCompleted.Payment = *pendingPayment()
	subMismatch := validClaims(KindVerified)
	subMismatch.Subject = "pay_OTHER_0123456789abcdefAB"

	tampered := replacePayload(t, completeTok, func(m map[string]any) {
		m["payment"].(map[string]any)["amount"] = json.Number("3141.5926")
	})
	parts := strings.Split(completeTok, ".")

	valid := func(name, desc, header, path, body, tok, phase string, kind Kind, p *piclient.Payment) Vector {
		v := Vector{Name: name, Description: desc, Header: header, HeaderValues: []string{tok},
			Method: "POST", Path: path, Body: body, Expect: "valid"}
		v.Claims = &struct {
			Sub        string `json:"sub"`
			Kind       Kind   `json:"kind"`
			Phase      string `json:"phase"`
			TxID       string `json:"txid"`
			Amount     string `json:"amount"`
			AmountText string `json:"amount_text"`
			UID        string `json:"uid"`
		}{Sub: p.Identifier, Kind: kind, Phase: phase, TxID: p.TxID(), Amount: p.Amount.String(), AmountText: AmountText(p.Amount)}
		return v
	}
	invalid := func(name, desc, code, header, path, body string, tokens ...string) Vector {
		if tokens == nil {
			tokens = []string{}
		}
		return Vector{Name: name, Description: desc, Header: header, HeaderValues: tokens,
			Method: "POST", Path: path, Body: body, Expect: "invalid", Error: code}
	}

	strict := func(v Vector) Vector { v.Strict = true; return v }
	cases := []Vector{
		valid("valid-complete", "Completed payment, verified header on the completion callback.",
			HeaderVerified, complete, completeBody, completeTok, PhaseComplete, KindVerified, completedPayment()),
		valid("valid-incomplete", "Incomplete payment the guard completed: verified header on the incomplete callback.",
			HeaderVerified, incomplete, completeBody,
			sign(s, KindVerified, PhaseIncomplete, completedPayment(), "POST", incomplete, completeBody),
			PhaseIncomplete, KindVerified, completedPayment()),
		valid("valid-notice-approve", "Approval notice; never proof of payment.",
			HeaderNotice, approve, approveBody, approveTok, PhaseApprove, KindNotice, pendingPayment()),
		valid("valid-notice-cancel", "Cancellation notice.",
			HeaderNotice, cancel, approveBody,
			sign(s, KindNotice, PhaseCancel, cancelled, "POST", cancel, approveBody), PhaseCancel, KindNotice, cancelled),
		valid("valid-empty-body", "Empty body: bsh is the SHA-256 of zero bytes.",
			HeaderVerified, complete, "", sign(s, KindVerified, PhaseComplete, completedPayment(), "POST", complete, ""),
			PhaseComplete, KindVerified, completedPayment()),
		valid("valid-utf8-body", "Non-ASCII body and memo: the digest is over the UTF-8 bytes.",
			HeaderVerified, complete, utf8Body, sign(s, KindVerified, PhaseComplete, utf8Payment, "POST", complete, utf8Body),
			PhaseComplete, KindVerified, utf8Payment),
		valid("valid-exp-within-leeway", "exp is 29 s past; the 30 s leeway still accepts it.",
			HeaderVerified, complete, completeBody,
			sign(signer(SignerOptions{Now: at(-89 * time.Second)}), KindVerified, PhaseComplete, completedPayment(), "POST", complete, completeBody),
			PhaseComplete, KindVerified, completedPayment()),
		valid("valid-iat-within-leeway", "iat is 30 s in the future (guard clock ahead): accepted.",
			HeaderVerified, complete, completeBody,
			sign(signer(SignerOptions{Now: at(30 * time.Second)}), KindVerified, PhaseComplete, completedPayment(), "POST", complete, completeBody),
			PhaseComplete, KindVerified, completedPayment()),
		valid("valid-no-kid", "No kid header: the verifier tries every key of the token's algorithm.",
			HeaderVerified, complete, testBody, noKidTok, PhaseComplete, KindVerified, completedPayment()),

		invalid("missing", "No header at all: not paid.", "missing", HeaderVerified, complete, completeBody),
		invalid("duplicate-header", "The header twice: refused.", "malformed", HeaderVerified, complete, completeBody, completeTok, completeTok),
		invalid("garbage", "Not a JWT.", "malformed", HeaderVerified, complete, completeBody, "not-a-jwt"),
		strict(invalid("non-canonical-base64", "Signature with non-zero unused trailing bits: refused by a strict verifier although a lenient decoder reads the same bytes.",
			"malformed", HeaderVerified, complete, completeBody, parts[0]+"."+parts[1]+"."+noncanonical(parts[2]))),
		strict(invalid("typ-other-case", "typ in capitals, under the signature; the kind claim still says verified.", "kind", HeaderVerified, complete, testBody,
			signRaw(t, key, strings.ToUpper(TypeVerified), validClaims(KindVerified)))),
		invalid("tampered-amount", "Payload amount changed after signing.", "signature", HeaderVerified, complete, completeBody, tampered),
		invalid("wrong-secret", "Signed with another secret under the same kid.", "signature", HeaderVerified, complete, completeBody,
			sign(signer(SignerOptions{Keys: []Key{hsKey(t, vectorKid, otherTestSecret)}}), KindVerified, PhaseComplete, completedPayment(), "POST", complete, completeBody)),
		invalid("unknown-kid", "Signed with the right secret but an unknown kid.", "signature", HeaderVerified, complete, completeBody,
			sign(signer(SignerOptions{Keys: []Key{hsKey(t, "test-unknown", testSecret)}}), KindVerified, PhaseComplete, completedPayment(), "POST", complete, completeBody)),
		invalid("alg-none", `"alg":"none" with no signature.`, "signature", HeaderVerified, complete, completeBody,
			unsecuredToken(t, map[string]any{"alg": "none", "kid": vectorKid, "typ": TypeVerified}, validClaims(KindVerified))),
		invalid("alg-eddsa", "EdDSA token offered to an HS256-only verifier.", "signature", HeaderVerified, complete, testBody,
			signRaw(t, edKey(t, vectorKid, testEdSeed), TypeVerified, validClaims(KindVerified))),
		invalid("expired", "exp + leeway equals now: expired (the boundary).", "expired", HeaderVerified, complete, completeBody,
			sign(signer(SignerOptions{Now: at(-90 * time.Second)}), KindVerified, PhaseComplete, completedPayment(), "POST", complete, completeBody)),
		invalid("expired-long-ago", "Issued an hour ago.", "expired", HeaderVerified, complete, completeBody,
			sign(signer(SignerOptions{Now: at(-time.Hour)}), KindVerified, PhaseComplete, completedPayment(), "POST", complete, completeBody)),
		invalid("iat-in-future", "iat 31 s ahead of now, beyond the leeway.", "not_yet_valid", HeaderVerified, complete, completeBody,
			sign(signer(SignerOptions{Now: at(31 * time.Second)}), KindVerified, PhaseComplete, completedPayment(), "POST", complete, completeBody)),
		invalid("wrong-audience", "aud is another app's.", "audience", HeaderVerified, complete, completeBody,
			sign(signer(SignerOptions{Audience: "another-app"}), KindVerified, PhaseComplete, completedPayment(), "POST", complete, completeBody)),
		invalid("wrong-issuer", "iss is not the guard's.", "issuer", HeaderVerified, complete, completeBody,
			sign(signer(SignerOptions{Issuer: "someone-else"}), KindVerified, PhaseComplete, completedPayment(), "POST", complete, completeBody)),
		invalid("notice-as-verified", "A valid notice placed in Pi-Payment-Verified.", "kind", HeaderVerified, approve, approveBody, approveTok),
		invalid("verified-as-notice", "A valid verified token placed in Pi-Payment-Notice.", "kind", HeaderNotice, complete, completeBody, completeTok),
		invalid("typ-kind-mismatch", "typ says verified, the kind claim says notice.", "kind", HeaderVerified, complete, testBody,
			signRaw(t, key, TypeVerified, mixed)),
		invalid("wrong-path", "The completion token replayed onto another path.", "binding", HeaderVerified, "/payments/complete2", completeBody, completeTok),
		invalid("wrong-body", "The completion token with another body.", "binding", HeaderVerified, complete,
			strings.Replace(completeBody, testTxID[:8], "00000000", 1), completeTok),
		invalid("not-completed", "A verified token whose payment is not developer_completed (a signer bug).", "not_completed", HeaderVerified, complete, testBody,
			signRaw(t, key, TypeVerified, notCompleted)),
		invalid("sub-mismatch", "sub differs from payment.identifier.", "payment_id", HeaderVerified, complete, testBody,
			signRaw(t, key, TypeVerified, subMismatch)),
	}
	wrongMethod := invalid("wrong-method", "The completion token on a PUT.", "binding", HeaderVerified, complete, completeBody, completeTok)
	wrongMethod.Method = http.MethodPut
	otherPayment := invalid("other-payment-id", "The app expects another payment id.", "payment_id", HeaderVerified, complete, completeBody, completeTok)
	otherPayment.PaymentID = "pay_EXPECTED_0123456789abcdef"
	atNow := valid("valid-expected-payment-id", "The app expects this payment id.",
		HeaderVerified, complete, completeBody, completeTok, PhaseComplete, KindVerified, completedPayment())
	atNow.PaymentID = testPaymentID
	uid := valid("valid-with-uid", "User binding on: uid is the authenticated Pi user.",
		HeaderVerified, complete, completeBody, withUID, PhaseComplete, KindVerified, completedPayment())
	uid.Claims.UID = "user-uid-TEST"
	later := invalid("expired-at-later-now", "The valid completion token, checked 5 minutes later.", "expired", HeaderVerified, complete, completeBody, completeTok)
	later.Now = now + 300
	cases = append(cases, wrongMethod, otherPayment, atNow, uid, later)

	codes := make([]string, len(errorCodes))
	for i, e := range errorCodes {
		codes[i] = e.code
	}
	return &Vectors{
		Comment: "Test vectors for Pi-Payment-Verified / Pi-Payment-Notice verifiers (docs/header.md). " +
			"Generated by `go test ./verify -run TestVectors -update`; do not edit. The secret is for tests only.",
		Alg: AlgHS256, Kid: vectorKid, Secret: string(testSecret),
		Issuer: DefaultIssuer, Audience: DefaultAudience,
		LeewaySeconds: int64(DefaultLeeway / time.Second), Now: now,
		ErrorCodes: codes, Cases: cases,
	}
}

// TestVectors keeps examples/testdata/vectors.json in step with the code:
// every case must behave as recorded with the current Verifier, and the file
// must be what the current Signer makes. With -update it rewrites the file.
func TestVectors(t *testing.T) {
	want := buildVectors(t)
	data, err := json.MarshalIndent(want, "", "  ")
	require.NoError(t, err)
	data = append(data, '\n')
	if *update {
		require.NoError(t, os.MkdirAll(filepath.Dir(vectorsPath), 0o755))
		require.NoError(t, os.WriteFile(vectorsPath, data, 0o644))
	}

	file, err := os.ReadFile(vectorsPath)
	require.NoError(t, err, "run: go test ./verify -run TestVectors -update")
	var got Vectors
	d := json.NewDecoder(bytes.NewReader(file))
	d.DisallowUnknownFields()
	require.NoError(t, d.Decode(&got))

	key := hsKey(t, got.Kid, []byte(got.Secret))
	for _, c := range got.Cases {
		t.Run(c.Name, func(t *testing.T) {
			now := got.Now
			if c.Now != 0 {
				now = c.Now
			}
			v := newTestVerifier(t, Options{Keys: []Key{key}, PaymentID: c.PaymentID,
				Leeway: time.Duration(got.LeewaySeconds) * time.Second, Now: func() time.Time { return time.Unix(now, 0) }})
			r := httptest.NewRequest(c.Method, c.Path, strings.NewReader(c.Body))
			for _, val := range c.HeaderValues {
				r.Header.Add(c.Header, val)
			}
			verifyFn := v.Verify
			if c.Header == HeaderNotice {
				verifyFn = v.VerifyNotice
			}
			claims, err := verifyFn(r)
			if c.Expect == "valid" {
				require.NoError(t, err)
				require.NotNil(t, c.Claims)
				assert.Equal(t, c.Claims.Sub, claims.Subject)
				assert.Equal(t, c.Claims.Kind, claims.Kind)
				assert.Equal(t, c.Claims.Phase, claims.Phase)
				assert.Equal(t, c.Claims.TxID, claims.Payment.TxID())
				assert.Equal(t, c.Claims.Amount, claims.Payment.Amount.String())
				assert.Equal(t, c.Claims.AmountText, claims.AmountText)
				assert.Equal(t, c.Claims.UID, claims.UserUID)
				return
			}
			require.Equal(t, "invalid", c.Expect)
			require.Error(t, err)
			assert.Equal(t, c.Error, errorCode(err), "%v", err)
		})
	}

	if !bytes.Equal(file, data) {
		t.Errorf("%s is not what the current signer makes; if the change is intended, run:\n\tgo test ./verify -run TestVectors -update\nand re-run the Node and Python example tests", vectorsPath)
	}
}
