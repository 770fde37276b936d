#!/usr/bin/env bash
# gotest.sh ARGS...: go test ARGS, its whole output also kept in
# out/go-test.log, and, when it fails, the failing tests' own output again at
# the end. The Caddy processes of the integration tests log a lot to stderr,
# and CI may show only the end of what ran: the failures must be there.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p out
log=out/go-test.log
"${GO:-go}" test "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
	echo
	echo "== go test failed (exit $status); the failures again (whole output: $log):"
	awk '
		/^--- FAIL/ || /^panic: / || /^WARNING: DATA RACE/ || /^fatal error: / { p = 1; n = 0; print; next }
		p && (/^[ \t]/ || /^(goroutine |created by |Previous |Read at |Write at )/ || $0 == "") && n < 200 { print; n++; next }
		{ p = 0 }
		/^(FAIL|ok)[ \t]/ { print }
	' "$log"
fi
exit "$status"
