// Package piguard is the caddy-pi-guard Caddy module: an HTTP handler that
// sits in front of a Pi Network app, makes the Pi Platform API calls for the
// app's payment callbacks itself, and forwards a payment-completion request to
// the app with a signed Pi-Payment-Verified header only when Pi confirmed that
// the payment is complete with the transaction the client named.
//
// See README.md for the Caddyfile reference and docs/header.md for the header
// specification.
package piguard

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient/horizon"
	"github.com/caddy-pi-guard/caddy-pi-guard/verify"
)

func init() {
	caddy.RegisterModule(Handler{})
	httpcaddyfile.RegisterHandlerDirective("pi_guard", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("pi_guard", httpcaddyfile.After, "forward_auth")
}

// Defaults for the Handler's optional fields.
const (
	DefaultApprovePath  = "/payments/approve"
	DefaultCompletePath = "/payments/complete"
	// DefaultIncompletePath and DefaultCancelPath are the reference frontend's
	// routes for onIncompletePaymentFound and onCancel.
	DefaultIncompletePath = "/payments/incomplete"
	DefaultCancelPath     = "/payments/cancelled_payment"
	DefaultMaxBody        = 64 << 10
	// DefaultTimeout bounds the Pi conversation of one guarded request. The
	// Pi wallet gives up on a payment step after about 60 s: 20 s leaves room
	// for one retry by the client and for the app's answer.
	DefaultTimeout = 20 * time.Second
	// DefaultPiCallTimeout bounds each Pi API call (or timeout, if shorter).
	// Pi's own SDKs allow 20 s; half of that lets a lost /approve or
	// /complete be settled by a re-read within the same request.
	DefaultPiCallTimeout = piclient.DefaultTimeout
	// DefaultCancelIncompleteAfter: see Handler.CancelIncompleteAfter.
	DefaultCancelIncompleteAfter = 5 * time.Minute
	MinSigningKeyBytes           = 32
)

// Handler guards a Pi app's payment callback routes. Its JSON fields mirror the
// pi_guard Caddyfile directive one for one.
type Handler struct {
	// APIKey is the app's Pi server API key. Placeholders such as
	// {env.PI_API_KEY} and {file./run/secrets/pi_api_key} are resolved at
	// provisioning. Required.
	APIKey string `json:"api_key,omitempty"`
	// APIURL is the Pi Platform API base URL; default https://api.minepi.com/v2.
	APIURL string `json:"api_url,omitempty"`
	// Network is the only network whose payments are accepted: "Pi Network"
	// (default) or "Pi Testnet".
	Network string `json:"network,omitempty"`
	// ApprovePath is the app's approve route; default /payments/approve.
	ApprovePath string `json:"approve,omitempty"`
	// CompletePath is the app's complete route; default /payments/complete.
	CompletePath string `json:"complete,omitempty"`
	// IncompletePath is the route the frontend posts an incomplete payment
	// to ({"payment": {...}}); default /payments/incomplete.
	IncompletePath string `json:"incomplete,omitempty"`
	// CancelPath is the route the frontend posts a cancelled payment to;
	// default /payments/cancelled_payment.
	CancelPath string `json:"cancel,omitempty"`
	// SigningKey is the HS256 secret the headers are signed with, at least 32
	// bytes. Placeholders are resolved at provisioning. Required unless Keys
	// is given.
	SigningKey string `json:"signing_key,omitempty"`
	// Keys replaces SigningKey for EdDSA keys and for rotation: the first key
	// signs, the others stay published (EdDSA) until retired.
	Keys []KeyConfig `json:"keys,omitempty"`
	// JWKSPath, when set, is where the guard serves the JWK Set of its EdDSA
	// public keys (GET), for apps that verify without a shared secret.
	JWKSPath string `json:"jwks_path,omitempty"`
	// Header is the name of the verified header; default Pi-Payment-Verified.
	Header string `json:"header,omitempty"`
	// NoticeHeader is the name of the notice header sent on approve; default
	// Pi-Payment-Notice.
	NoticeHeader string `json:"notice_header,omitempty"`
	// MaxBody bounds a callback request's body, in bytes; default 64 KiB.
	MaxBody int64 `json:"max_body,omitempty"`
	// Timeout bounds the whole Pi conversation of one request, each
	// delivery of a completed payment to the app, and each storage read or
	// write of the redelivery worker and the reconciler; default 20s. Each
	// Pi call is also bounded by DefaultPiCallTimeout.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// TokenTTL is the lifetime of a signed header; default 60s.
	TokenTTL caddy.Duration `json:"token_ttl,omitempty"`
	// Issuer and Audience are the tokens' iss and aud claims; defaults
	// "caddy-pi-guard" and "pi-app".
	Issuer   string `json:"issuer,omitempty"`
	Audience string `json:"audience,omitempty"`
	// RespondApprove answers an approve request directly, without forwarding
	// it to the upstream.
	RespondApprove bool `json:"respond_approve,omitempty"`
	// CancelRejected cancels a payment at Pi when the app rejects its
	// approval notice. It needs BindUser: the guard changes a payment's state
	// at Pi only for a caller it can tie to the payment's user.
	CancelRejected bool `json:"cancel_rejected,omitempty"`
	// CancelIncompleteAfter is the age after which an incomplete payment
	// without a blockchain transaction, posted to the incomplete route, is
	// cancelled at Pi for any caller; a younger one is cancelled only for its
	// owner (with BindUser) and otherwise answered 409 payment_in_progress.
	// Default 5m, well past the wallet's own timeout of about a minute.
	CancelIncompleteAfter caddy.Duration `json:"cancel_incomplete_after,omitempty"`
	// MaxPiCalls bounds the Pi API calls in flight; default 128. A request
	// that finds no free slot within 2s is answered 503 pi_busy (retryable).
	MaxPiCalls int `json:"max_pi_calls,omitempty"`
	// LookupRate bounds, per second, the Pi lookups of payment ids and
	// access tokens the guard has not seen before, for all clients together
	// (default 50), and LookupRatePerClient for each client IP address
	// (default 5): random ids or tokens from strangers must not use up the
	// app's Pi quota. Four seconds' worth may come at once. Over the limit,
	// the answer is 429 rate_limited with Retry-After.
	LookupRate          float64 `json:"lookup_rate,omitempty"`
	LookupRatePerClient float64 `json:"lookup_rate_per_client,omitempty"`
	// MinAmount and MaxAmount, when set, bound the amount (in Pi, exact
	// decimals) of payments the guard approves or completes.
	MinAmount piclient.Amount `json:"min_amount,omitempty"`
	MaxAmount piclient.Amount `json:"max_amount,omitempty"`
	// HorizonURL turns on the blockchain cross-check: the Pi blockchain API
	// (Horizon) base URL, such as https://api.mainnet.minepi.com.
	HorizonURL string `json:"horizon_url,omitempty"`
	// Wallet is the app's wallet address; required with HorizonURL.
	Wallet string `json:"wallet,omitempty"`
	// BindUser, when set, requires the user's Pi access token on every
	// payment route and refuses other users' payments.
	BindUser *UserBinding `json:"bind_user,omitempty"`
	// Payer names the credential that identifies a payment's payer (its
	// approver) on later requests: only the payer receives the app's answer
	// to a completion or may approve again. Without it (and without
	// BindUser, whose uid then decides), the approver's Authorization
	// header and each of its cookies with a value of 16 characters or more
	// count.
	Payer *PayerBinding `json:"payer,omitempty"`
	// CORSOrigins lists the origins of frontends served from another origin
	// than the guard (such as https://app.example.com): the guard's own
	// answers (its JSON errors, a replayed completion, a respond_approve
	// answer) carry Access-Control-Allow-Origin: <the request's Origin> and
	// Access-Control-Allow-Credentials: true for these origins only, and the
	// guard answers these origins' preflights of the payment routes itself
	// (so that a completion reaches it while the app is down). The app's
	// answers, and other routes' preflights, are not touched.
	CORSOrigins []string `json:"cors_origins,omitempty"`

	// StorageRaw is the storage module where payment records and locks live;
	// default Caddy's configured storage. Instances that share it coordinate.
	StorageRaw json.RawMessage `json:"storage,omitempty" caddy:"namespace=caddy.storage inline_key=module"`
	// RedeliverTo is the app's base URL (such as http://127.0.0.1:3000) that
	// owed deliveries are re-sent to in the background. Without it, a payment
	// the app failed to accept is redelivered only when the client retries.
	RedeliverTo string `json:"redeliver_to,omitempty"`
	// RedeliverAttempts bounds redelivery attempts per payment; default 10.
	RedeliverAttempts int `json:"redeliver_attempts,omitempty"`
	// RedeliverBackoff is the wait before the first redelivery, doubled after
	// each failure up to 15 minutes; default 5s.
	RedeliverBackoff caddy.Duration `json:"redeliver_backoff,omitempty"`
	// ReconcileAfter is how long after its approval a payment not yet
	// completed is re-read from Pi by the reconciler, which completes and
	// delivers it when its client vanished after paying; default 5m.
	ReconcileAfter caddy.Duration `json:"reconcile_after,omitempty"`
	// ReconcileGiveUp is how long after its approval the reconciler stops
	// watching a payment without a verified transaction, and tells the app;
	// default 1h.
	ReconcileGiveUp caddy.Duration `json:"reconcile_give_up,omitempty"`
	// ReconcileCancel cancels at Pi a payment given up without a transaction.
	ReconcileCancel bool `json:"reconcile_cancel,omitempty"`
	// Retention is how long a delivered payment's record is kept for
	// replays and audits before a background sweep removes it; default 720h
	// (30 days). Owed records are never removed.
	Retention caddy.Duration `json:"retention,omitempty"`
	// RecordLayout is how records are kept with file_system storage:
	// "segments" (the default: appended to a few segment files per
	// instance, docs/segment-store.md) or "files" (a file per payment, as
	// earlier versions keep them; for a cluster some of whose instances
	// still run one). The segments layout reads the files layout's records;
	// the files layout refuses to start over segments, which it does not
	// read. Other storage modules keep a key per payment whatever it says.
	RecordLayout string `json:"record_layout,omitempty"`

	pi              *piclient.Client
	horizon         *horizon.Client
	users           *users
	signer          *verify.Signer
	jwks            []byte
	locks           *ledger.KeyedMutex
	approvals       *approvals
	facts           *facts
	lookups         *lookups
	views           *views
	piLimit         *piLimit
	routes          map[string]string   // routeKey(path) → phase
	nearRoutes      map[string]struct{} // looseKey of each route path
	watched         *ledger.WatchList
	checks          *checkTimes // when each watched payment's next check is due
	store           *ledger.Ledger
	app             string // the app's id: the first 8 hex digits of SHA-256 of the API key (its storage prefix, its metrics label)
	redeliverURL    *url.URL
	redeliverClient *http.Client
	metrics         *metrics
	background      *sync.WaitGroup // writes still running after their request
	logger          *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.pi_guard",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision resolves secrets and defaults and builds the Pi client and the
// signer. It makes no network call, so `caddy validate` stays offline.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if reg := ctx.GetMetricsRegistry(); reg != nil {
		var err error
		if h.metrics, err = newMetrics(reg); err != nil {
			return fmt.Errorf("pi_guard: registering metrics: %w", err)
		}
	}
	storage := ctx.Storage()
	if h.StorageRaw != nil {
		mod, err := ctx.LoadModule(h, "StorageRaw")
		if err != nil {
			return fmt.Errorf("pi_guard: loading storage module: %w", err)
		}
		if storage, err = mod.(caddy.StorageConverter).CertMagicStorage(); err != nil {
			return fmt.Errorf("pi_guard: storage: %w", err)
		}
	}
	if err := h.provision(storage); err != nil {
		return err
	}
	live.Store(h, struct{}{})
	go h.redeliverLoop(ctx)
	h.startReconciler(ctx)
	go h.retentionLoop(ctx)
	if h.Payer == nil && h.BindUser == nil {
		h.logger.Warn("payer is not set: the payer of a payment is recognised by every session-like credential its approve carried " +
			"(Authorization, cookies of 16+ characters other than load-balancer and analytics cookies); name your session cookie with payer cookie <name>, or use bind_user")
	}
	if h.redeliverURL == nil {
		h.logger.Warn("redeliver_to is not set: a completed payment the app fails to accept is delivered again only when the client retries, " +
			"and a payment whose client vanished after paying is not completed by the guard (only logged): it stays incomplete at Pi until the user's app reports it")
	}
	return nil
}

