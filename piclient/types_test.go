package piclient_test

import (
	"encoding/json"
	"math/big"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

func TestParseAmountValid(t *testing.T) {
	for _, s := range []string{
		"0", "-0", "0.1", "0.2", "0.3", "10", "1.0", "1.50", "-1", "-0.0000001",
		"3.14159265358979323846", "1e-7", "1E-7", "1e7", "1E+7", "1e+07", "0e0", "0.0e-0",
		"123456789012345678901234567890.123456789012345678901234567890",
		"1e1000", "1e-1000", "1e0001000", strings.Repeat("9", 100),
	} {
		a, err := piclient.ParseAmount(s)
		require.NoError(t, err, "%q", s)
		assert.Equal(t, s, a.String(), "text kept exactly")
		assert.Equal(t, piclient.Amount(s), a)
		assert.NotNil(t, a.Rat(), "%q: every parsed amount has an exact value", s)

		// JSON round trip: written as the same number, read back the same,
		// whether the JSON holds a number or a string.
		b, err := json.Marshal(a)
		require.NoError(t, err)
		assert.Equal(t, s, string(b))
		var back piclient.Amount
		require.NoError(t, json.Unmarshal(b, &back))
		assert.Equal(t, a, back)
		var fromString piclient.Amount
		require.NoError(t, json.Unmarshal([]byte(`"`+s+`"`), &fromString))
		assert.Equal(t, a, fromString)
	}
}

func TestParseAmountInvalid(t *testing.T) {
	for _, s := range []string{
		"", " ", " 1", "1 ", "1\n", "\t1", "01", "-01", "00", "1.", ".5", "-.5", "+1", "--1", "-",
		"1e", "1e+", "1E-", "e5", "1.5.2", "1,5", "1_000", "0x10", "0b1", "NaN", "Inf", "-Infinity",
		"null", "true", `"1"`, "[1]", "1 2", "١", "1e1001", "1e-1001", "1e99999999999999999999",
		"1" + strings.Repeat("0", 100), "abc",
	} {
		_, err := piclient.ParseAmount(s)
		require.Error(t, err, "%q", s)
		assert.Contains(t, err.Error(), "not a decimal number")
	}
	_, err := piclient.ParseAmount(strings.Repeat("x", 1000))
	require.Error(t, err)
	assert.Less(t, len(err.Error()), 100, "long input is truncated in the error")
}

func TestAmountUnmarshalJSON(t *testing.T) {
	type holder struct {
		A piclient.Amount `json:"amount"`
	}
	for in, want := range map[string]piclient.Amount{
		`{"amount":0.1}`:                      "0.1",
		`{"amount":3.14159265358979323846}`:   "3.14159265358979323846",
		`{"amount":"3.14159265358979323846"}`: "3.14159265358979323846",
		`{"amount":1e-7}`:                     "1e-7",
		`{"amount":"1e-7"}`:                   "1e-7",
		`{"amount":-1}`:                       "-1",
		`{"amount": 10 }`:                     "10",
		`{"amount":"\u0031\u0030"}`:           "10",
		`{"amount":null}`:                     "",
		`{}`:                                  "",
	} {
		var h holder
		require.NoError(t, json.Unmarshal([]byte(in), &h), in)
		assert.Equal(t, want, h.A, in)
	}
	for _, in := range []string{
		`{"amount":"abc"}`, `{"amount":""}`, `{"amount":" 1"}`, `{"amount":"1 "}`, `{"amount":"0x1"}`,
		`{"amount":true}`, `{"amount":{}}`, `{"amount":[1]}`, `{"amount":"NaN"}`, `{"amount":1e5000}`,
		`{"amount":"null"}`, `{"amount":"\"1\""}`,
	} {
		var h holder
		assert.Error(t, json.Unmarshal([]byte(in), &h), in)
	}

	// Direct calls, as the decoder never makes them.
	var a piclient.Amount
	require.NoError(t, a.UnmarshalJSON([]byte(" 2.5 ")))
	assert.Equal(t, piclient.Amount("2.5"), a)
	require.NoError(t, a.UnmarshalJSON([]byte("null")))
	assert.Equal(t, piclient.Amount(""), a)
	assert.Error(t, a.UnmarshalJSON([]byte(`"unterminated`)))
}

func TestAmountMarshalJSON(t *testing.T) {
	b, err := json.Marshal(piclient.Amount(""))
	require.NoError(t, err)
	assert.Equal(t, "null", string(b), "unset amount")

	_, err = json.Marshal(piclient.Amount("abc"))
	require.Error(t, err)
	_, err = json.Marshal(piclient.Amount("1 "))
	require.Error(t, err)

	b, err = json.Marshal(struct {
		A piclient.Amount `json:"a"`
	}{"0.30000000000000004"})
	require.NoError(t, err)
	assert.Equal(t, `{"a":0.30000000000000004}`, string(b))
}

func TestAmountRat(t *testing.T) {
	assert.Nil(t, piclient.Amount("").Rat())
	assert.Nil(t, piclient.Amount("abc").Rat())
	assert.Equal(t, big.NewRat(3, 2), piclient.Amount("1.5").Rat())
	assert.Equal(t, big.NewRat(1, 10_000_000), piclient.Amount("1e-7").Rat())
	assert.Equal(t, big.NewRat(-1, 1), piclient.Amount("-1").Rat())
}

func TestAmountCmp(t *testing.T) {
	cases := []struct {
		a, b piclient.Amount
		want int
	}{
		{"1", "1", 0},
		{"1.0", "1", 0},
		{"1.000000000000000000000000000001", "1", 1},
		{"10", "1e1", 0},
		{"0.1", "1e-1", 0},
		{"0.30000000000000004", "0.3", 1},
		{"0.3", "0.30000000000000004", -1},
		{"0.29999999999999998", "0.3", -1}, // the same float64 as 0.3
		{"3.14159265358979323846", "3.14159265358979323847", -1},
		{"-1", "0", -1},
		{"-0", "0", 0},
		{"1e-7", "0.0000001", 0},
		{"1e1000", "1e999", 1},
		{"", "", 0},
		{"", "0", -1},
		{"0", "", 1},
		{"", "-1e1000", -1},
		{"abc", "-5", -1},
		{"abc", "", 0},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, tc.a.Cmp(tc.b), "%q cmp %q", tc.a, tc.b)
	}

	// 0.1 + 0.2 is 0.3 exactly as rationals, but not as float64.
	sum := new(big.Rat).Add(piclient.Amount("0.1").Rat(), piclient.Amount("0.2").Rat())
	assert.Equal(t, 0, sum.Cmp(piclient.Amount("0.3").Rat()))
	f1, f2 := 0.1, 0.2
	assert.NotEqual(t, 0.3, f1+f2, "the float64 trap this type avoids")
	assert.Equal(t, 1, piclient.Amount("0.30000000000000004").Cmp("0.3"))
}

