package piclient

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// piAnswer is a PaymentDTO as Pi (and the fake) writes it.
const piAnswer = `{"identifier":"8tdwLDL6IkRdBCKOSOOP5u38quzW","user_uid":"6f1c9a2e-3b4d-4e5f-8a7b-9c0d1e2f3a4b","amount":1,"memo":"x","metadata":{"order":{"id":42,"items":["a","b"]},"note":null},"from_address":"GAEUBAYUR5ANG4J4S4PQVCCDP56JRKB7CSCDBWATPQRGQRTEJ3GKRJVP","to_address":"GALT2RK44OLR2AAFVP65YXJX6K7BRJ32KEZURPXNWSBXGCADHL5G4C6D","direction":"user_to_app","created_at":"2026-12-05T01:56:46.499Z","network":"Pi Testnet","status":{"developer_approved":true,"transaction_verified":true,"developer_completed":true,"cancelled":false,"user_cancelled":false},"transaction":{"txid":"fca9e7e83566391d83aa0b1f0e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6e5","verified":true,"_link":"https://api.testnet.minepi.com/transactions/fca9"}}`

// checkDecodePayment fails when decodePayment takes data but decodes it
// otherwise than encoding/json, and reports whether it took it.
func checkDecodePayment(t *testing.T, data []byte) bool {
	t.Helper()
	var fast Payment
	if !decodePayment(data, &fast) {
		return false
	}
	var want Payment
	err := json.Unmarshal(data, &want)
	require.NoError(t, err, "decodePayment took what encoding/json refuses: %q", data)
	if !reflect.DeepEqual(fast, want) {
		t.Fatalf("decodePayment differs from encoding/json for %q:\n%#v\n%#v", data, fast, want)
	}
	return true
}

func TestDecodePaymentTakesPisAnswers(t *testing.T) {
	for _, s := range []string{
		piAnswer,
		strings.Replace(piAnswer, `"transaction":{`, `"extra":[1,{"x":"\u00e9\n"},-0.5e+3,true,false,null],"transaction":{`, 1),
		strings.Replace(piAnswer, `"memo":"x"`, `"memo":"thé ☕"`, 1),
		strings.Replace(piAnswer, `"amount":1`, `"amount":"0.5"`, 1),
		"\n " + strings.ReplaceAll(piAnswer, ",", " ,\n\t") + " \r\n",
		`{}`, `{"transaction":null,"metadata":null,"status":null,"memo":null,"amount":null}`,
	} {
		if strings.Contains(s, `\"`) {
			continue // an escape: encoding/json's
		}
		assert.True(t, checkDecodePayment(t, []byte(s)), "not taken: %s", s)
	}
}

// TestDecodePaymentLeavesTheRestToEncodingJSON: everything outside the plain
// form goes to encoding/json, whose answer (or error) stands.
func TestDecodePaymentLeavesTheRestToEncodingJSON(t *testing.T) {
	for _, s := range []string{
		`null`, `[]`, `"x"`, ``, `{`, `{"memo":"x"`, `{"memo":"x"}x`, `{"memo":"x",}`,
		`{"Identifier":"a"}`, `{"IDENTIFIER":"a"}`, `{"ſtatus":{}}`, `{"transaction":{"_linK":"x"}}`,
		`{"identifier":"a","identifier":"b"}`, `{"status":{"cancelled":true,"cancelled":false}}`,
		`{"memo":"a\"b"}`, `{"memo":"a\u0041"}`, "{\"memo\":\"\xff\"}", "{\"memo\":\"a\tb\"}",
		`{"memo":1}`, `{"status":{"cancelled":"yes"}}`, `{"status":[]}`, `{"transaction":1}`,
		`{"amount":"1x"}`, `{"amount":01}`, `{"amount":1.}`, `{"amount":1e}`, `{"metadata":nul}`,
		`{"metadata":{"a" 1}}`, `{"metadata":[1,]}`, `{"metadata":{"a":1,}}`, `{"x":tru}`,
		`{"metadata":` + strings.Repeat("[", maxSkipDepth+1) + strings.Repeat("]", maxSkipDepth+1) + `}`,
	} {
		assert.False(t, checkDecodePayment(t, []byte(s)), "taken: %s", s)
	}
}

// TestDecodePaymentKnowsEveryField: a field added to Payment must be added to
// decodePayment too.
func TestDecodePaymentKnowsEveryField(t *testing.T) {
	var tags []string
	for f := range reflect.TypeFor[Payment]().Fields() {
		tags = append(tags, strings.Split(f.Tag.Get("json"), ",")[0])
	}
	assert.Equal(t, paymentKeys, tags)
	var st []string
	for f := range reflect.TypeFor[Status]().Fields() {
		st = append(st, strings.Split(f.Tag.Get("json"), ",")[0])
	}
	assert.Equal(t, statusKeys, st)
	var tx []string
	for f := range reflect.TypeFor[Transaction]().Fields() {
		tx = append(tx, strings.Split(f.Tag.Get("json"), ",")[0])
	}
	assert.Equal(t, transactionKeys, tx)
}

// FuzzDecodePayment: whatever decodePayment takes, it decodes exactly as
// encoding/json does.
func FuzzDecodePayment(f *testing.F) {
	for _, s := range []string{
		piAnswer, `{}`, `{"metadata":[{"a":[]},"\u0000",1e5]}`,
		`{"amount":-0.0e-0,"status":{"x":1,"cancelled":null},"transaction":{"txid":null,"k":{}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecodePayment(t, data)
	})
}

func BenchmarkDecodePayment(b *testing.B) {
	data := []byte(piAnswer)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var p Payment
			if !decodePayment(data, &p) {
				b.Fatal("not taken")
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var p Payment
			if err := json.Unmarshal(data, &p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