// provision does the work of Provision that needs nothing else from the Caddy
// context; tests call it directly.
func (h *Handler) provision(storage certmagic.Storage) error {
	if h.metrics == nil {
		var err error
		if h.metrics, err = newMetrics(prometheus.NewRegistry()); err != nil {
			return err
		}
	}
	repl := caddy.NewReplacer()
	apiKey := strings.TrimSpace(repl.ReplaceKnown(h.APIKey, ""))
	if err := h.resolvePlaceholders(repl); err != nil {
		return err
	}
	h.setDefaults()

	if apiKey == "" {
		return errors.New("pi_guard: api_key is empty: set it to the app's server API key, for example api_key {env.PI_API_KEY}, and make sure the variable is set")
	}
	keys, err := h.loadKeys(repl)
	if err != nil {
		return fmt.Errorf("pi_guard: %w", err)
	}

	h.pi, err = piclient.New(piclient.Options{
		BaseURL: h.APIURL,
		APIKey:  apiKey,
		Timeout: min(DefaultPiCallTimeout, time.Duration(h.Timeout)),
		Observe: h.metrics.observePi,
	})
	if err != nil {
		return fmt.Errorf("pi_guard: %w", err)
	}
	h.signer, err = verify.NewSigner(verify.SignerOptions{
		Keys:     keys,
		Issuer:   h.Issuer,
		Audience: h.Audience,
		TTL:      time.Duration(h.TokenTTL),
	})
	if err != nil {
		return fmt.Errorf("pi_guard: %w", err)
	}
	if h.JWKSPath != "" {
		if h.jwks, err = verify.JWKS(keys); err != nil {
			return fmt.Errorf("pi_guard: %w", err)
		}
		if string(h.jwks) == `{"keys":[]}` {
			return errors.New("pi_guard: jwks_path is set but no EdDSA key is configured: the JWK Set publishes EdDSA public keys only (HS256 secrets are never published)")
		}
	}
	h.locks = ledger.NewKeyedMutex()
	h.approvals = newApprovals()
	h.facts = newFacts()
	h.lookups = newLookups(h.LookupRate, h.LookupRatePerClient)
	h.views = newViews()
	h.piLimit = newPiLimit(h.MaxPiCalls)
	h.routes = map[string]string{
		routeKey(h.ApprovePath): phaseApprove, routeKey(h.CompletePath): phaseComplete,
		routeKey(h.IncompletePath): phaseIncomplete, routeKey(h.CancelPath): phaseCancel,
	}
	h.nearRoutes = map[string]struct{}{}
	for _, p := range []string{h.ApprovePath, h.CompletePath, h.IncompletePath, h.CancelPath} {
		h.nearRoutes[looseKey(p)] = struct{}{}
	}
	h.watched = ledger.NewWatchList()
	h.checks = &checkTimes{}
	h.background = new(sync.WaitGroup)
	if h.HorizonURL != "" {
		if h.horizon, err = horizon.New(h.HorizonURL, time.Duration(h.Timeout)); err != nil {
			return fmt.Errorf("pi_guard: horizon_url: %w", err)
		}
	}
	if h.BindUser != nil {
		h.users = newUsers(*h.BindUser, h.pi)
	}
	// Records are kept per app (per API key), so that one app's completed
	// payment can never be replayed as verified to another app.
	h.app = shortHash(apiKey)
	h.store = ledger.NewLayout(storage, "pi_guard/"+h.app, h.RecordLayout)
	if err := h.store.CheckLayout(); err != nil {
		return fmt.Errorf("pi_guard: record_layout files: %w", err)
	}
	h.store.SetRetention(h.retention())
	if h.RedeliverTo != "" {
		if h.redeliverURL, err = parseRedeliverURL(h.RedeliverTo); err != nil {
			return fmt.Errorf("pi_guard: %w", err)
		}
		h.redeliverClient = &http.Client{
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return nil
}

func (h *Handler) setDefaults() {
	if h.APIURL == "" {
		h.APIURL = piclient.DefaultBaseURL
	}
	if h.Network == "" {
		h.Network = piclient.NetworkMainnet
	}
	if h.ApprovePath == "" {
		h.ApprovePath = DefaultApprovePath
	}
	if h.CompletePath == "" {
		h.CompletePath = DefaultCompletePath
	}
	if h.IncompletePath == "" {
		h.IncompletePath = DefaultIncompletePath
	}
	if h.CancelPath == "" {
		h.CancelPath = DefaultCancelPath
	}
	if h.Header == "" {
		h.Header = verify.HeaderVerified
	}
	if h.NoticeHeader == "" {
		h.NoticeHeader = verify.HeaderNotice
	}
	if h.MaxBody == 0 {
		h.MaxBody = DefaultMaxBody
	}
	if h.Timeout == 0 {
		h.Timeout = caddy.Duration(DefaultTimeout)
	}
	if h.TokenTTL == 0 {
		h.TokenTTL = caddy.Duration(verify.DefaultTTL)
	}
	if h.Issuer == "" {
		h.Issuer = verify.DefaultIssuer
	}
	if h.Audience == "" {
		h.Audience = verify.DefaultAudience
	}
	if h.RedeliverAttempts == 0 {
		h.RedeliverAttempts = DefaultRedeliverAttempts
	}
	if h.RedeliverBackoff == 0 {
		h.RedeliverBackoff = caddy.Duration(DefaultRedeliverBackoff)
	}
	if h.CancelIncompleteAfter == 0 {
		h.CancelIncompleteAfter = caddy.Duration(DefaultCancelIncompleteAfter)
	}
	if h.MaxPiCalls == 0 {
		h.MaxPiCalls = DefaultMaxPiCalls
	}
	if h.LookupRate == 0 {
		h.LookupRate = DefaultLookupRate
	}
	if h.LookupRatePerClient == 0 {
		h.LookupRatePerClient = DefaultLookupRatePerClient
	}
	h.setReconcileDefaults()
}

// shortHash names a secret by the first 8 hex digits of its SHA-256, which
// tell secrets apart without revealing them.
func shortHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:4])
}

