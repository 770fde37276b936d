package pitest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// controlPayment is the body of POST /control/payments.
type controlPayment struct {
	Amount    piclient.Amount `json:"amount"`
	Memo      string          `json:"memo"`
	Metadata  json.RawMessage `json:"metadata"`
	UserUID   string          `json:"user_uid"`
	Network   string          `json:"network"`
	Direction string          `json:"direction"`
	APIKey    string          `json:"api_key"`
}

// controlTx is the optional body of POST /control/payments/{id}/submit.
type controlTx struct {
	Amount     piclient.Amount `json:"amount"`
	Memo       string          `json:"memo"`
	To         string          `json:"to"`
	Failed     bool            `json:"failed"`
	Unverified bool            `json:"unverified"`
	// VerificationError is Tx.VerificationError.
	VerificationError string `json:"verification_error"`
}

// controlFault is the body of POST /control/faults.
type controlFault struct {
	Endpoint     Endpoint `json:"endpoint"`
	Status       int      `json:"status"`
	HTML         bool     `json:"html"`
	RetryAfterMS int64    `json:"retry_after_ms"`
	DelayMS      int64    `json:"delay_ms"`
	Drop         bool     `json:"drop"`
	Malformed    bool     `json:"malformed"`
	Truncated    bool     `json:"truncated"`
	DropResponse bool     `json:"drop_response"`
	Times        int      `json:"times"`
	Fraction     float64  `json:"fraction"`
}

// controlUser is the body of POST /control/users.
type controlUser struct {
	UID         string `json:"uid"`
	AccessToken string `json:"access_token"`
	Username    string `json:"username"`
}

// controlLatency is the body of POST /control/latency.
type controlLatency struct {
	LatencyMS int64 `json:"latency_ms"`
}

// serveControl serves the control API under /control. It needs no
// authentication and allows any origin.
func (s *Server) serveControl(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Content-Type")
	h.Set("Access-Control-Max-Age", "600")
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
	if err != nil {
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, "/control/")
	parts := strings.Split(rest, "/")
	switch {
	case rest == "info":
		s.controlMethods(w, r, map[string]func(){http.MethodGet: func() { s.controlInfo(w) }})
	case rest == "payments":
		s.controlMethods(w, r, map[string]func(){
			http.MethodGet:  func() { s.controlList(w, r.URL.Query().Get("user_uid")) },
			http.MethodPost: func() { s.controlCreate(w, body) },
		})
	case len(parts) == 2 && parts[0] == "payments" && parts[1] != "":
		s.controlMethods(w, r, map[string]func(){http.MethodGet: func() { s.controlGet(w, parts[1]) }})
	case len(parts) == 3 && parts[0] == "payments" && parts[1] != "" && parts[2] == "submit":
		s.controlMethods(w, r, map[string]func(){http.MethodPost: func() { s.controlSubmit(w, parts[1], body) }})
	case len(parts) == 3 && parts[0] == "payments" && parts[1] != "" && parts[2] == "user_cancel":
		s.controlMethods(w, r, map[string]func(){http.MethodPost: func() { s.controlUserCancel(w, parts[1]) }})
	case rest == "faults":
		s.controlMethods(w, r, map[string]func(){
			http.MethodPost:   func() { s.controlFault(w, body) },
			http.MethodDelete: func() { s.ClearFaults(); w.WriteHeader(http.StatusNoContent) },
		})
	case rest == "calls":
		s.controlMethods(w, r, map[string]func(){
			http.MethodGet:    func() { s.controlCalls(w) },
			http.MethodDelete: func() { s.ResetCalls(); w.WriteHeader(http.StatusNoContent) },
		})
	case rest == "users":
		s.controlMethods(w, r, map[string]func(){http.MethodPost: func() { s.controlAddUser(w, body) }})
	case rest == "latency":
		s.controlMethods(w, r, map[string]func(){http.MethodPost: func() { s.controlLatency(w, body) }})
	default:
		writeError(w, http.StatusNotFound, "not_found", "no such control endpoint: "+r.URL.Path)
	}
}

// controlMethods calls the handler for r's method, or answers 405.
func (s *Server) controlMethods(w http.ResponseWriter, r *http.Request, handlers map[string]func()) {
	if h, ok := handlers[r.Method]; ok {
		h()
		return
	}
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
		if handlers[m] != nil {
			allow = append(allow, m)
		}
	}
	methodNotAllowed(w, strings.Join(allow, ", "))
}

func (s *Server) controlInfo(w http.ResponseWriter) {
	writeControlJSON(w, http.StatusOK, map[string]string{
		"api_url": s.URL, "horizon_url": s.HorizonURL, "control_url": s.ControlURL,
		"wallet": s.Wallet, "network": s.Network,
	})
}

// controlList lists every payment, or only the user's when uid is set.
func (s *Server) controlList(w http.ResponseWriter, uid string) {
	s.mu.Lock()
	out := s.listLocked(func(p *payment) bool { return uid == "" || p.dto.UserUID == uid })
	s.mu.Unlock()
	writeControlJSON(w, http.StatusOK, map[string]any{"payments": out})
}

