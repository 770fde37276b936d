package verify

import (
	"encoding/json"
	"strconv"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/jsonenc"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// appendClaims appends c's JSON to b, byte for byte what json.Marshal(c)
// writes: the fields in struct order under their tag names, omitempty where
// tagged, strings escaped as encoding/json escapes them (HTML characters,
// U+2028, U+2029 and invalid UTF-8 included), the amount and the metadata as
// their MarshalJSON and encoding/json's compaction make them. It is the
// signer's encoder because reflection cost more than half of a token.
//
// ok is false when c holds what only encoding/json can rule on, an amount or
// metadata that is not valid JSON: the caller then asks json.Marshal, which
// returns the error (or, should it accept, the bytes).
//
// A field added to Claims, piclient.Payment, Status or Transaction must be
// added here too: TestAppendClaimsMatchesEncodingJSON fills every field and
// fails until it is.
func appendClaims(b []byte, c *Claims) (_ []byte, ok bool) {
	b = append(b, `{"iss":`...)
	b = appendJSONString(b, c.Issuer)
	b = append(b, `,"sub":`...)
	b = appendJSONString(b, c.Subject)
	b = append(b, `,"aud":`...)
	b = appendJSONString(b, c.Audience)
	b = append(b, `,"iat":`...)
	b = strconv.AppendInt(b, c.IssuedAt, 10)
	b = append(b, `,"exp":`...)
	b = strconv.AppendInt(b, c.Expiry, 10)
	b = append(b, `,"jti":`...)
	b = appendJSONString(b, c.ID)
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, string(c.Kind))
	b = append(b, `,"phase":`...)
	b = appendJSONString(b, c.Phase)
	b = append(b, `,"payment":`...)
	if b, ok = appendPayment(b, &c.Payment); !ok {
		return b, false
	}
	if c.AmountText != "" {
		b = append(b, `,"amount_text":`...)
		b = appendJSONString(b, c.AmountText)
	}
	b = append(b, `,"htm":`...)
	b = appendJSONString(b, c.Method)
	b = append(b, `,"htu":`...)
	b = appendJSONString(b, c.Path)
	b = append(b, `,"bsh":`...)
	b = appendJSONString(b, c.BodySHA256)
	if c.UserUID != "" {
		b = append(b, `,"uid":`...)
		b = appendJSONString(b, c.UserUID)
	}
	return append(b, '}'), true
}

// appendPayment appends p as json.Marshal writes a piclient.Payment.
func appendPayment(b []byte, p *piclient.Payment) ([]byte, bool) { return jsonenc.Payment(b, p) }

// appendRawJSON appends m as json.Marshal writes a json.RawMessage (ok is
// false when m is not valid JSON).
func appendRawJSON(b []byte, m json.RawMessage) ([]byte, bool) { return jsonenc.Raw(b, m) }

// appendJSONString appends s quoted as json.Marshal writes a string.
func appendJSONString(b []byte, s string) []byte { return jsonenc.String(b, s) }
