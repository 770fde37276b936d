// Package jsonenc appends JSON byte for byte as json.Marshal writes it, for
// the values the guard encodes on every payment (a token's claims, a
// record), without reflection: strings, raw JSON and piclient.Payment.
// Each function's tests compare it with encoding/json
// (verify/claimsjson_test.go, internal/ledger/recordjson_test.go).
package jsonenc

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// Payment appends p as json.Marshal writes a piclient.Payment.
func Payment(b []byte, p *piclient.Payment) (_ []byte, ok bool) {
	b = append(b, `{"identifier":`...)
	b = String(b, p.Identifier)
	b = append(b, `,"user_uid":`...)
	b = String(b, p.UserUID)
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
	b = String(b, p.Memo)
	b = append(b, `,"metadata":`...)
	if b, ok = Raw(b, p.Metadata); !ok {
		return b, false
	}
	b = append(b, `,"from_address":`...)
	b = String(b, p.FromAddress)
	b = append(b, `,"to_address":`...)
	b = String(b, p.ToAddress)
	b = append(b, `,"direction":`...)
	b = String(b, p.Direction)
	b = append(b, `,"created_at":`...)
	b = String(b, p.CreatedAt)
	b = append(b, `,"network":`...)
	b = String(b, p.Network)
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
		b = String(b, t.TxID)
		b = append(b, `,"verified":`...)
		b = strconv.AppendBool(b, t.Verified)
		b = append(b, `,"_link":`...)
		b = String(b, t.Link)
		b = append(b, '}')
	}
	return append(b, '}'), true
}

// Raw appends m as json.Marshal writes a json.RawMessage: null when
// nil, else m compacted (whitespace outside strings dropped) with <, >, &,
// U+2028 and U+2029 escaped, after the same validity check. ok is false when
// m is not valid JSON.
func Raw(b []byte, m json.RawMessage) (_ []byte, ok bool) {
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

// String appends s quoted as encoding/json writes a string with
// HTML escaping on (json.Marshal's default): ", \ and the short escapes \b \f
// \n \r \t; other control characters and <, >, & as \u00XX; U+2028 and U+2029
// as \u2028 and \u2029; each byte of invalid UTF-8 as \ufffd.
func String(b []byte, s string) []byte {
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
