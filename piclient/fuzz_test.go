package piclient_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

func FuzzValidatePaymentID(f *testing.F) {
	for _, s := range []string{
		testID, "a", "-", "_", "pay-ment_ID", strings.Repeat("a", 64), strings.Repeat("a", 65),
		"", "..", ".", "../x", "a/b", "a%2Fb", "a b", "a\n", "paymént", "a\x00", "ａ", "\xff", "a?b#c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := piclient.ValidatePaymentID(id)
		want := len(id) >= 1 && len(id) <= piclient.MaxPaymentIDLength
		for i := 0; i < len(id); i++ {
			c := id[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				want = false
			}
		}
		if want != (err == nil) {
			t.Fatalf("ValidatePaymentID(%q) = %v, want accepted=%v", id, err, want)
		}
		if err != nil {
			if !piclient.IsInvalid(err) {
				t.Fatalf("ValidatePaymentID(%q): error %v is not IsInvalid", id, err)
			}
			return
		}
		// Safe as one URL path segment, untouched by escaping or cleaning.
		if url.PathEscape(id) != id || strings.Trim(id, ".") == "" {
			t.Fatalf("accepted %q is not a plain path segment", id)
		}
		u, perr := url.Parse("https://api.example.com/v2/payments/" + id)
		if perr != nil || u.Path != "/v2/payments/"+id || u.RawQuery != "" || u.Fragment != "" {
			t.Fatalf("accepted %q changes the URL: %v %+v", id, perr, u)
		}
	})
}

func FuzzValidateTxID(f *testing.F) {
	for _, s := range []string{
		testTxID, strings.ToUpper(testTxID), testTxID[:63], testTxID + "0", "", strings.Repeat("g", 64),
		"0x" + testTxID[2:], strings.Repeat("é", 32), testTxID[:63] + "\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, txid string) {
		err := piclient.ValidateTxID(txid)
		raw, herr := hex.DecodeString(txid)
		want := herr == nil && len(raw) == 32
		if want != (err == nil) {
			t.Fatalf("ValidateTxID(%q) = %v, want accepted=%v", txid, err, want)
		}
		if err != nil && !piclient.IsInvalid(err) {
			t.Fatalf("ValidateTxID(%q): error %v is not IsInvalid", txid, err)
		}
	})
}

// normalMetadata returns metadata as a comparable value (numbers kept as
// text), treating an absent value as null.
func normalMetadata(t *testing.T, m json.RawMessage) any {
	t.Helper()
	if m == nil {
		m = json.RawMessage("null")
	}
	d := json.NewDecoder(bytes.NewReader(m))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("metadata %q does not decode: %v", m, err)
	}
	return v
}

