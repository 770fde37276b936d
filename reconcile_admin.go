package piguard

import (
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

func init() {
	caddy.RegisterModule(watchAdminAPI{})
}

// watchAdminAPI serves GET /pi_guard/watched on Caddy's admin endpoint: the
// approved payments the reconciler watches because they are not completed
// or settled yet, read-only.
type watchAdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (watchAdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.pi_guard_watched",
		New: func() caddy.Module { return new(watchAdminAPI) },
	}
}

// Routes returns the admin routes.
func (watchAdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/pi_guard/watched", Handler: caddy.AdminHandlerFunc(serveWatched)}}
}

// watchedPayment is one row of the admin listing.
type watchedPayment struct {
	PaymentID string    `json:"payment_id"`
	Amount    string    `json:"amount,omitempty"`
	UserUID   string    `json:"user_uid,omitempty"`
	Approved  time.Time `json:"approved"`
	NextCheck time.Time `json:"next_check"`
	Checks    int       `json:"checks"`
	LastSeen  string    `json:"last_seen,omitempty"`
	LastError string    `json:"last_error,omitempty"`
}

func serveWatched(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Message: "GET only"}
	}
	seen := map[string]bool{}
	out := []watchedPayment{}
	var firstErr error
	live.Range(func(k, _ any) bool {
		h := k.(*Handler)
		if seen[h.store.Prefix()] {
			return true
		}
		seen[h.store.Prefix()] = true
		ids, err := h.store.Watched(r.Context())
		if err != nil && firstErr == nil {
			firstErr = err
		}
		for _, id := range ids {
			e, err := h.store.LoadWatch(r.Context(), id)
			if err != nil || e == nil {
				continue
			}
			out = append(out, watchedPayment{PaymentID: id, Amount: verify.AmountText(e.Amount), UserUID: e.UserUID, Approved: e.Approved,
				NextCheck: e.NextCheck, Checks: e.Checks, LastSeen: e.LastSeen, LastError: e.LastError})
		}
		return true
	})
	if firstErr != nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: firstErr, Message: "reading the watch list"}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Approved.Before(out[j].Approved) })
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}

var _ caddy.AdminRouter = watchAdminAPI{}
