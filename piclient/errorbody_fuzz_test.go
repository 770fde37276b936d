package piclient

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzErrorBody checks the decoder of Pi's error bodies, untrusted input: it
// accepts exactly the JSON objects whose "error" is a non-empty string, keeps
// its texts bounded and free of the secret, and never panics.
func FuzzErrorBody(f *testing.F) {
	const secret = "pik_FUZZSECRET_0123456789abcdef"
	for _, s := range []string{
		`{"error": "verification_failed", "verification_error": "tx_memo_payment_identifier_mismatch"}`,
		`{"error": "payment_tx_present", "error_message": "You cannot cancel this payment, because an associated blockchain transaction has been recorded."}`,
		`{"error":"already_completed","error_message":"done","payment":{"identifier":"p1","amount":1.0,"transaction":null,"split_recipients":null}}`,
		`{"error":"cancelled_payment","payment":{"identifier":"p1","amount":"x"}}`,
		`{"error":"x","message":"fallback"}`, `{"error":""}`, `{"error":5}`, `{"error":null}`, `{}`, `null`, `[]`, `"error"`,
		"<!DOCTYPE html>\n<html><head><title>We're sorry, but something went wrong (500)</title></head></html>",
		`{"error":"` + secret + `","error_message":"key ` + secret + `"}`,
		`{"error":"a","error":"b"}`, `{"error":"\u0000\ud800"}`, `{"error":"` + strings.Repeat("é", 200) + `"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, ok := parseErrorBody(data, secret)
		var fields map[string]json.RawMessage
		var code string
		want := json.Unmarshal(data, &fields) == nil && fields != nil &&
			json.Unmarshal(fields["error"], &code) == nil && code != ""
		if ok != want {
			t.Fatalf("parseErrorBody(%q) ok = %v, want %v", data, ok, want)
		}
		if !ok {
			if e != (apiError{}) {
				t.Fatalf("refused body left %+v", e)
			}
			return
		}
		for name, s := range map[string]string{"code": e.Code, "message": e.Message, "verification_error": e.VerificationError} {
			if strings.Contains(s, secret[:redactMin]) {
				t.Fatalf("%s %q holds the secret", name, s)
			}
			if len(s) > maxMessageLength+len("…") || (name != "message" && len(s) > maxCodeLength+len("…")) {
				t.Fatalf("%s is %d bytes", name, len(s))
			}
			if !utf8.ValidString(s) && utf8.Valid(data) {
				t.Fatalf("%s %q is not valid UTF-8", name, s)
			}
		}
		if e.Code == "" {
			t.Fatal("accepted a body without a code")
		}
		if e.Payment != nil && e.Payment.Identifier == "" {
			t.Fatal("kept a payment without an identifier")
		}
	})
}
