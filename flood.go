package piguard

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// Defaults for the bounds on Pi lookups of payment ids and access tokens the
// guard has not seen before (see Handler.LookupRate).
const (
	DefaultLookupRate          = 50.0
	DefaultLookupRatePerClient = 5.0
	// lookupBurst is how many seconds' worth of lookups may come at once.
	lookupBurst = 4
	// viewTTL is how long one read of a payment from Pi answers every
	// request that needs only to read it: a flood of requests for one
	// payment costs one Pi call per viewTTL, and never waits on the
	// payment's lock.
	viewTTL      = 500 * time.Millisecond
	maxViews     = 10000
	maxSeen      = 100000
	maxClients   = 10000
	seenLifetime = time.Hour
)

// lookups bounds the Pi calls that ids and tokens the guard has not seen
// cause: a stranger's random ids or tokens would otherwise use up the app's
// Pi quota. It limits each client (an IPv4 address, or an IPv6 /64) and,
// together, the clients whose lookups Pi answered "not found" lately: those
// that send made-up ids or tokens. A payer's new payment is found, so
// clients that never sent a made-up id are bounded only by their own limit,
// and no flood of many addresses can lock them out.
type lookups struct {
	total     *rate.Limiter
	perClient rate.Limit
	clients   *boundedMap[string, *rate.Limiter]
	seen      *boundedMap[string, time.Time]     // payment ids Pi confirmed, tokens Pi answered for
	missing   *boundedMap[string, time.Time]     // clients and networks → when Pi last answered one of their lookups "not found"
	nets      *boundedMap[string, *rate.Limiter] // networks (IPv4 /24, IPv6 /48) → their bound: many addresses of one holder
	calls     *boundedMap[string, *rate.Limiter] // clients → their bound on Pi calls of any kind
}

// callsPerLookup: any one client may cause this many Pi calls, of any kind
// and for any payment, per lookup of an unseen id it is allowed (a payment
// costs three or four calls).
const callsPerLookup = 4

// callBy allows one Pi call of any kind caused by client (as clientOf names
// it), or returns the 429 answer: a client that repeats requests for a
// payment the guard knows (its own, with made-up txids, say) cannot use up
// the app's Pi quota either.
func (l *lookups) callBy(client string) *guardError {
	lim, _ := l.limiter(l.calls, client, l.perClient*callsPerLookup)
	if !lim.Allow() {
		return tooMany("this client caused too many Pi API calls; retry later", lim.Limit())
	}
	return nil
}

// missLifetime is how long a client that sent an id or token Pi did not
// know stays under the shared bound.
const missLifetime = 10 * time.Minute

func newLookups(total, perClient float64) *lookups {
	return &lookups{
		total:     rate.NewLimiter(rate.Limit(total), int(total*lookupBurst)),
		perClient: rate.Limit(perClient),
		clients:   newBoundedMap[string, *rate.Limiter](maxClients),
		seen:      newBoundedMap[string, time.Time](maxSeen),
		missing:   newBoundedMap[string, time.Time](maxClients),
		calls:     newBoundedMap[string, *rate.Limiter](maxClients),
		nets:      newBoundedMap[string, *rate.Limiter](maxClients),
	}
}

// missed remembers that Pi did not know an id or token r's client sent.
func (l *lookups) missed(r *http.Request) { l.missedBy(clientAndNetwork(r)) }

// missedBy is missed for the client and network clientAndNetwork names.
func (l *lookups) missedBy(client, network string) {
	l.missing.put(client, time.Now())
	l.missing.put(network, time.Now())
}

// missedLately reports whether key's lookups met "not found" lately.
func (l *lookups) missedLately(key string) bool {
	at, ok := l.missing.get(key)
	return ok && time.Since(at) < missLifetime
}

// limiter returns key's limiter in m, made with rate per (and four
// seconds' burst) if new; fresh reports a key m did not hold while m is
// full, whose history an attacker may have flushed out.
func (l *lookups) limiter(m *boundedMap[string, *rate.Limiter], key string, per rate.Limit) (lim *rate.Limiter, flushed bool) {
	lim, ok := m.get(key)
	if !ok {
		flushed = m.len() >= maxClients
		lim = rate.NewLimiter(per, int(float64(per)*lookupBurst)+1)
		m.put(key, lim)
	}
	return lim, flushed
}

// known reports whether the guard has seen key (a payment id, or a token's
// digest) answered by Pi recently.
func (l *lookups) known(key string) bool {
	at, ok := l.seen.get(key)
	return ok && time.Since(at) < seenLifetime
}

// learn remembers that Pi answered for key.
func (l *lookups) learn(key string) { l.seen.put(key, time.Now()) }

// admit allows one Pi lookup of something not seen before for r's client,
// or returns the 429 answer.
func (l *lookups) admit(r *http.Request) *guardError { return l.admitBy(clientAndNetwork(r)) }

