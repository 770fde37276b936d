package verify

import (
	"context"
	"encoding/json"
	"net/http"
)

type contextKey struct{}

// Middleware calls next only for requests whose Pi-Payment-Verified header
// verifies with v, with the claims in the request context (see FromContext).
// Any other request gets 401 with the JSON body
//
//	{"error":"payment_not_verified","message":"<what failed>"}
//
// and next is not called. The body is restored, so next can read it.
func Middleware(v *Verifier, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := v.Verify(r)
		if err != nil {
			writeUnverified(w, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), c)))
	})
}

// NewContext returns ctx carrying c, as Middleware does.
func NewContext(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, contextKey{}, c)
}

// FromContext returns the claims Middleware verified for this request.
func FromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(contextKey{}).(*Claims)
	return c, ok && c != nil
}

func writeUnverified(w http.ResponseWriter, err error) {
	body, _ := json.Marshal(struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{"payment_not_verified", err.Error()})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write(append(body, '\n'))
}