func (s *Server) controlCreate(w http.ResponseWriter, body []byte) {
	var req controlPayment
	if !decodeControl(w, body, &req, false) {
		return
	}
	p, err := s.createPayment(NewPayment{
		Amount: string(req.Amount), Memo: req.Memo, Metadata: req.Metadata, UserUID: req.UserUID,
		Network: req.Network, Direction: req.Direction, APIKey: req.APIKey,
	})
	if err != nil {
		writeControlError(w, err)
		return
	}
	writeControlJSON(w, http.StatusCreated, p)
}

func (s *Server) controlGet(w http.ResponseWriter, id string) {
	p, ok := s.Payment(id)
	if !ok {
		writeControlError(w, ErrPaymentNotFound)
		return
	}
	writeControlJSON(w, http.StatusOK, p)
}

func (s *Server) controlSubmit(w http.ResponseWriter, id string, body []byte) {
	var req controlTx
	if !decodeControl(w, body, &req, true) {
		return
	}
	tx := Tx{Amount: string(req.Amount), Memo: req.Memo, To: req.To, Failed: req.Failed, Unverified: req.Unverified, VerificationError: req.VerificationError}
	if _, err := s.SubmitTransactionWith(id, tx); err != nil {
		writeControlError(w, err)
		return
	}
	s.controlGet(w, id)
}

func (s *Server) controlUserCancel(w http.ResponseWriter, id string) {
	if err := s.UserCancel(id); err != nil {
		writeControlError(w, err)
		return
	}
	s.controlGet(w, id)
}

func (s *Server) controlFault(w http.ResponseWriter, body []byte) {
	var req controlFault
	if !decodeControl(w, body, &req, false) {
		return
	}
	f := Fault{
		Status: req.Status, HTML: req.HTML, RetryAfter: time.Duration(req.RetryAfterMS) * time.Millisecond,
		Delay: time.Duration(req.DelayMS) * time.Millisecond, Drop: req.Drop, Malformed: req.Malformed,
		Truncated: req.Truncated, DropResponse: req.DropResponse, Times: req.Times, Fraction: req.Fraction,
	}
	if err := s.injectFault(req.Endpoint, f); err != nil {
		writeControlError(w, err)
		return
	}
	writeControlJSON(w, http.StatusCreated, req)
}

func (s *Server) controlCalls(w http.ResponseWriter) {
	out := make(map[Endpoint]int, len(Endpoints))
	for _, ep := range Endpoints {
		out[ep] = s.Calls(ep)
	}
	writeControlJSON(w, http.StatusOK, out)
}

func (s *Server) controlAddUser(w http.ResponseWriter, body []byte) {
	var req controlUser
	if !decodeControl(w, body, &req, false) {
		return
	}
	if req.UID == "" || req.AccessToken == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "uid and access_token are required")
		return
	}
	s.AddUser(req.UID, req.AccessToken, req.Username)
	writeControlJSON(w, http.StatusCreated, req)
}

func (s *Server) controlLatency(w http.ResponseWriter, body []byte) {
	var req controlLatency
	if !decodeControl(w, body, &req, false) {
		return
	}
	if req.LatencyMS < 0 {
		writeError(w, http.StatusBadRequest, "invalid_request", "latency_ms must not be negative")
		return
	}
	s.SetLatency(time.Duration(req.LatencyMS) * time.Millisecond)
	writeControlJSON(w, http.StatusOK, req)
}

// decodeControl decodes a JSON body strictly (unknown fields are refused),
// answering 400 on failure. An empty body is accepted when optional.
func decodeControl(w http.ResponseWriter, body []byte, v any, optional bool) bool {
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return true
		}
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("bad JSON body: %v", err))
		return false
	}
	return true
}

// writeControlError maps the errors of the user-side methods to answers.
func writeControlError(w http.ResponseWriter, err error) {
	status, code := http.StatusInternalServerError, "internal_error"
	switch {
	case errors.Is(err, ErrPaymentNotFound):
		status, code = http.StatusNotFound, "payment_not_found"
	case errors.Is(err, ErrNotApproved):
		status, code = http.StatusConflict, "not_approved"
	case errors.Is(err, ErrCancelled):
		status, code = http.StatusConflict, "payment_cancelled"
	case errors.Is(err, ErrAlreadySubmitted):
		status, code = http.StatusConflict, "already_submitted"
	case errors.Is(err, ErrCompleted):
		status, code = http.StatusConflict, "already_completed"
	case errors.Is(err, ErrInvalid):
		status, code = http.StatusBadRequest, "invalid_request"
	}
	writeError(w, status, code, err.Error())
}

// writeControlJSON answers a control API call with v as JSON and a final
// newline, so that answers printed one after another in a shell (curl) stay
// on lines of their own.
func writeControlJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal_error", err.Error())
		return
	}
	writeBody(w, status, "application/json; charset=utf-8", append(body, '\n'))
}