func TestPaymentJSONRoundTrip(t *testing.T) {
	var p piclient.Payment
	require.NoError(t, json.Unmarshal([]byte(fullPaymentJSON(testID)), &p))
	assertFullPayment(t, &p)

	b, err := json.Marshal(&p)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"amount":3.14159265358979323846,`, "written as a JSON number, exactly")
	assert.Contains(t, string(b), `"_link":"https://`)

	var q piclient.Payment
	require.NoError(t, json.Unmarshal(b, &q))
	assert.JSONEq(t, string(p.Metadata), string(q.Metadata))
	p.Metadata, q.Metadata = nil, nil
	assert.Equal(t, p, q)
}

func TestPaymentJSONFieldsWritten(t *testing.T) {
	b, err := json.Marshal(piclient.Payment{})
	require.NoError(t, err)
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &m))
	for _, k := range []string{
		"identifier", "user_uid", "amount", "memo", "metadata", "from_address", "to_address",
		"direction", "created_at", "network", "status", "transaction",
	} {
		assert.Contains(t, m, k)
	}
	assert.Equal(t, "null", string(m["transaction"]))
	assert.Equal(t, "null", string(m["amount"]))
	assert.JSONEq(t, `{"developer_approved":false,"transaction_verified":false,"developer_completed":false,"cancelled":false,"user_cancelled":false}`,
		string(m["status"]))
}

