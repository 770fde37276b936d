package netstore

import (
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/certmagic"
)

func init() {
	caddy.RegisterModule(Module{})
}

// Module is the Caddy storage module caddy.storage.pi_guard_netlike: a
// Storage client of a netstore Server, for the guard's test suites.
//
//	storage pi_guard_netlike {
//		url        http://127.0.0.1:7777/
//		latency    1ms   # every call waits this long (negative: none)
//		jitter     2ms   # ... plus up to this
//		lock_ttl   5s    # a dead holder's lock stays this long
//		lock_retry 1s    # a held lock is tried again this often
//	}
type Module struct {
	URL       string         `json:"url,omitempty"`
	Latency   caddy.Duration `json:"latency,omitempty"`
	Jitter    caddy.Duration `json:"jitter,omitempty"`
	LockTTL   caddy.Duration `json:"lock_ttl,omitempty"`
	LockRetry caddy.Duration `json:"lock_retry,omitempty"`
}

var (
	_ caddy.StorageConverter = (*Module)(nil)
	_ caddyfile.Unmarshaler  = (*Module)(nil)
)

// CaddyModule returns the Caddy module information.
func (Module) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.storage.pi_guard_netlike",
		New: func() caddy.Module { return new(Module) },
	}
}

// CertMagicStorage returns the client, with the defaults for what is unset.
func (m *Module) CertMagicStorage() (certmagic.Storage, error) {
	if m.URL == "" {
		return nil, errNoURL
	}
	s := NewStorage(m.URL)
	set := func(dst *time.Duration, v caddy.Duration) {
		if v != 0 {
			*dst = time.Duration(v)
		}
	}
	set(&s.Latency, m.Latency)
	set(&s.Jitter, m.Jitter)
	set(&s.LockTTL, m.LockTTL)
	set(&s.LockRetry, m.LockRetry)
	if m.Latency < 0 {
		s.Latency, s.Jitter = 0, 0
	}
	return s, nil
}

// UnmarshalCaddyfile reads the storage block (see Module).
func (m *Module) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		m.URL = d.Val()
	}
	for d.NextBlock(0) {
		key := d.Val()
		if !d.NextArg() {
			return d.ArgErr()
		}
		val := d.Val()
		if key == "url" {
			m.URL = val
			continue
		}
		dur, err := caddy.ParseDuration(val)
		if err != nil {
			return d.Errf("%s: %v", key, err)
		}
		switch key {
		case "latency":
			m.Latency = caddy.Duration(dur)
		case "jitter":
			m.Jitter = caddy.Duration(dur)
		case "lock_ttl":
			m.LockTTL = caddy.Duration(dur)
		case "lock_retry":
			m.LockRetry = caddy.Duration(dur)
		default:
			return d.Errf("unknown option %q", key)
		}
	}
	return nil
}
