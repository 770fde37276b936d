package piguard

import (
	"context"
	"crypto/sha256"
	"net/http"
	"strings"
	"time"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// UserBinding makes the guard check the user's Pi access token with GET /me
// and refuse payments of other users. The token comes from the
// Authorization header (Bearer, the default), another header or a cookie.
type UserBinding struct {
	// From is "authorization" (default), "header" or "cookie".
	From string `json:"from,omitempty"`
	// Name is the header or cookie name, for From "header" and "cookie".
	Name string `json:"name,omitempty"`
}

// userCacheTTL is how long a token's user is remembered, and userCacheMax
// how many tokens at most.
const (
	userCacheTTL = time.Minute
	userCacheMax = 10000
)

// users authenticates access tokens with Pi, with a short cache.
type users struct {
	binding UserBinding
	pi      *piclient.Client
	cache   *boundedMap[[32]byte, cachedUser]
}

type cachedUser struct {
	uid     string
	expires time.Time
}

func newUsers(b UserBinding, pi *piclient.Client) *users {
	return &users{binding: b, pi: pi, cache: newBoundedMap[[32]byte, cachedUser](userCacheMax)}
}

// token returns the access token the request carries, or "".
func (u *users) token(r *http.Request) string {
	switch u.binding.From {
	case "header":
		return strings.TrimSpace(r.Header.Get(u.binding.Name))
	case "cookie":
		if c, err := r.Cookie(u.binding.Name); err == nil {
			return c.Value
		}
		return ""
	}
	if auth := r.Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		return strings.TrimSpace(auth[7:])
	}
	return ""
}

// remember caches a token's uid ("" for a token Pi refused); when the cache
// is full, the oldest entry makes room.
func (u *users) remember(key [32]byte, uid string, now time.Time) {
	u.cache.put(key, cachedUser{uid: uid, expires: now.Add(userCacheTTL)})
}

// authenticate returns the uid of the request's access token. A token
// neither cached nor seen before costs a /me call, within the lookup
// limits (see Handler.LookupRate).
func (u *users) authenticate(ctx context.Context, r *http.Request, st *step, limits *lookups) (string, *guardError) {
	tok := u.token(r)
	if tok == "" {
		return "", refuse(http.StatusUnauthorized, "user_token_missing", "send the user's Pi access token (from Pi.authenticate) with the request")
	}
	key := sha256.Sum256([]byte(tok))
	now := time.Now()
	c, ok := u.cache.get(key)
	if ok && now.Before(c.expires) {
		if c.uid == "" {
			return "", refuse(http.StatusUnauthorized, "user_token_invalid", "the Pi access token is invalid or expired; sign in again")
		}
		return c.uid, nil
	}
	seen := "token:" + string(key[:])
	if limits != nil && !limits.known(seen) {
		if ge := limits.admit(r); ge != nil {
			return "", ge
		}
	}
	release, err := st.limit.acquire()
	if err != nil {
		return "", piFailure(err, st.id)
	}
	start := time.Now()
	user, err := u.pi.Me(ctx, tok)
	release()
	st.piTime += time.Since(start)
	st.piCalls++
	if err != nil {
		if piclient.IsUnauthorized(err) || piclient.IsInvalid(err) {
			u.remember(key, "", now) // a flood of bad tokens costs one /me each per minute
			if limits != nil {
				limits.missed(r)
			}
			return "", refuse(http.StatusUnauthorized, "user_token_invalid", "the Pi access token is invalid or expired; sign in again")
		}
		return "", piFailure(err, st.id)
	}
	u.remember(key, user.UID, now)
	if limits != nil {
		limits.learn(seen)
	}
	return user.UID, nil
}
