package piguard

import (
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/caddy-pi-guard/caddy-pi-guard/internal/ledger"
	"github.com/caddy-pi-guard/caddy-pi-guard/piclient"
)

// credentialSource reads where a credential comes from: "authorization"
// (also for no arguments), "header <name>" or "cookie <name>".
func credentialSource(args []string) (from, name string, ok bool) {
	switch {
	case len(args) == 0 || (len(args) == 1 && args[0] == "authorization"):
		return "authorization", "", true
	case len(args) == 2 && (args[0] == "header" || args[0] == "cookie"):
		return args[0], args[1], true
	}
	return "", "", false
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	g := new(Handler)
	if err := g.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return g, nil
}

// subdirectives are the pi_guard block's subdirectives, in the order the
// unknown-subdirective error lists them (TestSubdirectivesListEveryCase holds
// the list to the cases UnmarshalCaddyfile parses).
var subdirectives = []string{
	"api_key", "api_url", "network", "approve", "complete", "incomplete", "cancel", "signing_key",
	"keys", "jwks_path", "header", "notice_header", "max_body", "timeout", "token_ttl", "issuer",
	"audience", "respond_approve", "cancel_rejected", "cancel_incomplete_after", "max_pi_calls",
	"lookup_rate", "lookup_rate_per_client", "min_amount", "max_amount", "horizon_url", "wallet",
	"bind_user", "payer", "cors_origins", "storage", "redeliver_to", "redeliver_attempts",
	"redeliver_backoff", "reconcile_after", "reconcile_give_up", "reconcile_cancel", "retention",
	"record_layout",
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	pi_guard [<matcher>] {
//	    api_key         <key>
//	    api_url         <url>
//	    network         "Pi Network"|"Pi Testnet"
//	    approve         <path>
//	    complete        <path>
//	    incomplete      <path>
//	    cancel          <path>
//	    signing_key     <secret>
//	    keys {
//	        hs256 <kid> <secret>
//	        eddsa <kid> <pem file>
//	    }
//	    jwks_path       <path>
//	    header          <name>
//	    notice_header   <name>
//	    max_body        <size>
//	    timeout         <duration>
//	    token_ttl       <duration>
//	    issuer          <iss>
//	    audience        <aud>
//	    respond_approve
//	    cancel_rejected
//	    cancel_incomplete_after <duration>
//	    max_pi_calls    <n>
//	    lookup_rate     <per second>
//	    lookup_rate_per_client <per second>
//	    min_amount      <decimal>
//	    max_amount      <decimal>
//	    horizon_url     <url>
//	    wallet          <address>
//	    bind_user       [authorization | header <name> | cookie <name>]
//	    payer           authorization | header <name> | cookie <name>
//	    cors_origins    <origin...>
//	    storage         <module> { ... }
//	    redeliver_to    <url>
//	    redeliver_attempts <n>
//	    redeliver_backoff  <duration>
//	    reconcile_after    <duration>
//	    reconcile_give_up  <duration>
//	    reconcile_cancel
//	    retention       <duration>
//	    record_layout   segments|files
//	}
//
// cors_origins lists the origins (scheme://host[:port], as browsers send
// them) of frontends on another origin that may read the guard's own answers
// with credentials; the app's answers keep the app's own CORS headers.
//
// Unknown and repeated subdirectives are errors.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		name := d.Val()
		if !slices.Contains(subdirectives, name) {
			return d.Errf("pi_guard: unknown subdirective %q (known: %s)", name, strings.Join(subdirectives, ", "))
		}
		if seen[name] {
			return d.Errf("pi_guard: subdirective %q given twice; keep one", name)
		}
		seen[name] = true
		if name == "storage" {
			if !d.NextArg() {
				return d.ArgErr()
			}
			modName := d.Val()
			unm, err := caddyfile.UnmarshalModule(d, "caddy.storage."+modName)
			if err != nil {
				return err
			}
			if _, ok := unm.(caddy.StorageConverter); !ok {
				return d.Errf("pi_guard: module %s is not a storage module", modName)
			}
			h.StorageRaw = caddyconfig.JSONModuleObject(unm, "module", modName, nil)
			continue
		}
		switch name {
		case "respond_approve", "cancel_rejected":
			if d.NextArg() {
				return d.Errf("pi_guard: %s takes no argument", name)
			}
			if name == "respond_approve" {
				h.RespondApprove = true
			} else {
				h.CancelRejected = true
			}
			continue
		case "reconcile_cancel":
			if d.NextArg() {
				return d.Errf("pi_guard: %s takes no argument", name)
			}
			h.ReconcileCancel = true
			continue
		case "keys":
			if d.NextArg() {
				return d.Errf("pi_guard: keys takes a block: keys { hs256 <kid> <secret> | eddsa <kid> <pem file> }")
			}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				alg := d.Val()
				args := d.RemainingArgs()
				if len(args) != 2 {
					return d.Errf("pi_guard: keys: %s needs a kid and a %s", alg, map[bool]string{true: "secret", false: "PEM file"}[alg == "hs256"])
				}
				switch alg {
				case "hs256":
					h.Keys = append(h.Keys, KeyConfig{ID: args[0], Algorithm: "HS256", Secret: args[1]})
				case "eddsa":
					h.Keys = append(h.Keys, KeyConfig{ID: args[0], Algorithm: "EdDSA", KeyFile: args[1]})
				default:
					return d.Errf("pi_guard: keys: unknown key type %q (use hs256 or eddsa)", alg)
				}
			}
			if len(h.Keys) == 0 {
				return d.Errf("pi_guard: keys block is empty")
			}
			continue
		case "bind_user":
			from, name, ok := credentialSource(d.RemainingArgs())
			if !ok {
				return d.Errf("pi_guard: bind_user takes nothing, authorization, header <name> or cookie <name>")
			}
			if from == "authorization" {
				from = "" // the default
			}
			h.BindUser = &UserBinding{From: from, Name: name}
			continue
		case "payer":
			args := d.RemainingArgs()
			from, name, ok := credentialSource(args)
			if !ok || len(args) == 0 {
				return d.Errf("pi_guard: payer takes authorization, header <name> or cookie <name>")
			}
			h.Payer = &PayerBinding{From: from, Name: name}
			continue
		case "cors_origins":
			h.CORSOrigins = d.RemainingArgs()
			if len(h.CORSOrigins) == 0 {
				return d.Errf("pi_guard: cors_origins needs at least one origin, such as https://app.example.com")
			}
			continue
		}
		var val string
		if !d.Args(&val) {
			return d.Errf("pi_guard: %s needs exactly one value", name)
		}
		if d.NextArg() {
			return d.Errf("pi_guard: %s takes exactly one value (quote values that contain spaces)", name)
		}
		switch name {
		case "api_key":
			h.APIKey = val
		case "api_url":
			h.APIURL = val
		case "network":
			h.Network = val
		case "approve":
			h.ApprovePath = val
		case "complete":
			h.CompletePath = val
		case "incomplete":
			h.IncompletePath = val
		case "cancel":
			h.CancelPath = val
		case "min_amount", "max_amount":
			a, err := piclient.ParseAmount(val)
			if err != nil || a.Rat().Sign() < 0 {
				return d.Errf("pi_guard: %s %q must be a non-negative decimal number of Pi, such as 3.14", name, val)
			}
			if name == "min_amount" {
				h.MinAmount = a
			} else {
				h.MaxAmount = a
			}
		case "horizon_url":
			h.HorizonURL = val
		case "wallet":
			h.Wallet = val
		case "signing_key":
			h.SigningKey = val
		case "jwks_path":
			h.JWKSPath = val
		case "header":
			h.Header = val
		case "notice_header":
			h.NoticeHeader = val
		case "issuer":
			h.Issuer = val
		case "audience":
			h.Audience = val
		case "redeliver_to":
			h.RedeliverTo = val
		case "redeliver_attempts":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > 1000 {
				return d.Errf("pi_guard: redeliver_attempts %q must be a whole number from 1 to 1000", val)
			}
			h.RedeliverAttempts = n
		case "max_pi_calls":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 || n > 100000 {
				return d.Errf("pi_guard: max_pi_calls %q must be a whole number from 1 to 100000", val)
			}
			h.MaxPiCalls = n
		case "lookup_rate", "lookup_rate_per_client":
			n, err := strconv.ParseFloat(val, 64)
			if err != nil || !(n > 0 && n <= 1e6) {
				return d.Errf("pi_guard: %s %q must be a number of lookups per second, above 0, such as 50", name, val)
			}
			if name == "lookup_rate" {
				h.LookupRate = n
			} else {
				h.LookupRatePerClient = n
			}
		case "max_body":
			n, err := humanize.ParseBytes(val)
			if err != nil || n == 0 || n > 1<<30 {
				return d.Errf("pi_guard: max_body %q must be a size between 1B and 1GiB, such as 64KiB", val)
			}
			h.MaxBody = int64(n)
		case "timeout", "token_ttl", "redeliver_backoff", "cancel_incomplete_after":
			dur, err := caddy.ParseDuration(val)
			if err != nil || dur <= 0 {
				return d.Errf("pi_guard: %s %q must be a positive duration, such as 15s", name, val)
			}
			switch name {
			case "timeout":
				h.Timeout = caddy.Duration(dur)
			case "token_ttl":
				h.TokenTTL = caddy.Duration(dur)
			case "cancel_incomplete_after":
				h.CancelIncompleteAfter = caddy.Duration(dur)
			default:
				h.RedeliverBackoff = caddy.Duration(dur)
			}
		case "reconcile_after", "reconcile_give_up":
			dur, err := caddy.ParseDuration(val)
			if err != nil || dur <= 0 {
				return d.Errf("pi_guard: %s %q must be a positive duration, such as 5m", name, val)
			}
			if name == "reconcile_after" {
				h.ReconcileAfter = caddy.Duration(dur)
			} else {
				h.ReconcileGiveUp = caddy.Duration(dur)
			}
		case "retention":
			dur, err := caddy.ParseDuration(val)
			if err != nil || dur <= 0 {
				return d.Errf("pi_guard: retention %q must be a positive duration, such as 720h (30 days)", val)
			}
			h.Retention = caddy.Duration(dur)
		case "record_layout":
			if val != ledger.LayoutSegments && val != ledger.LayoutFiles {
				return d.Errf("pi_guard: record_layout %q must be %s or %s", val, ledger.LayoutSegments, ledger.LayoutFiles)
			}
			h.RecordLayout = val
		default: // not in subdirectives: refused above
			return d.Errf("pi_guard: subdirective %q is listed but not parsed", name)
		}
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*Handler)(nil)
