package piguard

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseCallback(t *testing.T) {
	cases := []struct {
		name, ct, body string
		want           callback
		err            string
	}{
		{"json", "application/json", `{"paymentId":"abc","txid":"ff"}`, callback{PaymentID: "abc", TxID: "ff"}, ""},
		{"json charset", "application/json; charset=utf-8", `{"paymentId":"abc"}`, callback{PaymentID: "abc"}, ""},
		{"json no content type", "", ` {"paymentId":"abc"}`, callback{}, "no Content-Type"},
		{"json extra fields", "application/json", `{"cart":{"paymentId":"nested"},"paymentId":"abc","n":[1,2]}`, callback{PaymentID: "abc"}, ""},
		{"form", "application/x-www-form-urlencoded", `paymentId=abc&txid=ff&x=1`, callback{PaymentID: "abc", TxID: "ff"}, ""},
		{"incomplete payment", "application/json", `{"payment":{"identifier":"abc","amount":1,"transaction":{"txid":"ff"}}}`, callback{PaymentIdentifier: "abc", PostedTxID: "ff"}, ""},
		{"payment without identifier", "application/json", `{"payment":{"amount":1}}`, callback{}, "identifier"},
		{"payment not an object", "application/json", `{"payment":"abc"}`, callback{}, "identifier"},
		{"payment twice", "application/json", `{"payment":{"identifier":"a"},"payment":{"identifier":"b"}}`, callback{}, "appears twice"},
		{"duplicate json", "application/json", `{"paymentId":"a","paymentId":"b"}`, callback{}, "appears twice"},
		{"duplicate form", "application/x-www-form-urlencoded", `paymentId=a&paymentId=b`, callback{}, "appears twice"},
		{"number id", "application/json", `{"paymentId":1}`, callback{}, "must be a string"},
		{"array", "application/json", `["abc"]`, callback{}, "JSON object"},
		{"trailing data", "application/json", `{"paymentId":"abc"}{"paymentId":"def"}`, callback{}, "after the object"},
		{"truncated", "application/json", `{"paymentId":"abc"`, callback{}, "malformed"},
		{"empty", "", ``, callback{}, "no body"},
		{"text", "text/plain", `abc`, callback{}, "unsupported content type"},
		{"bad content type", "a/b; ===", `abc`, callback{}, "unsupported content type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCallback(tc.ct, []byte(tc.body))
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestCallbackID(t *testing.T) {
	id, err := callback{PaymentID: "a"}.id()
	require.NoError(t, err)
	assert.Equal(t, "a", id)
	id, err = callback{PaymentIdentifier: "b"}.id()
	require.NoError(t, err)
	assert.Equal(t, "b", id)
	id, err = callback{PaymentID: "a", PaymentIdentifier: "a"}.id()
	require.NoError(t, err)
	assert.Equal(t, "a", id)
	_, err = callback{PaymentID: "a", PaymentIdentifier: "b"}.id()
	assert.ErrorContains(t, err, "different payments")
}

func TestReadBodyRestoresIt(t *testing.T) {
	body := `{"paymentId":"abc"}`
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	r.ContentLength = -1
	r.TransferEncoding = []string{"chunked"}
	got, err := readBody(httptest.NewRecorder(), r, 1024)
	require.NoError(t, err)
	assert.Equal(t, body, string(got))
	assert.Equal(t, int64(len(body)), r.ContentLength)
	assert.Nil(t, r.TransferEncoding)
	again, err := io.ReadAll(r.Body)
	require.NoError(t, err)
	assert.Equal(t, body, string(again), "the next handler reads the same bytes")
	rc, err := r.GetBody()
	require.NoError(t, err)
	third, _ := io.ReadAll(rc)
	assert.Equal(t, body, string(third))
}

func TestReadBodyIsBounded(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(make([]byte, 2048)))
	_, err := readBody(httptest.NewRecorder(), r, 1024)
	var tooLarge *http.MaxBytesError
	require.ErrorAs(t, err, &tooLarge)
}

// FuzzParseCallback: no input panics, and whatever is accepted is what Go's
// own decoder (case-insensitive, the last of repeated keys wins, the way many
// frameworks read a body) reads too: no parser differential, at any level.
func FuzzParseCallback(f *testing.F) {
	f.Add("application/json", `{"paymentId":"abc","txid":"ff"}`)
	f.Add("application/json", `{"paymentId":"a","paymentId":"b"}`)
	f.Add("application/json", `{"paymentId":"a","PAYMENTID":"b"}`)
	f.Add("application/json", `{"paymentId":"a\u0000","txid":null}`)
	f.Add("application/json", `{"payment":{"identifier":"a","Identifier":"b"}}`)
	f.Add("application/json", `{"x":{"paymentId":"y"},"paymentId":"z"}`)
	f.Add("application/x-www-form-urlencoded", `paymentId=a&txid=b&paymentId=c`)
	f.Add("application/x-www-form-urlencoded", `paymentId=%zz`)
	f.Add("text/plain", ``)
	f.Fuzz(func(t *testing.T, ct, body string) {
		cb, err := parseCallback(ct, []byte(body))
		if err != nil || !strings.HasPrefix(ct, "application/json") {
			return
		}
		var plain struct {
			PaymentID *string `json:"paymentId"`
			TxID      *string `json:"txid"`
			Payment   *struct {
				Identifier *string `json:"identifier"`
			} `json:"payment"`
		}
		if json.Unmarshal([]byte(body), &plain) != nil {
			return
		}
		deref := func(s *string) string {
			if s == nil {
				return ""
			}
			return *s
		}
		if got := deref(plain.PaymentID); got != cb.PaymentID {
			t.Fatalf("guard read paymentId %q, encoding/json reads %q", cb.PaymentID, got)
		}
		if got := deref(plain.TxID); got != cb.TxID {
			t.Fatalf("guard read txid %q, encoding/json reads %q", cb.TxID, got)
		}
		if plain.Payment != nil && deref(plain.Payment.Identifier) != cb.PaymentIdentifier {
			t.Fatalf("guard read payment.identifier %q, encoding/json reads %q", cb.PaymentIdentifier, deref(plain.Payment.Identifier))
		}
	})
}