// keyID is the kid of a signing_key secret, so rotated keys get distinct kids.
func keyID(secret string) string { return "hs-" + shortHash(secret) }

// Cleanup releases the Pi client's idle connections and the expiry log's
// file when the config unloads.
// The redelivery worker stops with the module's context.
func (h *Handler) Cleanup() error {
	live.Delete(h)
	if h.background != nil {
		h.background.Wait()
	}
	if h.pi != nil {
		h.pi.CloseIdleConnections()
	}
	if h.store != nil {
		h.store.Close()
	}
	return nil
}

// Validate checks the provisioned configuration.
func (h *Handler) Validate() error {
	if h.Network != piclient.NetworkMainnet && h.Network != piclient.NetworkTestnet {
		return fmt.Errorf("pi_guard: network %q is unknown: use %q or %q", h.Network, piclient.NetworkMainnet, piclient.NetworkTestnet)
	}
	paths := map[string]string{"approve": h.ApprovePath, "complete": h.CompletePath, "incomplete": h.IncompletePath, "cancel": h.CancelPath}
	if h.JWKSPath != "" {
		paths["jwks_path"] = h.JWKSPath
	}
	seen := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(paths)) {
		p := paths[name]
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("pi_guard: %s path %q must start with /", name, p)
		}
		// Variants of a payment route (letter case, trailing slash) are
		// guarded as that route, so two routes must differ in more.
		if other, dup := seen[routeKey(p)]; dup {
			return fmt.Errorf("pi_guard: %s and %s use the same path %q (paths are compared ignoring letter case and trailing slashes): give each its own", other, name, p)
		}
		seen[routeKey(p)] = name
	}
	if strings.EqualFold(h.Header, h.NoticeHeader) {
		return fmt.Errorf("pi_guard: header and notice_header are both %q: they must differ, or a notice could pass for proof of payment", h.Header)
	}
	for _, hdr := range []string{h.Header, h.NoticeHeader} {
		if !validHeaderName(hdr) {
			return fmt.Errorf("pi_guard: %q is not a valid header name", hdr)
		}
	}
	for name, a := range map[string]piclient.Amount{"min_amount": h.MinAmount, "max_amount": h.MaxAmount} {
		if a != "" && a.Rat() == nil {
			return fmt.Errorf("pi_guard: %s %q is not a decimal number", name, a)
		}
	}
	if h.MinAmount != "" && h.MaxAmount != "" && h.MinAmount.Cmp(h.MaxAmount) > 0 {
		return fmt.Errorf("pi_guard: min_amount %s is above max_amount %s", h.MinAmount, h.MaxAmount)
	}
	if (h.HorizonURL == "") != (h.Wallet == "") {
		return errors.New("pi_guard: horizon_url and wallet go together: the cross-check compares the transaction's destination with the app's wallet address")
	}
	if b := h.BindUser; b != nil {
		switch {
		case b.From == "" || b.From == "authorization":
			if b.Name != "" {
				return errors.New("pi_guard: bind_user authorization takes no name")
			}
		case (b.From == "header" && validHeaderName(b.Name)) || (b.From == "cookie" && b.Name != ""):
		default:
			return fmt.Errorf("pi_guard: bind_user must be authorization, header <name> or cookie <name>, got %q %q", b.From, b.Name)
		}
	}
	if b := h.Payer; b != nil {
		switch {
		case b.From == "authorization" && b.Name == "":
		case (b.From == "header" && validHeaderName(b.Name)) || (b.From == "cookie" && b.Name != ""):
		default:
			return fmt.Errorf("pi_guard: payer must be authorization, header <name> or cookie <name>, got %q %q", b.From, b.Name)
		}
	}
	for _, o := range h.CORSOrigins {
		if err := checkOrigin(o); err != nil {
			return err
		}
	}
	if h.CancelRejected && h.BindUser == nil {
		return errors.New("pi_guard: cancel_rejected needs bind_user: without it the guard cannot tell a payment's owner from a stranger who knows its id, and a stranger could get the owner's payment cancelled by making the app reject it")
	}
	if h.CancelIncompleteAfter < 0 || h.MaxPiCalls < 0 {
		return errors.New("pi_guard: cancel_incomplete_after and max_pi_calls must not be negative")
	}
	if h.LookupRate < 0 || h.LookupRatePerClient < 0 {
		return errors.New("pi_guard: lookup_rate and lookup_rate_per_client must be positive (lookups per second)")
	}
	if h.MaxBody < 1 {
		return fmt.Errorf("pi_guard: max_body must be positive, got %d", h.MaxBody)
	}
	if h.Timeout < 0 || h.TokenTTL < 0 || h.RedeliverBackoff < 0 {
		return errors.New("pi_guard: timeout, token_ttl and redeliver_backoff must not be negative")
	}
	if err := h.validateRetention(); err != nil {
		return err
	}
	if l := h.RecordLayout; l != "" && l != ledger.LayoutSegments && l != ledger.LayoutFiles {
		return fmt.Errorf("pi_guard: record_layout must be %q or %q, got %q", ledger.LayoutSegments, ledger.LayoutFiles, l)
	}
	if h.RedeliverAttempts < 1 {
		return fmt.Errorf("pi_guard: redeliver_attempts must be at least 1, got %d", h.RedeliverAttempts)
	}
	return h.validateReconcile()
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Interface guards.
var (
	_ caddy.Module                = (*Handler)(nil)
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
