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
// field names. Repeated fields are refused, so the guard and the app can never
// read two different ids out of one body.
func parseCallback(contentType string, body []byte) (callback, error) {
	mt := ""
	if contentType != "" {
		var err error
		if mt, _, err = mime.ParseMediaType(contentType); err != nil {
			return callback{}, fmt.Errorf("%w: %q", errUnsupportedMedia, contentType)
		}
	}
	trimmed := bytes.TrimSpace(body)
	switch {
	case mt == "application/json" || (mt == "" && len(trimmed) > 0 && trimmed[0] == '{'):
		return parseJSONCallback(body)
	case mt == "application/x-www-form-urlencoded":
		return parseFormCallback(body)
	case mt == "" && len(body) == 0:
		return callback{}, errors.New("the request has no body: post {\"paymentId\": ...} as JSON")
	default:
		return callback{}, fmt.Errorf("%w: %q (send application/json or application/x-www-form-urlencoded)", errUnsupportedMedia, mt)
	}
}

func parseJSONCallback(body []byte) (callback, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return callback{}, errors.New("the body must be a JSON object such as {\"paymentId\": \"...\"}")
	}
	var cb callback
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return callback{}, fmt.Errorf("malformed JSON: %w", err)
		}
		key, _ := tok.(string)
		var dst *string
		switch key {
		case "paymentId":
			dst = &cb.PaymentID
		case "txid":
			dst = &cb.TxID
		case "payment":
			if seen[key] {
				return callback{}, fmt.Errorf("field %q appears twice", key)
			}
			seen[key] = true
			var posted struct {
				Identifier *string `json:"identifier"`
			}
			if err := dec.Decode(&posted); err != nil || posted.Identifier == nil {
				return callback{}, errors.New(`field "payment" must be the payment object the SDK gave, with its "identifier"`)
			}
			cb.PaymentIdentifier = *posted.Identifier
			continue
		}
		if dst == nil {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return callback{}, fmt.Errorf("malformed JSON: %w", err)
			}
			continue
		}
		if seen[key] {
			return callback{}, fmt.Errorf("field %q appears twice", key)
		}
		seen[key] = true
		if err := dec.Decode(dst); err != nil {
			return callback{}, fmt.Errorf("field %q must be a string", key)
		}
	}
	if _, err := dec.Token(); err != nil {
		return callback{}, fmt.Errorf("malformed JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return callback{}, errors.New("malformed JSON: data after the object")
	}
	return cb, nil
}

func parseFormCallback(body []byte) (callback, error) {
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return callback{}, fmt.Errorf("malformed form: %w", err)
	}
	var cb callback
	for key, dst := range map[string]*string{"paymentId": &cb.PaymentID, "txid": &cb.TxID} {
		switch v := vals[key]; len(v) {
		case 0:
		case 1:
			*dst = v[0]
		default:
			return callback{}, fmt.Errorf("field %q appears twice", key)
		}
	}
	return cb, nil
}
