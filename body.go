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
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		setBody(r, nil)
		return nil, nil
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	r.Body.Close()
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
		r.Header.Set("Content-Length", strconv.Itoa(len(data)))
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
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return callback{}, fmt.Errorf("%w: %q", errUnsupportedMedia, contentType)
	}
	switch mt {
	case "application/json":
		return parseJSONCallback(body)
	case "application/x-www-form-urlencoded":
		return parseFormCallback(body)
	}
	return callback{}, fmt.Errorf("%w: %q (send application/json or application/x-www-form-urlencoded)", errUnsupportedMedia, mt)
}

// callbackFields are the body fields the guard reads at the top level, and
// paymentFields those it reads inside "payment".
var (
	callbackFields = []string{"paymentId", "txid", "payment"}
	paymentFields  = []string{"identifier"}
)

// fieldSet tracks the fields of one JSON object or form that the guard
// reads, refusing repeats and other spellings.
type fieldSet struct {
	known []string
	seen  map[string]bool
}

// check returns the field key names (or "" for a field the guard ignores),
// or an error when key is a repeat or another spelling of a read field.
func (f *fieldSet) check(key string) (string, error) {
	for _, name := range f.known {
		if !strings.EqualFold(key, name) {
			continue
		}
		if key != name {
			return "", fmt.Errorf("field %q is another spelling of %q: send %q once, spelled exactly", key, name, name)
		}
		if f.seen[name] {
			return "", fmt.Errorf("field %q appears twice", name)
		}
		if f.seen == nil {
			f.seen = map[string]bool{}
		}
		f.seen[name] = true
		return name, nil
	}
	return "", nil
}

func parseJSONCallback(body []byte) (callback, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var cb callback
	fields := fieldSet{known: callbackFields}
	err := readObject(dec, "the body must be a JSON object such as {\"paymentId\": \"...\"}", func(key string) error {
		name, err := fields.check(key)
		switch {
		case err != nil:
			return err
		case name == "payment":
			id, err := readPosted(dec)
			cb.PaymentIdentifier = id
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

// readPosted reads the identifier of the posted payment object ({"payment":
// {...}}); the rest of it is untrusted and skipped.
func readPosted(dec *json.Decoder) (string, error) {
	const want = `field "payment" must be the payment object the SDK gave, with its "identifier"`
	var id *string
	fields := fieldSet{known: paymentFields}
	err := readObject(dec, want, func(key string) error {
		name, err := fields.check(key)
		switch {
		case err != nil:
			return fmt.Errorf("payment: %w", err)
		case name == "identifier":
			var s string
			if err := decodeString(dec, "payment.identifier", &s); err != nil {
				return err
			}
			id = &s
			return nil
		}
		return skipValue(dec)
	})
	if err != nil {
		return "", err
	}
	if id == nil {
		return "", errors.New(want)
	}
	return *id, nil
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
	fields := fieldSet{known: callbackFields[:2]} // a form has no "payment" object
	for key, v := range vals {
		name, err := fields.check(key)
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

// queryNamesField returns the first query parameter that names a field the
// guard reads from the body (in any spelling): an app that merges the query
// into its request parameters could read a different id from it.
func queryNamesField(rawQuery string) string {
	if rawQuery == "" {
		return ""
	}
	vals, _ := url.ParseQuery(rawQuery)
	for key := range vals {
		for _, name := range callbackFields {
			if strings.EqualFold(key, name) {
				return key
			}
		}
	}
	return ""
}
