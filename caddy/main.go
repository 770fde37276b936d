// Command caddy is Caddy with its standard modules and the pi_guard handler,
// so that `go build -o caddy ./caddy` gives a working binary without xcaddy.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-pi-guard/caddy-pi-guard"
)

func main() {
	caddycmd.Main()
}
