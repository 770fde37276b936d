package ledger

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/jsonenc"
)

// marshalRecord is json.Marshal(rec), the on-disk format, written by hand:
// a record is encoded twice per payment (owed, then delivered) and
// reflection cost more than the file writes around it. A record holding what
// only encoding/json can rule on (an amount or metadata that is not valid
// JSON, a time outside RFC 3339) goes to json.Marshal, which decides.
func marshalRecord(rec *Record) ([]byte, error) {
	if b, ok := appendRecord(make([]byte, 0, 2048), rec); ok {
		return b, nil
	}
	return json.Marshal(rec)
}

// appendRecord appends rec's JSON to b, byte for byte what json.Marshal(rec)
// writes (TestAppendRecordMatchesEncodingJSON): the fields in struct order
// under their tag names, omitempty and omitzero where tagged. ok is false
// when encoding/json must decide.
//
// A field added to Record, Request or Delivery must be added here too: the
// test fills every field and fails until it is.
func appendRecord(b []byte, rec *Record) (_ []byte, ok bool) {
	b = append(b, `{"payment_id":`...)
	b = jsonenc.String(b, rec.PaymentID)
	b = append(b, `,"phase":`...)
	b = jsonenc.String(b, rec.Phase)
	if rec.TxID != "" {
		b = append(b, `,"txid":`...)
		b = jsonenc.String(b, rec.TxID)
	}
	b = append(b, `,"payment":`...)
	if rec.Payment == nil {
		b = append(b, "null"...)
	} else if b, ok = jsonenc.Payment(b, rec.Payment); !ok {
		return b, false
	}
	if r := rec.Request; r != nil {
		b = append(b, `,"request":{"method":`...)
		b = jsonenc.String(b, r.Method)
		b = append(b, `,"path":`...)
		b = jsonenc.String(b, r.Path)
		if r.Host != "" {
			b = append(b, `,"host":`...)
			b = jsonenc.String(b, r.Host)
		}
		if len(r.Header) > 0 {
			b = append(b, `,"header":`...)
			b = appendHeader(b, r.Header)
		}
		if len(r.Body) > 0 {
			b = append(b, `,"body":"`...)
			b = base64.StdEncoding.AppendEncode(b, r.Body)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	d := &rec.Delivery
	b = append(b, `,"delivery":{`...)
	if d.State != "" {
		b = append(b, `"state":`...)
		b = jsonenc.String(b, d.State)
		b = append(b, ',')
	}
	b = append(b, `"attempts":`...)
	b = strconv.AppendInt(b, int64(d.Attempts), 10)
	if !d.NextAttempt.IsZero() {
		b = append(b, `,"next_attempt":`...)
		if b, ok = appendTime(b, d.NextAttempt); !ok {
			return b, false
		}
	}
	if d.LastError != "" {
		b = append(b, `,"last_error":`...)
		b = jsonenc.String(b, d.LastError)
	}
	if !d.DeliveredAt.IsZero() {
		b = append(b, `,"delivered_at":`...)
		if b, ok = appendTime(b, d.DeliveredAt); !ok {
			return b, false
		}
	}
	b = append(b, '}')
	if len(rec.Payer) > 0 {
		b = append(b, `,"payer":`...)
		b = appendStrings(b, rec.Payer)
	}
	if len(rec.PayerBefore) > 0 {
		b = append(b, `,"payer_before":`...)
		b = appendStrings(b, rec.PayerBefore)
	}
	if rec.Caller != "" {
		b = append(b, `,"caller":`...)
		b = jsonenc.String(b, rec.Caller)
	}
	if !rec.CompletedAt.IsZero() {
		b = append(b, `,"completed_at":`...)
		if b, ok = appendTime(b, rec.CompletedAt); !ok {
			return b, false
		}
	}
	b = append(b, `,"created":`...)
	if b, ok = appendTime(b, rec.Created); !ok {
		return b, false
	}
	b = append(b, `,"updated":`...)
	if b, ok = appendTime(b, rec.Updated); !ok {
		return b, false
	}
	if rec.Version != 0 {
		b = append(b, `,"version":`...)
		b = strconv.AppendUint(b, rec.Version, 10)
	}
	return append(b, '}'), true
}

// appendHeader appends h as encoding/json writes a map of string slices:
// keys sorted, a nil slice as null.
func appendHeader(b []byte, h map[string][]string) []byte {
	var small [32]string
	keys := small[:0]
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonenc.String(b, k)
		b = append(b, ':')
		if v := h[k]; v == nil {
			b = append(b, "null"...)
		} else {
			b = appendStrings(b, v)
		}
	}
	return append(b, '}')
}

func appendStrings(b []byte, s []string) []byte {
	b = append(b, '[')
	for i, v := range s {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonenc.String(b, v)
	}
	return append(b, ']')
}

// appendTime appends t as time.Time.MarshalJSON writes it (RFC 3339 with
// nanoseconds, quoted); ok is false where MarshalJSON fails (a year outside
// 0–9999, a zone offset of a day or more).
func appendTime(b []byte, t time.Time) (_ []byte, ok bool) {
	if y := t.Year(); y < 0 || y > 9999 {
		return b, false
	}
	if _, off := t.Zone(); off <= -24*3600 || off >= 24*3600 {
		return b, false
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), true
}
