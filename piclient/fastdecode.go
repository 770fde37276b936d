package piclient

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// decodePayment decodes a PaymentDTO into p, which must be zero. It reads the
// plain form Pi writes (the fields by their exact names, each once, strings
// without escapes, booleans as booleans) without reflection, and gives up,
// returning false, on anything else: a key in another case, a repeated key, an
// escape, a string that is not UTF-8, a value of another type, invalid JSON.
// Then p may hold part of the answer and the caller zeroes it and decodes it
// with encoding/json, which decides. When it returns true, p is exactly what
// json.Unmarshal would have made of data (FuzzDecodePayment checks this).
//
// It is the Pi client's hot path: three answers per payment, and
// encoding/json spent about 15 µs on each.
func decodePayment(data []byte, p *Payment) bool {
	d := decoder{b: data}
	d.ws()
	if !d.eat('{') {
		return false
	}
	var seen uint16
	d.ws()
	if d.eat('}') {
		return d.end()
	}
	for {
		d.ws()
		key, ok := d.plainString()
		if !ok {
			return false
		}
		d.ws()
		if !d.eat(':') {
			return false
		}
		d.ws()
		bit, known := paymentField(key)
		if !known {
			if !d.unknownKey(key, paymentKeys) || !d.skip() {
				return false
			}
		} else {
			if seen&bit != 0 {
				return false
			}
			seen |= bit
			if !d.paymentValue(bit, p) {
				return false
			}
		}
		d.ws()
		if d.eat(',') {
			continue
		}
		if d.eat('}') {
			return d.end()
		}
		return false
	}
}

// The PaymentDTO's fields, one bit each.
const (
	fIdentifier uint16 = 1 << iota
	fUserUID
	fAmount
	fMemo
	fMetadata
	fFromAddress
	fToAddress
	fDirection
	fCreatedAt
	fNetwork
	fStatus
	fTransaction
)

var paymentKeys = []string{"identifier", "user_uid", "amount", "memo", "metadata", "from_address",
	"to_address", "direction", "created_at", "network", "status", "transaction"}

func paymentField(key []byte) (uint16, bool) {
	for i, k := range paymentKeys {
		if string(key) == k {
			return 1 << i, true
		}
	}
	return 0, false
}

func (d *decoder) paymentValue(bit uint16, p *Payment) bool {
	switch bit {
	case fIdentifier:
		return d.stringInto(&p.Identifier)
	case fUserUID:
		return d.stringInto(&p.UserUID)
	case fMemo:
		return d.stringInto(&p.Memo)
	case fFromAddress:
		return d.stringInto(&p.FromAddress)
	case fToAddress:
		return d.stringInto(&p.ToAddress)
	case fDirection:
		return d.stringInto(&p.Direction)
	case fCreatedAt:
		return d.stringInto(&p.CreatedAt)
	case fNetwork:
		return d.stringInto(&p.Network)
	case fAmount:
		start := d.i
		if !d.skip() {
			return false
		}
		return p.Amount.UnmarshalJSON(d.b[start:d.i]) == nil
	case fMetadata:
		start := d.i
		if !d.skip() {
			return false
		}
		p.Metadata = append(json.RawMessage(nil), d.b[start:d.i]...)
		return true
	case fStatus:
		if d.null() {
			return true
		}
		return d.status(&p.Status)
	case fTransaction:
		if d.null() {
			p.Transaction = nil
			return true
		}
		t := new(Transaction)
		if !d.transaction(t) {
			return false
		}
		p.Transaction = t
		return true
	}
	return false
}

var statusKeys = []string{"developer_approved", "transaction_verified", "developer_completed", "cancelled", "user_cancelled"}

func (d *decoder) status(s *Status) bool {
	flags := [...]*bool{&s.DeveloperApproved, &s.TransactionVerified, &s.DeveloperCompleted, &s.Cancelled, &s.UserCancelled}
	return d.object(statusKeys, func(i int) bool { return d.boolInto(flags[i]) })
}

var transactionKeys = []string{"txid", "verified", "_link"}

func (d *decoder) transaction(t *Transaction) bool {
	return d.object(transactionKeys, func(i int) bool {
		switch i {
		case 0:
			return d.stringInto(&t.TxID)
		case 1:
			return d.boolInto(&t.Verified)
		default:
			return d.stringInto(&t.Link)
		}
	})
}

// object reads an object whose known keys are keys, each at most once, the
// value of keys[i] by value(i); it skips other keys.
func (d *decoder) object(keys []string, value func(i int) bool) bool {
	if !d.eat('{') {
		return false
	}
	var seen uint
	d.ws()
	if d.eat('}') {
		return true
	}
	for {
		d.ws()
		key, ok := d.plainString()
		if !ok {
			return false
		}
		d.ws()
		if !d.eat(':') {
			return false
		}
		d.ws()
		i := indexOf(keys, key)
		switch {
		case i < 0:
			if !d.unknownKey(key, keys) || !d.skip() {
				return false
			}
		case seen&(1<<i) != 0:
			return false
		default:
			seen |= 1 << i
			if !value(i) {
				return false
			}
		}
		d.ws()
		if d.eat(',') {
			continue
		}
		return d.eat('}')
	}
}

