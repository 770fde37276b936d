// Command caddy is ./caddy (Caddy with its standard modules and pi_guard)
// plus the storage module caddy.storage.pi_guard_netlike, which behaves
// like a networked storage; the cluster tests (integration/cluster_*) run
// it as separate processes. Not for production: the netlike storage keeps
// everything in the memory of a test process.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-pi-guard/caddy-pi-guard"
	_ "github.com/caddy-pi-guard/caddy-pi-guard/internal/netstore"
)

func main() {
	caddycmd.Main()
}
