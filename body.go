package piguard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// callback is what the app's frontend posts to a payment route.
type callback struct {
	PaymentID string
	TxID      string
	// PaymentIdentifier is payment.identifier from an incomplete-payment
	// body ({"payment": {...}}, the PaymentDTO the SDK handed the frontend).
	// Only the identifier is read: the rest is untrusted and re-read from Pi.
	PaymentIdentifier string
	// PostedTxID is payment.transaction.txid from such a body. The guard
	// never uses it, but an app may read it: it must be Pi's.
	PostedTxID string
	// PostedLink is payment.transaction._link: an app may follow it (Pi's
	// reference backend does), so it must be Pi's too.
	PostedLink string
}

// id returns the payment id the callback names: paymentId, or else the
// posted payment's identifier.
func (cb callback) id() (string, error) {
	switch {
	case cb.PaymentID != "" && cb.PaymentIdentifier != "" && cb.PaymentID != cb.PaymentIdentifier:
		return "", errors.New("paymentId and payment.identifier name different payments")
	case cb.PaymentID != "":
		return cb.PaymentID, nil
	}
	return cb.PaymentIdentifier, nil
}

// errUnsupportedMedia is returned for bodies that are neither JSON nor a form.
var errUnsupportedMedia = errors.New("unsupported content type")

// readBody reads the whole request body, at most limit bytes, and puts an
// identical body back so the upstream receives the request byte for byte.
//
// The body is never closed here: a body closed before its end hides from
// net/http (behind Caddy's own body wrappers) that bytes of it are still on
// the wire, and the connection would be reused with the rest of the body
// read as new requests. ServeHTTP closes the connection instead whenever it
// answers before the body was read to its end (see bodyWatch).
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		setBody(r, nil)
		return nil, nil
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		return nil, err
	}
	setBody(r, data)
	return data, nil
}

// setBody replaces r's body with data and makes the framing agree with it:
// reverse_proxy trusts ContentLength and would otherwise send an empty or
// chunked body.
func setBody(r *http.Request, data []byte) {
	r.Body = io.NopCloser(bytes.NewReader(data))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	r.ContentLength = int64(len(data))
	r.TransferEncoding = nil
	if len(data) == 0 {
		r.Body = http.NoBody
		r.Header.Del("Content-Length")
	} else {
		var buf [20]byte
		n := strconv.AppendInt(buf[:0], int64(len(data)), 10)
		if v := r.Header["Content-Length"]; len(v) != 1 || v[0] != string(n) {
			// (A client's own, equal Content-Length is kept as it is.)
			r.Header.Set("Content-Length", string(n))
		}
	}
}

// parseCallback reads the payment id and txid from a JSON object
// ({"paymentId": "...", "txid": "..."}) or a urlencoded form with the same
// field names. The Content-Type must say which: an app's body parser (such
// as Express's express.json()) ignores a body without one, so the guard must
// not read one either.
//
// A field the guard reads must appear once, spelled exactly: a repeated
// field, or another spelling of it (other letter case, which Go's
// encoding/json and many frameworks match; JSON escapes are decoded before
// comparing), is refused, so the guard and the app can never read two
// different ids out of one body.
func parseCallback(contentType string, body []byte) (callback, error) {
	if len(body) == 0 {
		return callback{}, errors.New("the request has no body: post {\"paymentId\": ...} as JSON")
	}
	if contentType == "" {
		return callback{}, fmt.Errorf("%w: the request has no Content-Type (send Content-Type: application/json)", errUnsupportedMedia)
	}
	mt, params, err := mediaType(contentType)
	if err != nil {
		return callback{}, fmt.Errorf("%w: %q", errUnsupportedMedia, contentType)
	}
	// The guard reads UTF-8. An app's parser honours the charset (Express's
	// body-parser decodes UTF-7, where "payment+AEk-d" is "paymentId"), so
	// any other charset could make the two read different fields.
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return callback{}, fmt.Errorf("%w: charset %q (send UTF-8)", errUnsupportedMedia, cs)
	}
	switch mt {
	case "application/json":
		return parseJSONCallback(body)
	case "application/x-www-form-urlencoded":
		return parseFormCallback(body)
	}
	return callback{}, fmt.Errorf("%w: %q (send application/json or application/x-www-form-urlencoded)", errUnsupportedMedia, mt)
}

