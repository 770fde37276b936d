package piguard

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// flatJSONSeeds are bodies the flat reader must read exactly as the full one,
// or leave to it.
var flatJSONSeeds = []string{
	`{"paymentId":"abc","txid":"ff"}`,
	` {"paymentId" : "abc" , "txid":"ff"} `,
	"\t{\r\n\"paymentId\":\"abc\"}\n",
	`{}`, ` { } `, `{"a":"b"}`, `{"a":"b","a":"c"}`,
	`{"paymentId":"a","paymentId":"b"}`, `{"paymentId":"a","PaymentId":"b"}`, `{"PAYMENTID":"a"}`,
	`{"paymentid":`, `{"paymentId":"abc"`, `{"paymentId":"abc",}`, `{"paymentId":"abc"}x`, `{"paymentId":"abc"}{}`,
	`{"paymentId":1}`, `{"paymentId":null}`, `{"paymentId":"a\"b"}`, `{"payment\u0049d":"a"}`, `{"paymentId":"a\u0000"}`,
	`{"payment":"abc"}`, `{"payment":{"identifier":"a"}}`, `{"txid":"ff","payment":{"identifier":"a"}}`,
	`{"paymentId":"é"}`, "{\"paymentId\":\"a\x7f\"}", "{\"paymentId\":\"a\tb\"}", `{"paymentId":"abc"`,
	`["abc"]`, `"abc"`, ``, ` `, `{`, `}`, `{"a"}`, `{"a":}`, `{,"a":"b"}`, `{"a":"b",,"c":"d"}`, `{"a" "b"}`,
	`{"ṗaymentId":"a"}`, `{"txİd":"a"}`, `{"TXID":"a","txid":"b"}`, `{"txid":"a","TXID":"b"}`,
	`{"paymentId":"abc"} ` + "\x00",
}

func TestFlatJSONCallbackAgreesWithFullReader(t *testing.T) {
	for _, body := range flatJSONSeeds {
		checkFlatJSONCallback(t, []byte(body))
	}
}

func FuzzFlatJSONCallback(f *testing.F) {
	for _, body := range flatJSONSeeds {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkFlatJSONCallback(t, body) })
}

func checkFlatJSONCallback(t *testing.T, body []byte) {
	t.Helper()
	flat, ok, ferr := parseFlatJSONCallback(body)
	if !ok {
		return
	}
	full, err := parseFullJSONCallback(body)
	if (ferr == nil) != (err == nil) || (err != nil && ferr.Error() != err.Error()) {
		t.Fatalf("%q: flat reader says %v, full reader %v", body, ferr, err)
	}
	assert.Equal(t, full, flat, "%q", body)
}