func indexOf(keys []string, key []byte) int {
	for i, k := range keys {
		if string(key) == k {
			return i
		}
	}
	return -1
}

// decoder reads JSON from b at i.
type decoder struct {
	b []byte
	i int
}

func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *decoder) eat(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// end reports whether only whitespace follows.
func (d *decoder) end() bool {
	d.ws()
	return d.i == len(d.b)
}

func (d *decoder) literal(s string) bool {
	if len(d.b)-d.i >= len(s) && string(d.b[d.i:d.i+len(s)]) == s {
		d.i += len(s)
		return true
	}
	return false
}

func (d *decoder) null() bool { return d.literal("null") }

// plainString reads a string without escapes or control characters, valid
// UTF-8, and returns its bytes (which alias b).
func (d *decoder) plainString() ([]byte, bool) {
	if !d.eat('"') {
		return nil, false
	}
	start, ascii := d.i, true
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			return s, ascii || utf8.Valid(s)
		case c < 0x20 || c == '\\':
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
		d.i++
	}
	return nil, false
}

// stringInto reads a plain string (copied) or null (no change) into s.
func (d *decoder) stringInto(s *string) bool {
	if d.null() {
		return true
	}
	v, ok := d.plainString()
	if ok {
		*s = string(v)
	}
	return ok
}

// boolInto reads true, false or null (no change) into v.
func (d *decoder) boolInto(v *bool) bool {
	switch {
	case d.literal("true"):
		*v = true
	case d.literal("false"):
		*v = false
	default:
		return d.null()
	}
	return true
}

// unknownKey reports whether key, not one of keys, can be skipped as
// encoding/json would skip it: ASCII (encoding/json folds some non-ASCII
// letters, such as the Kelvin sign, onto ASCII ones) and equal to none of
// keys in another case.
func (d *decoder) unknownKey(key []byte, keys []string) bool {
	for _, c := range key {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	for _, k := range keys {
		if strings.EqualFold(string(key), k) {
			return false
		}
	}
	return true
}

// maxSkipDepth is the deepest nesting skip follows (encoding/json refuses
// more than 10000 levels).
const maxSkipDepth = 1000

// skip reads one JSON value of any kind, checking its grammar.
func (d *decoder) skip() bool {
	depth := 0
	// closers holds the bracket each open level expects.
	var stack [32]byte
	closers := stack[:0]
	for {
		// A value.
		d.ws()
		if d.i >= len(d.b) {
			return false
		}
		switch c := d.b[d.i]; {
		case c == '{' || c == '[':
			depth++
			if depth > maxSkipDepth {
				return false
			}
			d.i++
			d.ws()
			if c == '{' {
				closers = append(closers, '}')
				if d.eat('}') {
					depth--
					closers = closers[:len(closers)-1]
					break
				}
				if !d.skipKey() {
					return false
				}
				continue
			}
			closers = append(closers, ']')
			if d.eat(']') {
				depth--
				closers = closers[:len(closers)-1]
				break
			}
			continue
		case c == '"':
			if !d.skipString() {
				return false
			}
		case c == '-' || (c >= '0' && c <= '9'):
			if !d.skipNumber() {
				return false
			}
		case d.literal("true"), d.literal("false"), d.literal("null"):
		default:
			return false
		}
		// After a value: close levels or go on to the next member.
		for {
			if len(closers) == 0 {
				return true
			}
			d.ws()
			top := closers[len(closers)-1]
			if d.eat(top) {
				closers = closers[:len(closers)-1]
				depth--
				continue
			}
			if !d.eat(',') {
				return false
			}
			if top == '}' {
				d.ws()
				if !d.skipKey() {
					return false
				}
			}
			break
		}
	}
}

// skipKey reads an object member's key and its colon.
func (d *decoder) skipKey() bool {
	if !d.skipString() {
		return false
	}
	d.ws()
	return d.eat(':')
}

// skipString reads a string with any escapes JSON allows.
func (d *decoder) skipString() bool {
	if !d.eat('"') {
		return false
	}
	for d.i < len(d.b) {
		c := d.b[d.i]
		d.i++
		switch {
		case c == '"':
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if d.i >= len(d.b) {
				return false
			}
			e := d.b[d.i]
			d.i++
			switch e {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if d.i+4 > len(d.b) {
					return false
				}
				for _, h := range d.b[d.i : d.i+4] {
					if !isHex(h) {
						return false
					}
				}
				d.i += 4
			default:
				return false
			}
		}
	}
	return false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// skipNumber reads a number in JSON's grammar.
func (d *decoder) skipNumber() bool {
	d.eat('-')
	digits := func() int {
		n := 0
		for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
			d.i++
			n++
		}
		return n
	}
	if d.eat('0') {
		// no more digits may follow a leading zero
	} else if digits() == 0 {
		return false
	}
	if d.eat('.') && digits() == 0 {
		return false
	}
	if d.eat('e') || d.eat('E') {
		if !d.eat('+') {
			d.eat('-')
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}
