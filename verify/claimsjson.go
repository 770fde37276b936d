package verify

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

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
func appendPayment(b []byte, p *piclient.Payment) (_ []byte, ok bool) {
	b = append(b, `{"identifier":`...)
	b = appendJSONString(b, p.Identifier)
	b = append(b, `,"user_uid":`...)
	b = appendJSONString(b, p.UserUID)
	b = append(b, `,"amount":`...)
	// Amount.MarshalJSON: null when unset, else the number as it is once
	// checked (compaction leaves a JSON number unchanged).
	if p.Amount == "" {
		b = append(b, "null"...)
	} else {
		if _, err := piclient.ParseAmount(string(p.Amount)); err != nil {
			return b, false
		}
		b = append(b, p.Amount...)
	}
	b = append(b, `,"memo":`...)
	b = appendJSONString(b, p.Memo)
	b = append(b, `,"metadata":`...)
	if b, ok = appendRawJSON(b, p.Metadata); !ok {
		return b, false
	}
	b = append(b, `,"from_address":`...)
	b = appendJSONString(b, p.FromAddress)
	b = append(b, `,"to_address":`...)
	b = appendJSONString(b, p.ToAddress)
	b = append(b, `,"direction":`...)
	b = appendJSONString(b, p.Direction)
	b = append(b, `,"created_at":`...)
	b = appendJSONString(b, p.CreatedAt)
	b = append(b, `,"network":`...)
	b = appendJSONString(b, p.Network)
	b = append(b, `,"status":{"developer_approved":`...)
	b = strconv.AppendBool(b, p.Status.DeveloperApproved)
	b = append(b, `,"transaction_verified":`...)
	b = strconv.AppendBool(b, p.Status.TransactionVerified)
	b = append(b, `,"developer_completed":`...)
	b = strconv.AppendBool(b, p.Status.DeveloperCompleted)
	b = append(b, `,"cancelled":`...)
	b = strconv.AppendBool(b, p.Status.Cancelled)
	b = append(b, `,"user_cancelled":`...)
	b = strconv.AppendBool(b, p.Status.UserCancelled)
	b = append(b, `},"transaction":`...)
	if t := p.Transaction; t == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, `{"txid":`...)
		b = appendJSONString(b, t.TxID)
		b = append(b, `,"verified":`...)
		b = strconv.AppendBool(b, t.Verified)
		b = append(b, `,"_link":`...)
		b = appendJSONString(b, t.Link)
		b = append(b, '}')
	}
	return append(b, '}'), true
}

// appendRawJSON appends m as json.Marshal writes a json.RawMessage: null when
// nil, else m compacted (whitespace outside strings dropped) with <, >, &,
// U+2028 and U+2029 escaped, after the same validity check. ok is false when
// m is not valid JSON.
func appendRawJSON(b []byte, m json.RawMessage) (_ []byte, ok bool) {
	if m == nil {
		return append(b, "null"...), true
	}
	if !json.Valid(m) {
		return b, false
	}
	// m is valid, so outside strings there are only structure, literals and
	// whitespace, and <, >, & and U+2028/9 occur in strings alone.
	inString, escaped := false, false
	start := 0
	for i := 0; i < len(m); i++ {
		c := m[i]
		esc, n := "", 1 // m[i:i+n] is replaced by esc
		switch {
		case c == '<':
			esc = `\u003c`
		case c == '>':
			esc = `\u003e`
		case c == '&':
			esc = `\u0026`
		case c == 0xE2 && i+2 < len(m) && m[i+1] == 0x80 && m[i+2] == 0xA8:
			esc, n = `\u2028`, 3
		case c == 0xE2 && i+2 < len(m) && m[i+1] == 0x80 && m[i+2] == 0xA9:
			esc, n = `\u2029`, 3
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		case c == '"':
			inString = true
			continue
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			// whitespace between tokens: dropped
		default:
			continue
		}
		b = append(b, m[start:i]...)
		b = append(b, esc...)
		i += n - 1
		start = i + 1
	}
	return append(b, m[start:]...), true
}

// appendJSONString appends s quoted as encoding/json writes a string with
// HTML escaping on (json.Marshal's default): ", \ and the short escapes \b \f
// \n \r \t; other control characters and <, >, & as \u00XX; U+2028 and U+2029
// as \u2028 and \u2029; each byte of invalid UTF-8 as \ufffd.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// jsonSafe marks the ASCII bytes that encoding/json writes unescaped in a
// string with HTML escaping on: the printable ones and DEL, but not ", \, <,
// > and &.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()