func TestPaymentHelpers(t *testing.T) {
	var nilP *piclient.Payment
	assert.Equal(t, "", nilP.TxID())
	assert.False(t, nilP.IsCompletedWith(testTxID))

	p := &piclient.Payment{}
	assert.Equal(t, "", p.TxID())
	assert.False(t, p.IsCancelled())
	assert.False(t, p.IsCompletedWith(""))

	p.Status.Cancelled = true
	assert.True(t, p.IsCancelled())
	p.Status = piclient.Status{UserCancelled: true}
	assert.True(t, p.IsCancelled())

	p = &piclient.Payment{Status: piclient.Status{DeveloperCompleted: true}, Transaction: &piclient.Transaction{TxID: testTxID}}
	assert.Equal(t, testTxID, p.TxID())
	assert.True(t, p.IsCompletedWith(testTxID))
	assert.False(t, p.IsCompletedWith(""))
	assert.True(t, p.IsCompletedWith(strings.ToUpper(testTxID)), "txids compare in lower case")
	assert.False(t, p.IsCompletedWith(strings.Repeat("0", 64)))
	// Pi's txid in upper case (never seen, but harmless) reads in lower case.
	p.Transaction.TxID = strings.ToUpper(testTxID)
	assert.Equal(t, testTxID, p.TxID())
	assert.True(t, p.IsCompletedWith(testTxID))
	p.Status.DeveloperCompleted = false
	assert.False(t, p.IsCompletedWith(testTxID), "a txid alone is not completion")
	p = &piclient.Payment{Status: piclient.Status{DeveloperCompleted: true}}
	assert.False(t, p.IsCompletedWith(""), "no transaction, no completion")
}

func TestValidatePaymentID(t *testing.T) {
	for _, id := range []string{
		testID, "a", "Z", "0", "-", "_", "--", "a-b_c", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[:64],
		strings.Repeat("x", piclient.MaxPaymentIDLength),
	} {
		assert.NoError(t, piclient.ValidatePaymentID(id), "%q", id)
	}
	for _, id := range []string{
		"", "../x", "a/b", "a%2Fb", "a b", "a\n", "paymént", strings.Repeat("a", 65), "..", ".", "a.b", "a\x00b",
		"a\\b", "a?b", "a#b", "a:b", "a@b", "a+b", "a=b", "a~b", "ａ", " ", "\t", "\xff",
	} {
		err := piclient.ValidatePaymentID(id)
		require.Error(t, err, "%q", id)
		assert.ErrorIs(t, err, piclient.ErrInvalidPaymentID)
		assert.True(t, piclient.IsInvalid(err))
	}
}

func TestValidateTxID(t *testing.T) {
	for _, txid := range []string{
		testTxID, strings.ToUpper(testTxID), strings.Repeat("0", 64), strings.Repeat("f", 64), strings.Repeat("aB", 32),
	} {
		assert.NoError(t, piclient.ValidateTxID(txid), "%q", txid)
	}
	for _, txid := range []string{
		"", testTxID[:63], testTxID + "a", strings.Repeat("g", 64), strings.Repeat("0", 63) + "z",
		" " + testTxID[1:], testTxID[1:] + "\n", "0x" + testTxID[2:], strings.Repeat("é", 32),
		strings.Repeat("0", 128),
	} {
		err := piclient.ValidateTxID(txid)
		require.Error(t, err, "%q", txid)
		assert.ErrorIs(t, err, piclient.ErrInvalidTxID)
		assert.True(t, piclient.IsInvalid(err))
	}
}
