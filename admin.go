package piguard

import (
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// live is every provisioned pi_guard handler, for the admin API.
var live sync.Map // *Handler → struct{}

// adminAPI serves GET /pi_guard/deliveries on Caddy's admin endpoint: the
// payments whose delivery to the app is still owed (pending or exhausted),
// read-only.
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.pi_guard",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Routes returns the admin routes.
func (adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/pi_guard/deliveries", Handler: caddy.AdminHandlerFunc(serveDeliveries)}}
}

// owedDelivery is one row of the admin listing.
type owedDelivery struct {
	PaymentID   string    `json:"payment_id"`
	TxID        string    `json:"txid"`
	Amount      string    `json:"amount"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	Path        string    `json:"path,omitempty"`
	Completed   time.Time `json:"completed"`
}

func serveDeliveries(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Message: "GET only"}
	}
	want := r.URL.Query().Get("state") // "", "pending" or "exhausted"
	seen := map[string]bool{}
	out := []owedDelivery{}
	var firstErr error
	live.Range(func(k, _ any) bool {
		h := k.(*Handler)
		if seen[h.store.prefix] {
			return true
		}
		seen[h.store.prefix] = true
		ids, err := h.store.owed(r.Context())
		if err != nil && firstErr == nil {
			firstErr = err
		}
		for _, id := range ids {
			rec, err := h.store.load(r.Context(), id)
			if err != nil || rec == nil || (want != "" && rec.Delivery.State != want) {
				continue
			}
			row := owedDelivery{PaymentID: id, TxID: rec.TxID, State: rec.Delivery.State, Attempts: rec.Delivery.Attempts,
				NextAttempt: rec.Delivery.NextAttempt, LastError: rec.Delivery.LastError, Completed: rec.Updated}
			if rec.Payment != nil {
				row.Amount = rec.Payment.Amount.String()
			}
			if rec.Request != nil {
				row.Path = rec.Request.Path
			}
			out = append(out, row)
		}
		return true
	})
	if firstErr != nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: firstErr, Message: "reading payment records"}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Completed.Before(out[j].Completed) })
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}

var _ caddy.AdminRouter = adminAPI{}