func FuzzPaymentDecode(f *testing.F) {
	for _, s := range []string{
		fullPaymentJSON(testID),
		minimalPaymentJSON(testID),
		`{}`, `null`, `[]`, `{"amount":"1e-7"}`, `{"amount":1e1001}`, `{"amount":"0x1"}`,
		`{"amount":0.30000000000000004,"metadata":{"a":[1,2,{"b":"<&>"}]}}`,
		`{"metadata":"\u2028"}`, `{"metadata":  [ 1 , 2 ]  }`, `{"memo":"\xff"}`,
		`{"identifier":"a","IDENTIFIER":"b","Amount":"2"}`,
		`{"transaction":{"txid":"x","verified":true,"_link":"l"},"status":{"cancelled":true}}`,
		`{"transaction":null,"metadata":null}`,
		`{"status":{"developer_approved":"yes"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p piclient.Payment
		if err := json.Unmarshal(data, &p); err != nil {
			return
		}
		if p.Amount != "" {
			if _, err := piclient.ParseAmount(string(p.Amount)); err != nil {
				t.Fatalf("decoded amount %q does not parse: %v", p.Amount, err)
			}
			if p.Amount.Rat() == nil {
				t.Fatalf("decoded amount %q has no exact value", p.Amount)
			}
		}
		b, err := json.Marshal(&p)
		if err != nil {
			t.Fatalf("decoded payment does not encode: %v\n%q", err, data)
		}
		var q piclient.Payment
		if err := json.Unmarshal(b, &q); err != nil {
			t.Fatalf("encoded payment does not decode: %v\n%s", err, b)
		}
		if q.Amount != p.Amount {
			t.Fatalf("amount text changed: %q -> %q", p.Amount, q.Amount)
		}
		pm, qm := normalMetadata(t, p.Metadata), normalMetadata(t, q.Metadata)
		pb, _ := json.Marshal(pm)
		qb, _ := json.Marshal(qm)
		if !bytes.Equal(pb, qb) {
			t.Fatalf("metadata changed: %s -> %s", p.Metadata, q.Metadata)
		}
		p.Metadata, q.Metadata = nil, nil
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("payment changed:\n%+v\n%+v", p, q)
		}
		// A second trip changes nothing at all.
		b2, err := json.Marshal(&q)
		if err != nil {
			t.Fatal(err)
		}
		var r piclient.Payment
		if err := json.Unmarshal(b2, &r); err != nil {
			t.Fatal(err)
		}
		b3, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b2, b3) {
			t.Fatalf("encoding is not stable:\n%s\n%s", b2, b3)
		}
	})
}

// jsonNumber is JSON's number grammar (RFC 8259), independent of the code
// under test.
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE]([+-]?)([0-9]+))?$`)

// amountOracle says whether ParseAmount should accept s: a JSON number of at
// most 100 characters whose exponent is at most 1000 in magnitude.
func amountOracle(s string) bool {
	m := jsonNumber.FindStringSubmatch(s)
	if m == nil || len(s) > 100 {
		return false
	}
	if m[5] != "" {
		exp, ok := new(big.Int).SetString(m[5], 10)
		if !ok || exp.Cmp(big.NewInt(1000)) > 0 {
			return false
		}
	}
	return true
}

func FuzzAmount(f *testing.F) {
	for _, s := range [][2]string{
		{"0.1", "0.2"}, {"0.3", "0.30000000000000004"}, {"1.0", "1"}, {"10", "1e1"}, {"1e-7", "0.0000001"},
		{"3.14159265358979323846", "3.14159265358979323847"}, {"-1", "-0"}, {"1e1000", "1e1001"},
		{"1e-1000", "0"}, {"", "abc"}, {" 1", "1 "}, {"01", "+1"}, {"1.", ".5"}, {"1E+07", "1e0007"},
		{"NaN", "Infinity"}, {"0x10", "1_000"}, {strings.Repeat("9", 100), strings.Repeat("9", 101)},
		{"1e99999999999999999999", "-1e-0"}, {"9007199254740993", "9007199254740992"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, s1, s2 string) {
		a, err := piclient.ParseAmount(s1)
		if want := amountOracle(s1); want != (err == nil) {
			t.Fatalf("ParseAmount(%q) = %v, want accepted=%v", s1, err, want)
		}
		if err != nil {
			if a != "" {
				t.Fatalf("ParseAmount(%q) failed but returned %q", s1, a)
			}
			// Refused as a JSON number too (a JSON string holding a number,
			// or text padded with JSON whitespace, is another matter).
			var viaJSON piclient.Amount
			if s1 == strings.Trim(s1, " \t\r\n") && !strings.HasPrefix(s1, `"`) &&
				json.Unmarshal([]byte(s1), &viaJSON) == nil && viaJSON != "" {
				t.Fatalf("rejected %q decodes from JSON as %q", s1, viaJSON)
			}
			return
		}
		if a.String() != s1 {
			t.Fatalf("text changed: %q -> %q", s1, a)
		}
		r := a.Rat()
		if r == nil {
			t.Fatalf("accepted %q has no exact value", s1)
		}
		if a.Cmp(a) != 0 {
			t.Fatalf("%q != itself", s1)
		}
		if a.Cmp("") != 1 || piclient.Amount("").Cmp(a) != -1 {
			t.Fatalf("%q does not sort above unset", s1)
		}
		b, err := json.Marshal(a)
		if err != nil || string(b) != s1 {
			t.Fatalf("Marshal(%q) = %s, %v", s1, b, err)
		}
		var back piclient.Amount
		if err := json.Unmarshal(b, &back); err != nil || back != a {
			t.Fatalf("Unmarshal(%s) = %q, %v", b, back, err)
		}
		quoted, _ := json.Marshal(s1)
		if err := json.Unmarshal(quoted, &back); err != nil || back != a {
			t.Fatalf("Unmarshal(%s) = %q, %v", quoted, back, err)
		}

		b2, err := piclient.ParseAmount(s2)
		if err != nil {
			return
		}
		c := a.Cmp(b2)
		if c != -b2.Cmp(a) {
			t.Fatalf("Cmp not antisymmetric: %q %q", s1, s2)
		}
		if c != r.Cmp(b2.Rat()) {
			t.Fatalf("Cmp(%q, %q) = %d, exact comparison says otherwise", s1, s2, c)
		}
		// Rounding to float64 is monotonic: when the floats differ strictly,
		// the exact comparison agrees.
		f1, e1 := strconv.ParseFloat(s1, 64)
		f2, e2 := strconv.ParseFloat(s2, 64)
		if e1 == nil && e2 == nil {
			if f1 < f2 && c != -1 || f1 > f2 && c != 1 {
				t.Fatalf("Cmp(%q, %q) = %d but floats are %v, %v", s1, s2, c, f1, f2)
			}
		}
	})
}