// mediaType is mime.ParseMediaType, without its work (and its map) for the
// two Content-Types frontends send most, exactly as mime.ParseMediaType
// would read them: already in lower case, without parameters.
func mediaType(contentType string) (string, map[string]string, error) {
	switch contentType {
	case "application/json", "application/x-www-form-urlencoded":
		return contentType, nil, nil
	}
	return mime.ParseMediaType(contentType)
}

// callbackFields are the body fields the guard reads at the top level, and
// paymentFields those it reads inside "payment".
var (
	callbackFields = []string{"paymentId", "txid", "payment"}
	paymentFields  = []string{"identifier", "transaction"}
	txFields       = []string{"txid", "_link"}
)

// fieldSet tracks the fields of one JSON object or form that the guard
// reads, refusing repeats and other spellings.
type fieldSet struct {
	known []string
	seen  uint8 // bit i: known[i] was read
}

// check returns the field key names (or "" for a field the guard ignores),
// or an error when key is a repeat or another spelling of a read field.
func (f *fieldSet) check(key string) (string, error) {
	for i, name := range f.known {
		if !strings.EqualFold(key, name) {
			continue
		}
		if key != name {
			return "", fmt.Errorf("field %q is another spelling of %q: send %q once, spelled exactly", key, name, name)
		}
		if f.seen&(1<<i) != 0 {
			return "", fmt.Errorf("field %q appears twice", name)
		}
		f.seen |= 1 << i
		return name, nil
	}
	return "", nil
}

func parseJSONCallback(body []byte) (callback, error) {
	if cb, ok, err := parseFlatJSONCallback(body); ok {
		return cb, err
	}
	return parseFullJSONCallback(body)
}

// parseFullJSONCallback reads any JSON body (see parseCallback).
func parseFullJSONCallback(body []byte) (callback, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var cb callback
	fields := fieldSet{known: callbackFields}
	err := readObject(dec, "the body must be a JSON object such as {\"paymentId\": \"...\"}", func(key string) error {
		name, err := fields.check(key)
		switch {
		case err != nil:
			return err
		case name == "payment":
			var err error
			cb.PaymentIdentifier, cb.PostedTxID, cb.PostedLink, err = readPosted(dec)
			return err
		case name == "paymentId":
			return decodeString(dec, name, &cb.PaymentID)
		case name == "txid":
			return decodeString(dec, name, &cb.TxID)
		}
		return skipValue(dec)
	})
	if err != nil {
		return callback{}, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return callback{}, errors.New("malformed JSON: data after the object")
	}
	return cb, nil
}

// parseFlatJSONCallback reads the body most frontends post, without
// encoding/json's tokenizer (a dozen allocations per field): one JSON object
// whose keys and values are all strings of printable ASCII without escapes,
// such as {"paymentId": "...", "txid": "..."}. ok is false for any other
// body, which parseJSONCallback reads in full: then nothing here was
// decided. For the bodies it reads it decides exactly as the full reader,
// member by member, with the same checks of each key (fieldSet.check) and
// the same errors.
func parseFlatJSONCallback(body []byte) (cb callback, ok bool, err error) {
	s := string(body) // keys are compared in it; values kept are copied out
	i := skipJSONSpace(s, 0)
	if i >= len(s) || s[i] != '{' {
		return callback{}, false, nil
	}
	i = skipJSONSpace(s, i+1)
	fields := fieldSet{known: callbackFields}
	if i < len(s) && s[i] == '}' {
		i++
	} else {
		for {
			key, next, flat := flatJSONString(s, i)
			if !flat {
				return callback{}, false, nil
			}
			name, err := fields.check(key)
			if err != nil {
				return callback{}, true, err
			}
			if name == "payment" {
				return callback{}, false, nil // an object, or refused: the full reader says which
			}
			i = skipJSONSpace(s, next)
			if i >= len(s) || s[i] != ':' {
				return callback{}, false, nil
			}
			value, next, flat := flatJSONString(s, skipJSONSpace(s, i+1))
			if !flat {
				return callback{}, false, nil
			}
			switch name {
			case "paymentId":
				cb.PaymentID = strings.Clone(value) // not the whole body: ids are kept
			case "txid":
				cb.TxID = strings.Clone(value)
			}
			i = skipJSONSpace(s, next)
			if i < len(s) && s[i] == ',' {
				i = skipJSONSpace(s, i+1)
				continue
			}
			if i < len(s) && s[i] == '}' {
				i++
				break
			}
			return callback{}, false, nil
		}
	}
	if skipJSONSpace(s, i) != len(s) {
		return callback{}, false, nil
	}
	return cb, true, nil
}

