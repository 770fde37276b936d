package verify

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// stringPieces are what generated strings are made of: plain text, every
// character encoding/json escapes, multi-byte UTF-8, U+2028/9, and broken
// UTF-8 (stray, truncated, overlong, surrogate).
var stringPieces = []string{
	"a", "Zz09", "pay_TEST-1", " ", "/payments/complete", `"`, `\`, "<", ">", "&", "</script>", "'", "\x00", "\x01", "\b", "\f", "\n",
	"\r", "\t", "\x0b", "\x1f", "\x7f", "é", "café ☕ — 日本", "\u2028", "\u2029", "\u2027", "\u202a", "\ufffd", "\U0001F600",
	"\uffff", "\U0010ffff", "\xff", "\xc3", "\xe2\x80", "\xe2\x80\xa8", "\xe2\x80\xa9", "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80", "\x80",
}

func randString(rng *rand.Rand) string {
	if rng.IntN(5) == 0 {
		return ""
	}
	var b strings.Builder
	for range rng.IntN(8) + 1 {
		b.WriteString(stringPieces[rng.IntN(len(stringPieces))])
	}
	return b.String()
}

// randRawJSON makes metadata: mostly valid JSON with whitespace between
// tokens and strings holding what encoding/json escapes when compacting,
// sometimes nil, empty or broken.
func randRawJSON(rng *rand.Rand) json.RawMessage {
	switch rng.IntN(12) {
	case 0:
		return nil
	case 1:
		return json.RawMessage{}
	case 2:
		broken := []string{`{`, `{"a":}`, `"abc`, `{"a":1}x`, `[1,]`, `nul`, `"\x01"`, `"\q"`, `{"a" 1}`, ` `, `01`}
		return json.RawMessage(broken[rng.IntN(len(broken))])
	}
	var b strings.Builder
	ws := func() {
		for rng.IntN(3) == 0 {
			b.WriteByte(" \t\n\r"[rng.IntN(4)])
		}
	}
	var value func(depth int)
	value = func(depth int) {
		ws()
		switch k := rng.IntN(7); {
		case k == 0 && depth < 3:
			b.WriteByte('{')
			for i := range rng.IntN(4) {
				if i > 0 {
					ws()
					b.WriteByte(',')
				}
				ws()
				b.WriteString(rawString(rng))
				ws()
				b.WriteByte(':')
				value(depth + 1)
			}
			ws()
			b.WriteByte('}')
		case k == 1 && depth < 3:
			b.WriteByte('[')
			for i := range rng.IntN(4) {
				if i > 0 {
					ws()
					b.WriteByte(',')
				}
				value(depth + 1)
			}
			ws()
			b.WriteByte(']')
		case k == 2:
			b.WriteString([]string{"true", "false", "null"}[rng.IntN(3)])
		case k == 3:
			b.WriteString([]string{"0", "-1", "42", "3.14", "1e9", "-0.5E-3"}[rng.IntN(6)])
		default:
			b.WriteString(rawString(rng))
		}
		ws()
	}
	value(0)
	return json.RawMessage(b.String())
}

// rawString is a JSON string literal as some other program may write it:
// HTML characters, U+2028/9 and non-ASCII unescaped, escapes of every kind.
func rawString(rng *rand.Rand) string {
	pieces := []string{"a", "orderId", " ", "<", ">", "&", "\u2028", "\u2029", "é", "☕", `\"`, `\\`, `\/`, `\n`, `\t`, `\u0041`, `\u2028`, `\u003c`, "\xff", "'"}
	var b strings.Builder
	b.WriteByte('"')
	for range rng.IntN(6) {
		b.WriteString(pieces[rng.IntN(len(pieces))])
	}
	b.WriteByte('"')
	return b.String()
}

var (
	amountType     = reflect.TypeFor[piclient.Amount]()
	rawMessageType = reflect.TypeFor[json.RawMessage]()
)

// fill sets every field of v, recursively, to random values. It knows kinds,
// not fields, so a field added to Claims or piclient.Payment is filled too
// and a comparison with encoding/json notices when appendClaims lacks it.
func fill(t *testing.T, rng *rand.Rand, amounts []string, v reflect.Value) {
	switch v.Type() {
	case amountType:
		if rng.IntN(8) == 0 {
			v.SetString("")
		} else {
			v.SetString(amounts[rng.IntN(len(amounts))])
		}
		return
	case rawMessageType:
		v.Set(reflect.ValueOf(randRawJSON(rng)))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(randString(rng))
	case reflect.Bool:
		v.SetBool(rng.IntN(2) == 0)
	case reflect.Int, reflect.Int64:
		switch rng.IntN(3) {
		case 0:
			v.SetInt(0)
		case 1:
			v.SetInt(rng.Int64N(1 << 40))
		default:
			v.SetInt(int64(rng.Uint64()))
		}
	case reflect.Struct:
		for i := range v.NumField() {
			fill(t, rng, amounts, v.Field(i))
		}
	case reflect.Pointer:
		if rng.IntN(3) == 0 {
			v.SetZero()
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, rng, amounts, v.Elem())
	default:
		t.Fatalf("fill: %v is of a kind it does not know; teach it, and appendClaims", v.Type())
	}
}

