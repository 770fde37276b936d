package piguard

import (
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// resolvePlaceholders replaces Caddy's global placeholders ({env.*},
// {file.*}, ...) in the string options that name places and identities, so
// that a config can take them from the environment or a mounted file as it
// does api_key. It runs in provisioning, before the defaults and Validate,
// so every value is checked after resolution.
//
// A value that resolves to nothing is an error rather than "unset": an unset
// {env.PI_NETWORK} must not quietly mean the default network, nor an unset
// {env.PI_WALLET} turn the blockchain cross-check off.
//
// The secrets (api_key, signing_key, the keys' secrets and key files) are
// resolved where they are used and never written back into the handler;
// none of the values resolved here is secret.
func (h *Handler) resolvePlaceholders(repl *caddy.Replacer) error {
	for _, f := range []struct {
		name string
		p    *string
	}{
		{"api_url", &h.APIURL}, {"network", &h.Network},
		{"approve", &h.ApprovePath}, {"complete", &h.CompletePath},
		{"incomplete", &h.IncompletePath}, {"cancel", &h.CancelPath}, {"jwks_path", &h.JWKSPath},
		{"header", &h.Header}, {"notice_header", &h.NoticeHeader},
		{"issuer", &h.Issuer}, {"audience", &h.Audience},
		{"horizon_url", &h.HorizonURL}, {"wallet", &h.Wallet}, {"redeliver_to", &h.RedeliverTo},
	} {
		if !strings.Contains(*f.p, "{") {
			continue
		}
		v := strings.TrimSpace(repl.ReplaceKnown(*f.p, ""))
		if v == "" {
			return fmt.Errorf("pi_guard: %s %s resolved to an empty value: set the variable or file it names, or remove %s to use its default", f.name, *f.p, f.name)
		}
		*f.p = v
	}
	return nil
}
