package pitest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// maxRequestBody bounds how much of a request body is read.
const maxRequestBody = 1 << 20

// apiRoute is a request matched to an API endpoint.
type apiRoute struct {
	ep     Endpoint
	method string // the method the endpoint takes
	id     string // payment id, if any
}

// routeAPI matches a path under /v2 to an endpoint.
func routeAPI(path string) (apiRoute, bool) {
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return apiRoute{}, false
	}
	parts := strings.Split(rest, "/")
	switch {
	case len(parts) == 1 && parts[0] == "me":
		return apiRoute{ep: EndpointMe, method: http.MethodGet}, true
	case len(parts) == 2 && parts[0] == "payments" && parts[1] == "incomplete_server_payments":
		return apiRoute{ep: EndpointIncomplete, method: http.MethodGet}, true
	case len(parts) == 2 && parts[0] == "payments" && parts[1] != "":
		return apiRoute{ep: EndpointGet, method: http.MethodGet, id: parts[1]}, true
	case len(parts) == 3 && parts[0] == "payments" && parts[1] != "":
		switch parts[2] {
		case "approve":
			return apiRoute{ep: EndpointApprove, method: http.MethodPost, id: parts[1]}, true
		case "complete":
			return apiRoute{ep: EndpointComplete, method: http.MethodPost, id: parts[1]}, true
		case "cancel":
			return apiRoute{ep: EndpointCancel, method: http.MethodPost, id: parts[1]}, true
		}
	}
	return apiRoute{}, false
}

// serveAPI serves the Pi Platform API under /v2.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	rt, ok := routeAPI(r.URL.Path)
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.URL.Path)
		return
	}
	if r.Method != rt.method {
		methodNotAllowed(w, rt.method)
		return
	}
	// Reading the body first lets net/http notice a client that goes away
	// during a delay.
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
	if err != nil {
		return
	}
	auth := r.Header.Get("Authorization")
	s.serveCall(w, r, rt.ep, rt.id, func() answer { return s.performAPI(rt, auth, body) })
}

// performAPI carries out an authenticated API call.
func (s *Server) performAPI(rt apiRoute, auth string, body []byte) answer {
	if rt.ep == EndpointMe {
		token, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || token == "" {
			return errorAnswer(reject(http.StatusUnauthorized, "unauthorized", `GET /me needs "Authorization: Bearer <access token>"`))
		}
		u, ok := s.me(token)
		if !ok {
			return errorAnswer(reject(http.StatusUnauthorized, "unauthorized", "the access token is invalid or expired"))
		}
		return okAnswer(u)
	}
	app, ok := s.authenticate(auth)
	if !ok {
		return errorAnswer(reject(http.StatusUnauthorized, "unauthorized", `a valid "Authorization: Key <server API key>" is required`))
	}
	var (
		p   piclient.Payment
		rej *rejection
	)
	switch rt.ep {
	case EndpointIncomplete:
		ps := s.incomplete(app)
		out := make([]wirePayment, len(ps))
		for i := range ps {
			out[i] = wire(ps[i])
		}
		return okAnswer(struct {
			Payments []wirePayment `json:"incomplete_server_payments"`
		}{out})
	case EndpointGet:
		p, rej = s.get(app, rt.id)
	case EndpointApprove:
		p, rej = s.approve(app, rt.id)
	case EndpointCancel:
		p, rej = s.cancel(app, rt.id)
	case EndpointComplete:
		txid, bad := completeTxID(body)
		p, rej = s.complete(app, rt.id, txid, bad)
	}
	if rej != nil {
		return errorAnswer(rej)
	}
	return okAnswer(wire(p))
}

// completeTxID reads the txid of a /complete body {"txid": "<txid>"}: a body
// that is not a JSON object is refused with missing_param, one without a
// txid string with missing_txid.
func completeTxID(body []byte) (string, *rejection) {
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil || fields == nil {
		return "", reject(http.StatusBadRequest, "missing_param", `the body must be a JSON object {"txid": "<txid>"}`)
	}
	var txid string
	if raw, ok := fields["txid"]; !ok || json.Unmarshal(raw, &txid) != nil || txid == "" {
		return "", reject(http.StatusBadRequest, "missing_txid", "txid is required")
	}
	return txid, nil
}

// authenticate checks "Authorization: Key <key>" and returns the app's key.
func (s *Server) authenticate(auth string) (string, bool) {
	key, ok := strings.CutPrefix(auth, "Key ")
	if !ok || key == "" {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, known := s.apps[key]
	return key, known
}

func okAnswer(v any) answer {
	body, err := json.Marshal(v)
	if err != nil {
		return errorAnswer(reject(http.StatusInternalServerError, "internal_error", err.Error()))
	}
	return jsonAnswer(http.StatusOK, body)
}

func errorAnswer(rej *rejection) answer {
	e := apiError{Error: rej.code, ErrorMessage: rej.message, VerificationError: rej.verificationError}
	if rej.payment != nil {
		p := wire(*rej.payment)
		e.Payment = &p
	}
	body, _ := json.Marshal(e)
	return jsonAnswer(rej.status, body)
}