// appendClaims writes what encoding/json writes, for claims with every field
// random: odd strings, odd metadata, odd amounts. Where it declines,
// encoding/json must fail.
func TestAppendClaimsMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	amounts := append([]string{"3.1415926", "1", "0.5"}, amountCorpus()[:300]...)
	declined := 0
	for i := range 20000 {
		var c Claims
		fill(t, rng, amounts, reflect.ValueOf(&c).Elem())
		want, err := json.Marshal(&c)
		got, ok := appendClaims([]byte("prefix"), &c)
		if !ok {
			declined++
			if err == nil {
				t.Fatalf("case %d: appendClaims declined what encoding/json writes:\n%s", i, want)
			}
			continue
		}
		if err != nil {
			t.Fatalf("case %d: appendClaims wrote what encoding/json refuses (%v):\n%s", i, err, got)
		}
		if !bytes.Equal(got[len("prefix"):], want) {
			t.Fatalf("case %d differs:\n got %q\nwant %q", i, got[len("prefix"):], want)
		}
	}
	// Both sides must be well exercised.
	if declined < 500 || declined > 10000 {
		t.Fatalf("%d of 20000 declined; the generator is off", declined)
	}
}

// The tokens the signer makes in the tests are encoded the same both ways.
func TestAppendClaimsFixtures(t *testing.T) {
	for _, c := range []Claims{validClaims(KindVerified), validClaims(KindNotice), {}} {
		c.AmountText = AmountText(c.Payment.Amount)
		c.UserUID = "user-uid-TEST"
		want, err := json.Marshal(&c)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := appendClaims(nil, &c)
		if !ok || !bytes.Equal(got, want) {
			t.Fatalf("got %q, %v\nwant %q", got, ok, want)
		}
	}
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	check := func(s string) {
		t.Helper()
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
	}
	for c := range 256 {
		check(string([]byte{byte(c)}))
		check("x" + string([]byte{byte(c)}) + "y")
	}
	for r := rune(0); r <= 0x3000; r++ {
		check(string(r))
	}
	for _, r := range []rune{0xd7ff, 0xe000, 0xfeff, 0xfffd, 0xfffe, 0xffff, 0x10000, 0x1f600, 0x10ffff} {
		check(string(r))
	}
	for _, s := range stringPieces {
		check(s)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		check(randString(rng))
	}
}

func TestAppendRawJSONMatchesEncodingJSON(t *testing.T) {
	check := func(m json.RawMessage) {
		t.Helper()
		want, err := json.Marshal(m)
		got, ok := appendRawJSON(nil, m)
		if ok != (err == nil) || ok && !bytes.Equal(got, want) {
			t.Fatalf("%q: got %q, %v; encoding/json %q, %v", m, got, ok, want, err)
		}
	}
	for _, m := range []string{`null`, ` {"a" : [1, 2 ,"<&>"] } `, "\"\u2028\u2029\"", `"\\"`, `"\\" `, `"a\"b <"`, `["\"", " < "]`,
		"{\"\xff\": \"\xe2\x80\"}", "\t\n\r 1 \t\n\r", `{"orderId":42}`} {
		check(json.RawMessage(m))
	}
	check(nil)
	check(json.RawMessage{})
	rng := rand.New(rand.NewPCG(7, 8))
	for range 20000 {
		check(randRawJSON(rng))
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range stringPieces {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
	})
}

func FuzzAppendRawJSON(f *testing.F) {
	f.Add([]byte(` {"a" : [1, 2 ,"<&>"] } `))
	f.Add([]byte("\"\u2028\""))
	f.Add([]byte(`"\\" `))
	f.Fuzz(func(t *testing.T, m []byte) {
		want, err := json.Marshal(json.RawMessage(m))
		got, ok := appendRawJSON(nil, m)
		if ok != (err == nil) || ok && !bytes.Equal(got, want) {
			t.Fatalf("%q: got %q, %v; encoding/json %q, %v", m, got, ok, want, err)
		}
	})
}