// admitBy is admit for the client and network clientAndNetwork names.
func (l *lookups) admitBy(client, network string) *guardError {
	lim, flushed := l.limiter(l.clients, client, l.perClient)
	if !lim.Allow() {
		return tooMany("this client sent too many payment ids or tokens the guard had not seen; retry later", lim.Limit())
	}
	netLim, netFlushed := l.limiter(l.nets, network, l.perClient*callsPerLookup)
	if !netLim.Allow() {
		return tooMany("this client's network sent too many payment ids or tokens the guard had not seen; retry later", netLim.Limit())
	}
	// Clients that sent made-up ids lately (or whose network did, or that
	// a flood of new addresses pushed out of memory) share one bound.
	suspect := flushed || netFlushed || l.missedLately(client) || l.missedLately(network)
	if suspect && !l.total.Allow() {
		return tooMany("the guard is looking up too many new payment ids or tokens at Pi; retry later", l.total.Limit())
	}
	return nil
}

func tooMany(msg string, per rate.Limit) *guardError {
	ge := refuse(http.StatusTooManyRequests, "rate_limited", "%s", msg)
	ge.Retryable = true
	ge.retryAfter = max(1, int(1/float64(per)+0.999))
	return ge
}

// clientAndNetwork is clientOf and the network around it: the IPv4 /24 or
// the IPv6 /48 (what one holder usually has whole).
func clientAndNetwork(r *http.Request) (client, network string) {
	client = clientOf(r)
	return client, networkOf(client)
}

// networkOf is the network around client (see clientAndNetwork).
func networkOf(client string) string {
	if strings.Contains(client, "/") { // else ParsePrefix fails, allocating its error
		if p, err := netip.ParsePrefix(client); err == nil {
			wide, _ := p.Addr().Prefix(48)
			return wide.String()
		}
	}
	if a, err := netip.ParseAddr(client); err == nil {
		wide, _ := a.Prefix(24)
		return wide.String()
	}
	return client
}

// clientOf is the client's IP address as Caddy determined it (honouring
// trusted_proxies), or the connection's; for IPv6 its /64, which one host
// usually has whole.
func clientOf(r *http.Request) string {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if ip == "" {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		ip = host
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	addr = addr.Unmap()
	if addr.Is6() {
		prefix, _ := addr.Prefix(64)
		return prefix.String()
	}
	return addr.String()
}

// admitLookup lets st's request make its first Pi call about its payment:
// at once for an id the guard has seen, within the lookup limits otherwise.
func (h *Handler) admitLookup(st *step) *guardError {
	if h.lookups == nil || h.lookups.known(st.id) || h.approvals.approverOf(st.id) != nil {
		return nil
	}
	return h.lookups.admitBy(st.clientAndNetwork())
}

// view is one read of a payment from Pi, shared by every request that
// needs only to read it within viewTTL.
type view struct {
	p   *piclient.Payment
	err error
	at  time.Time
}

// views merges concurrent reads of one payment into one Pi call
// (singleflight) and keeps the answer for viewTTL.
type views struct {
	group singleflight.Group
	cache *boundedMap[string, view]
}

func newViews() *views {
	return &views{cache: newBoundedMap[string, view](maxViews)}
}

// peek reads the payment for the first decision of an approve, cancel or
// incomplete request. Its payer (or anyone, while the guard knows no
// approver) reads it fresh from Pi. Anyone else, a stranger who knows the
// id, is answered from a view younger than viewTTL, or from one Pi call
// shared by every concurrent request: a flood costs one call per viewTTL,
// and a view that is a moment old only ever delays a stranger.
func (h *Handler) peek(ctx context.Context, st *step, r *http.Request) (*piclient.Payment, *guardError) {
	if !h.stranger(ctx, st, r) {
		return h.read(ctx, st)
	}
	if v, ok := h.views.cache.get(st.id); ok && time.Since(v.at) < viewTTL {
		return viewAnswer(v, st)
	}
	// A read that may be this request's own Pi call counts against its
	// client's bound, like any other.
	if ge := st.allowCall(); ge != nil {
		return nil, ge
	}
	ch := h.views.group.DoChan(st.id, func() (any, error) {
		// The caller that starts the read may go away; the others wait
		// for its answer, so it runs on its own context.
		// It counts against max_pi_calls like any call, but in no
		// request's own figures.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Duration(h.Timeout))
		defer cancel()
		release, err := h.piLimit.acquire()
		if err != nil {
			return view{err: err, at: time.Now()}, nil
		}
		p, err := h.pi.GetPayment(rctx, st.id)
		release()
		h.learn(st.id, p, err)
		v := view{p: p, err: err, at: time.Now()}
		if err == nil || piclient.IsNotFound(err) {
			h.views.cache.put(st.id, v)
		}
		return v, nil
	})
	select {
	case res := <-ch:
		return viewAnswer(res.Val.(view), st)
	case <-ctx.Done():
		return nil, piFailure(ctx.Err(), st.id)
	}
}

// stranger reports whether the request is not from the payment's payer,
// as far as the guard knows one: false while it knows no approver.
func (h *Handler) stranger(ctx context.Context, st *step, r *http.Request) bool {
	who := h.stepApprover(ctx, st)
	return who != nil && !carriedBy(who, h.stepCredentials(st, r))
}

func viewAnswer(v view, st *step) (*piclient.Payment, *guardError) {
	if v.err != nil {
		return nil, piFailure(v.err, st.id)
	}
	return v.p, nil
}

// learn remembers what one Pi answer about payment id settles.
func (h *Handler) learn(id string, p *piclient.Payment, err error) {
	h.facts.learn(id, p, err)
	if err == nil && p != nil && p.Identifier == id && h.lookups != nil {
		h.lookups.learn(id)
	}
}