// skipJSONSpace returns the index of the first byte of s at or after i that
// is not JSON white space.
func skipJSONSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// flatJSONString reads the JSON string at s[i:] when it holds printable
// ASCII only, without escapes: its content, and the index after it. flat
// is false for anything else.
func flatJSONString(s string, i int) (value string, next int, flat bool) {
	if i >= len(s) || s[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < len(s); j++ {
		switch c := s[j]; {
		case c == '"':
			return s[i+1 : j], j + 1, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return "", 0, false
		}
	}
	return "", 0, false
}

// readPosted reads the identifier of the posted payment object ({"payment":
// {...}}) and the txid and link of its transaction, if any; the rest of it
// is untrusted and skipped.
func readPosted(dec *json.Decoder) (id, txid, link string, err error) {
	const want = `field "payment" must be the payment object the SDK gave, with its "identifier"`
	var found bool
	fields := fieldSet{known: paymentFields}
	err = readObject(dec, want, func(key string) error {
		name, err := fields.check(key)
		switch {
		case err != nil:
			return fmt.Errorf("payment: %w", err)
		case name == "identifier":
			found = true
			return decodeString(dec, "payment.identifier", &id)
		case name == "transaction":
			txid, link, err = readPostedTx(dec)
			return err
		}
		return skipValue(dec)
	})
	if err == nil && !found {
		err = errors.New(want)
	}
	return id, txid, link, err
}

// readPostedTx reads payment.transaction: null, or an object whose txid
// and _link (if any) are returned.
func readPostedTx(dec *json.Decoder) (txid, link string, err error) {
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return "", "", fmt.Errorf("malformed JSON: %w", err)
	}
	if string(bytes.TrimSpace(raw)) == "null" {
		return "", "", nil
	}
	fields := fieldSet{known: txFields}
	inner := json.NewDecoder(bytes.NewReader(raw))
	err = readObject(inner, `field "payment.transaction" must be null or an object`, func(key string) error {
		name, err := fields.check(key)
		switch {
		case err != nil:
			return fmt.Errorf("payment.transaction: %w", err)
		case name == "txid":
			return decodeString(inner, "payment.transaction.txid", &txid)
		case name == "_link":
			return decodeString(inner, "payment.transaction._link", &link)
		}
		return skipValue(inner)
	})
	return txid, link, err
}

// readObject reads one JSON object from dec, calling member for each key
// with the decoder positioned at its value; member must consume the value.
func readObject(dec *json.Decoder, notObject string, member func(key string) error) error {
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("malformed JSON: %w", err)
		}
		return errors.New(notObject)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("malformed JSON: %w", err)
		}
		key, ok := tok.(string)
		if !ok {
			return errors.New("malformed JSON: object key is not a string")
		}
		if err := member(key); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("malformed JSON: %w", err)
	}
	return nil
}

// decodeString decodes the next value, which must be a JSON string.
func decodeString(dec *json.Decoder, name string, dst *string) error {
	var s *string
	if err := dec.Decode(&s); err != nil || s == nil {
		return fmt.Errorf("field %q must be a string", name)
	}
	*dst = *s
	return nil
}

func skipValue(dec *json.Decoder) error {
	var skip json.RawMessage
	if err := dec.Decode(&skip); err != nil {
		return fmt.Errorf("malformed JSON: %w", err)
	}
	return nil
}

func parseFormCallback(body []byte) (callback, error) {
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return callback{}, fmt.Errorf("malformed form: %w", err)
	}
	var cb callback
	fields := fieldSet{known: callbackFields}
	for key, v := range vals {
		// Frameworks with nested form parsing (Express's extended parser,
		// Rails, PHP) read "paymentId[]" or "payment[identifier]" as the
		// field before the bracket: compare that part, and refuse the rest.
		base, _, nested := strings.Cut(key, "[")
		if b, _, dotted := strings.Cut(base, "."); dotted {
			base, nested = b, true
		}
		name, err := fields.check(base)
		if err == nil && name != "" && (nested || name == "payment") {
			err = fmt.Errorf("field %q: send %q as a plain form field", key, name)
		}
		if err != nil {
			return callback{}, err
		}
		if name == "" {
			continue
		}
		if len(v) > 1 {
			return callback{}, fmt.Errorf("field %q appears twice", key)
		}
		if name == "paymentId" {
			cb.PaymentID = v[0]
		} else {
			cb.TxID = v[0]
		}
	}
	return cb, nil
}
