#!/usr/bin/env bash
# make setup (and so the first step of make test): checks in seconds what the
# tests need, installs what it can without root, and says in one line how to
# get the rest, before anything long runs.
#
# Without root it installs xcaddy into bin/tools (GOBIN; git-ignored). The Node
# packages are installed by each npm target (npm ci). What needs root (Debian
# packages) is never installed here: the one apt-get line is printed and setup
# fails, so a missing Chromium fails in seconds, not after the Go tests.
#
# Environment: GO (default go), XCADDY (default bin/tools/xcaddy), CHROMIUM
# (default /usr/bin/chromium, as e2e/demo.test.js).
set -euo pipefail
cd "$(dirname "$0")/.."

GO="${GO:-go}"
XCADDY="${XCADDY:-bin/tools/xcaddy}"
XCADDY_VERSION=v0.4.5
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

apt=()   # Debian packages that need root
other=() # what apt cannot give
command -v "$GO" >/dev/null || other+=("Go 1.26 (https://go.dev/dl/)")
command -v node >/dev/null || apt+=(nodejs)
command -v npm >/dev/null || apt+=(npm)
command -v python3 >/dev/null || apt+=(python3)
command -v curl >/dev/null || apt+=(curl)                # scripts/run.sh, started by make test-e2e
[ -x "$CHROMIUM" ] || apt+=(chromium)                    # make test-e2e; playwright-core never downloads one
# make test-python: the PyJWT lines of docs/header.md, with the first interpreter that has PyJWT
python3 -c 'import jwt' 2>/dev/null || /usr/bin/python3 -c 'import jwt' 2>/dev/null || apt+=(python3-jwt)

if [ ${#apt[@]} -gt 0 ] || [ ${#other[@]} -gt 0 ]; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo "
	line=""
	[ ${#apt[@]} -eq 0 ] || line="${sudo}apt-get update && ${sudo}apt-get install -y ${apt[*]}"
	[ ${#other[@]} -eq 0 ] || line="${line:+$line; }install ${other[*]}"
	echo "make test needs what only root can install; run: $line (then make test again; .ci/run does both)" >&2
	exit 1
fi

if [ ! -x "$XCADDY" ]; then
	case "$XCADDY" in
	*/*) ;;
	*) # a name on PATH, e.g. XCADDY=xcaddy
		command -v "$XCADDY" >/dev/null && exit 0
		echo "XCADDY=$XCADDY is not on PATH: leave XCADDY unset (make setup installs it into bin/tools) or give its path" >&2
		exit 1 ;;
	esac
	echo "installing xcaddy $XCADDY_VERSION into $(dirname "$XCADDY")"
	mkdir -p "$(dirname "$XCADDY")"
	GOBIN="$(cd "$(dirname "$XCADDY")" && pwd)" "$GO" install "github.com/caddyserver/xcaddy/cmd/xcaddy@$XCADDY_VERSION"
fi
