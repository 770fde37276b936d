#!/usr/bin/env bash
# Starts the local fake Pi platform, the example app and Caddy with pi_guard in
# front of it; stops all three on Ctrl-C (or SIGTERM). Used by `make run` after
# `make build`, and by the browser test in e2e/ (on other ports).
#
# Environment: PORT (Caddy, default 8080), FAKEPI_ADDR (default
# 127.0.0.1:8090), APP_ADDR (default 127.0.0.1:8081), ADMIN_PORT (Caddy's
# admin API, default 2019), PI_NETWORK (the fake platform's network and the
# guard's, one setting for both; default "Pi Testnet", fakepi's default),
# CORS_ORIGINS (space-separated origins of a frontend served elsewhere, such
# as a dev server, that may call the app and read the guard's answers with
# credentials: the guard's cors_origins and the app's; default
# http://localhost:3000), RUN_DIR (where Caddy keeps its storage, the payment
# records, and its config; default: a new directory under out/, removed when
# the script stops, because the fake platform forgets its payments then too).
# The demo never touches your own Caddy's storage (~/.local/share/caddy).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${PORT:-8080}"
FAKEPI_ADDR="${FAKEPI_ADDR:-127.0.0.1:8090}"
APP_ADDR="${APP_ADDR:-127.0.0.1:8081}"
ADMIN_PORT="${ADMIN_PORT:-2019}"
PI_NETWORK="${PI_NETWORK:-Pi Testnet}"
CORS_ORIGINS="${CORS_ORIGINS:-http://localhost:3000}"
export PORT FAKEPI_ADDR APP_ADDR ADMIN_PORT PI_NETWORK CORS_ORIGINS
export PI_API_URL="http://${FAKEPI_ADDR}/v2"
export PI_API_KEY="pitest-api-key" # the fake platform's app key; never a real one
# A fresh signing secret for every run, shared by Caddy and the example app.
PI_GUARD_SIGNING_KEY="$(head -c 48 /dev/urandom | base64 | tr -d '\n')"
export PI_GUARD_SIGNING_KEY
own_run_dir=
if [ -z "${RUN_DIR:-}" ]; then
	mkdir -p out
	RUN_DIR="$(mktemp -d "$PWD/out/run.XXXXXX")"
	own_run_dir=1
fi

pids=()
stop() {
	trap - INT TERM EXIT
	echo
	echo "stopping..."
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ -n "$own_run_dir" ]; then rm -rf "$RUN_DIR"; fi
}
trap stop INT TERM EXIT

wait_for() { # url
	for _ in $(seq 1 100); do
		if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "did not come up: $1" >&2
	return 1
}

bin/fakepi -addr "$FAKEPI_ADDR" -api-key "$PI_API_KEY" -network "$PI_NETWORK" &
pids+=($!)
ADDR="$APP_ADDR" bin/goapp &
pids+=($!)
wait_for "http://${FAKEPI_ADDR}/control/calls"
wait_for "http://${APP_ADDR}/orders"

XDG_DATA_HOME="$RUN_DIR/data" XDG_CONFIG_HOME="$RUN_DIR/config" \
	bin/caddy run --adapter caddyfile --config examples/run.Caddyfile &
pids+=($!)
wait_for "http://localhost:${PORT}/orders"

cat <<MSG

  caddy-pi-guard is running. Open http://localhost:${PORT}/
  and pay for a pie with the simulated Pi wallet, then play the attacker.

  fake Pi platform  http://${FAKEPI_ADDR}/v2   (control API: /control; network "${PI_NETWORK}")
  fake Pi SDK       http://${FAKEPI_ADDR}/pi-sdk.js  (for a frontend served from ${CORS_ORIGINS})
  example app       http://${APP_ADDR}        (behind Caddy)
  Caddy + pi_guard  http://localhost:${PORT}
  payment records   ${RUN_DIR}/data/caddy/pi_guard/

  Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}"
