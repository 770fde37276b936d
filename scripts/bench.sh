#!/usr/bin/env bash
# Benchmarks of caddy-pi-guard, run by `make bench` (never by `make test`).
#
# Builds Caddy with pi_guard, the fake Pi platform and the load generator
# (bench/cmd/piguard-bench), installs the Node/Express baseline
# (bench/node-baseline, npm ci), runs the Go micro-benchmarks, then starts on
# loopback a tiny upstream, the fake Pi, the Node baseline, the Go floor
# (piguard-bench gobaseline) and one Caddy with two sites in front of that
# upstream (pi_guard + reverse_proxy, and reverse_proxy alone), and measures:
#   1. payment flows at 1, 16 and 64 concurrent flows with 0 and 50 ms of Pi
#      latency, with the time the guard adds read from its own log lines and
#      Caddy's CPU time per flow and RSS read from /proc;
#   2. the same flows against the Node/Express baseline (Pi's reference
#      backend's approve and complete, nothing durable), with Node's CPU time
#      and RSS, and both side by side against the targets of issue 15;
#   2b. the same flows against the Go floor (piguard-bench gobaseline: the
#      Node baseline's routes and Pi calls in plain Go, without Caddy), whose
#      CPU per flow is the least a Go server making these calls spends: the
#      comparison splits the guard's CPU by it, says whether 1/3 of Node's is
#      below it, and tells at 50 ms the harness's own loss from the guard's;
#   3. Pi API calls per payment, from the fake's counters;
#   4. when /dev/shm is a tmpfs, the flows once more against a third site
#      whose pi_guard keeps its records there, which tells the cost of
#      syncing records to disk from the guard's CPU time;
#   Each payments run also measures the fake Pi's CPU and the load
#   generator's own per flow: compare turns them into the flows/s this
#   machine allows even a server of zero CPU;
#   5. passthrough throughput and latency, the two sites alternating in rounds;
#   6. only with BENCH_MILLION=N: N whole payment flows at 64 in flight and
#      0 ms against a fourth site with a short retention and its own storage,
#      with Caddy's RSS and Go heap, the site's records on disk and the fake
#      Pi's RSS every BENCH_MILLION_EVERY flows (piguard-bench million);
#   7. only with BENCH_BEFORE=<revision>: the guard's own cost per payment
#      (Caddy's CPU per flow less the Go floor's, from 2b, and less Caddy's
#      CPU per flow with reverse_proxy alone when the flow's two posts are
#      sent to it, measured just before: piguard-bench payments -plain; both
#      measured again after every round, and their medians taken off) of
#      the build at that revision against the build under test (issue 22);
#      the ratio with twice the passthrough's CPU per request (5) taken off
#      instead, as earlier runs did, is given beside it. Caddy is built
#      from that revision too, and both builds run in Caddy processes of
#      their own, each with one guard site identical to the first one above
#      (same options, upstream and fake Pi, their own storage on the same
#      file system as Caddy's), both started afresh; payment flows at 16 and
#      64 in flight and 0 ms run against them in BENCH_BEFORE_ROUNDS rounds,
#      before and after taking turns to go first (piguard-bench payments,
#      then piguard-bench beforeafter for the table).
# Prints every table and writes them, with the machine they ran on, to
# docs/benchmarks.md. All processes it starts are stopped on exit.
#
# Before and after, and only that, in a few minutes (the Go floor at 0 ms,
# the passthrough and the rounds; no Node baseline, tmpfs run, 50 ms runs,
# micro-benchmarks or million run), into out/bench-before-after.md:
#   BENCH_BEFORE=main BENCH_ONLY_BEFORE_AFTER=1 make bench
#
# Environment (all optional):
#   BENCH_PORT_BASE   base of the loopback ports (default 18400: 18401-18407
#                     and 18409 are used, 18408 with BENCH_MILLION and
#                     18410-18413 with BENCH_BEFORE)
#   BENCH_OUT         the report to write (default docs/benchmarks.md, and
#                     out/bench-before-after.md with BENCH_ONLY_BEFORE_AFTER)
#   BENCH_STORAGE     directory for Caddy's storage (default: in a fresh
#                     temporary directory); its file system decides the cost
#                     of the records' fsyncs
#   BENCH_TMPFS       directory on a tmpfs for the third site's records
#                     (default /dev/shm when it is a writable tmpfs; "off"
#                     skips that run)
#   BENCH_PROFILE=1   also profile Caddy (CPU and allocations, through the
#                     admin endpoint's /debug/pprof/) during an extra run of
#                     64 flows at 0 ms against each guarded site, and write
#                     `go tool pprof -top` views to top.txt beside them
#   BENCH_PROFILE_DIR where the profiles go (default out/bench-profile)
#   BENCH_QUICK=1     short runs, to check the script itself (numbers are noise)
#   BENCH_MILLION=N   also run N payment flows against a fourth site (off by
#                     default) and add its table to the report
#   BENCH_MILLION_EVERY     one row every this many flows (default N/20)
#   BENCH_MILLION_RETENTION that site's pi_guard retention (default 2m; a Go
#                     duration, such as 90s or 5m)
#   BENCH_MILLION_STORAGE   that site's storage root (default: a directory in
#                     the temporary directory, on disk)
#   BENCH_BEFORE=REV  also build Caddy from this git revision (a commit,
#                     branch or tag, such as main or HEAD~3) and compare the
#                     guard's own cost per payment of that build ("before")
#                     with the working tree's ("after"): step 7 above, and its
#                     table in the report
#   BENCH_BEFORE_ROUNDS     rounds of that comparison (default 6, 2 with
#                     BENCH_QUICK); each round runs 16 and 64 flows for the
#                     payments runs' duration against each build
#   BENCH_ONLY_BEFORE_AFTER=1  run only what BENCH_BEFORE's table needs (the
#                     Go floor at 0 ms, the passthrough and the rounds) and
#                     write a report of just that (needs BENCH_BEFORE;
#                     BENCH_TMPFS, BENCH_MILLION and BENCH_PROFILE are ignored)
set -euo pipefail
cd "$(dirname "$0")/.."

GO="${GO:-go}"
base="${BENCH_PORT_BASE:-18400}"
GUARD_PORT=$((base + 1))
PLAIN_PORT=$((base + 2))
ADMIN_PORT=$((base + 3))
UP_PORT=$((base + 4))
PI_PORT=$((base + 5))
TMPFS_PORT=$((base + 6))
NODE_PORT=$((base + 7))
MILLION_PORT=$((base + 8))
GOFLOOR_PORT=$((base + 9))
MILLION="${BENCH_MILLION:-}"
if [[ -n "$MILLION" && ! "$MILLION" =~ ^[1-9][0-9]*$ ]]; then
	echo "bench: BENCH_MILLION must be a number of flows, got '$MILLION'" >&2
	exit 1
fi
MILLION_EVERY="${BENCH_MILLION_EVERY:-$(((${MILLION:-0} + 19) / 20))}"
MILLION_RETENTION="${BENCH_MILLION_RETENTION:-2m}"
PROFILE_DIR="${BENCH_PROFILE_DIR:-out/bench-profile}"
BEFORE="${BENCH_BEFORE:-}"
BEFORE_PORT=$((base + 10))
BEFORE_ADMIN_PORT=$((base + 11))
AFTER_PORT=$((base + 12))
AFTER_ADMIN_PORT=$((base + 13))
case "${BENCH_ONLY_BEFORE_AFTER:-}" in
"" | 0) ONLY_BA="" ;;
1) ONLY_BA=1 ;;
*)
	echo "bench: BENCH_ONLY_BEFORE_AFTER is 1 or unset, got '${BENCH_ONLY_BEFORE_AFTER}'" >&2
	exit 1
	;;
esac
if [[ -n "$ONLY_BA" ]]; then
	if [[ -z "$BEFORE" ]]; then
		echo "bench: BENCH_ONLY_BEFORE_AFTER=1 needs BENCH_BEFORE=<git revision> to compare with" >&2
		exit 1
	fi
	for v in BENCH_MILLION BENCH_PROFILE BENCH_TMPFS; do
		if [[ -n "${!v:-}" ]]; then echo "bench: $v is ignored with BENCH_ONLY_BEFORE_AFTER=1" >&2; fi
	done
	MILLION=""
	OUT="${BENCH_OUT:-out/bench-before-after.md}"
else
	OUT="${BENCH_OUT:-docs/benchmarks.md}"
fi

if [[ "${BENCH_QUICK:-}" == 1 ]]; then
	PT_FLAGS=(-rounds 2 -round 500ms -warmup 250ms)
	PAY_FLAGS=(-duration 1s -warmup 250ms)
	BENCHTIME=100ms
	BA_ROUNDS="${BENCH_BEFORE_ROUNDS:-2}"
else
	PT_FLAGS=(-rounds 20 -round 1s -warmup 1s -conns 32)
	PAY_FLAGS=(-duration 8s -warmup 1s)
	BENCHTIME=1s
	BA_ROUNDS="${BENCH_BEFORE_ROUNDS:-6}"
fi
if [[ ! "$BA_ROUNDS" =~ ^[1-9][0-9]*$ ]]; then
	echo "bench: BENCH_BEFORE_ROUNDS must be a number of rounds, got '$BA_ROUNDS'" >&2
	exit 1
fi

# The two builds of BENCH_BEFORE's comparison, as the report names them: the
# revision's short hash (with the name it was given), and the working tree's.
after_label="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git status --porcelain 2>/dev/null)" ]]; then after_label="$after_label (with uncommitted changes)"; fi
before_commit="" before_label=""
if [[ -n "$BEFORE" ]]; then
	if ! before_commit="$(git rev-parse --verify --quiet "${BEFORE}^{commit}")"; then
		echo "bench: BENCH_BEFORE=$BEFORE is not a revision of this repository" >&2
		exit 1
	fi
	if ! git cat-file -e "${before_commit}:caddy/main.go" 2>/dev/null; then
		echo "bench: BENCH_BEFORE=$BEFORE has no ./caddy to build Caddy from" >&2
		exit 1
	fi
	before_label="$(git rev-parse --short "$before_commit")"
	if [[ "$before_commit" != "$BEFORE"* ]]; then before_label="$before_label ($BEFORE)"; fi
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/piguard-bench.XXXXXX")"
tmpfs_dir=""
tmpfs="${BENCH_TMPFS:-/dev/shm}"
if [[ -z "$ONLY_BA" && "$tmpfs" != off && -d "$tmpfs" && -w "$tmpfs" && "$(df -T "$tmpfs" 2>/dev/null | awk 'NR==2 {print $2}')" == tmpfs ]]; then
	tmpfs_dir="$(mktemp -d "$tmpfs/piguard-bench.XXXXXX")"
fi
ba_storage=""
pids=()
cleanup() {
	local status=$?
	trap - INT TERM EXIT
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	if [[ -n "$ba_storage" ]]; then rm -rf "$ba_storage"; fi
	rm -rf "$work"
	if [[ -n "$tmpfs_dir" ]]; then rm -rf "$tmpfs_dir"; fi
	exit "$status"
}
trap cleanup INT TERM EXIT

say() { printf '\n== %s\n' "$*" >&2; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ports=("$GUARD_PORT" "$PLAIN_PORT" "$ADMIN_PORT" "$UP_PORT" "$PI_PORT" "$GOFLOOR_PORT")
if [[ -z "$ONLY_BA" ]]; then ports+=("$TMPFS_PORT" "$NODE_PORT"); fi
if [[ -n "$MILLION" ]]; then ports+=("$MILLION_PORT"); fi
if [[ -n "$BEFORE" ]]; then ports+=("$BEFORE_PORT" "$BEFORE_ADMIN_PORT" "$AFTER_PORT" "$AFTER_ADMIN_PORT"); fi
for p in "${ports[@]}"; do
	if ! port_free "$p"; then
		echo "bench: port 127.0.0.1:$p is in use; set BENCH_PORT_BASE to another base" >&2
		exit 1
	fi
done

wait_for() { # url [pid]
	for _ in $(seq 1 150); do
		if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
		if [[ -n "${2:-}" ]] && ! kill -0 "$2" 2>/dev/null; then break; fi
		sleep 0.1
	done
	echo "bench: did not come up: $1" >&2
	return 1
}

load_start="$(cut -d' ' -f1-3 /proc/loadavg)"

say "building"
mkdir -p bin
"$GO" build -o bin/caddy ./caddy
"$GO" build -o bin/fakepi ./piclient/pitest/cmd/fakepi
"$GO" build -o bin/piguard-bench ./bench/cmd/piguard-bench
if [[ -n "$BEFORE" ]]; then
	# The revision's files, from git (not a worktree: nothing to undo in the
	# repository if this script is killed), and Caddy built from them.
	say "building Caddy from $before_label"
	mkdir -p "$work/before"
	git archive "$before_commit" | tar -x -C "$work/before"
	(cd "$work/before" && "$GO" build -o "$work/caddy-before" ./caddy)
	caddy_module='github.com/caddyserver/caddy/v2'
	before_caddy="$(cd "$work/before" && "$GO" list -m -f '{{.Version}}' "$caddy_module" 2>/dev/null || true)"
	after_caddy="$("$GO" list -m -f '{{.Version}}' "$caddy_module" 2>/dev/null || true)"
fi
if [[ -z "$ONLY_BA" ]]; then
	(cd bench/node-baseline && npm ci --no-audit --no-fund --loglevel=error)

	say "Go micro-benchmarks (go test -bench, benchtime $BENCHTIME)"
	"$GO" test -run '^$' -bench . -benchmem -benchtime "$BENCHTIME" -count 1 . ./verify | tee "$work/micro.txt"
fi

# --- the servers ---------------------------------------------------------
storage="${BENCH_STORAGE:-$work/storage}"
mkdir -p "$storage"
fs="$(df -T "$storage" 2>/dev/null | awk 'NR==2 {print $2}')"
# ext4 without a journal does not reuse an inode freed in the last minute or
# more: every file made passes over the recent removals, which weighs on a
# build that removes a file per payment (see docs/benchmarks.md, sixth pass).
if [[ "$fs" == ext4 ]]; then
	dev="$(readlink -f "$(df "$storage" 2>/dev/null | awk 'NR==2 {print $1}')")"
	if [[ -d /proc/fs/jbd2 ]] && ! compgen -G "/proc/fs/jbd2/$(basename "$dev")-*" >/dev/null; then
		fs="ext4 without a journal"
	fi
fi
export XDG_DATA_HOME="$work/xdg-data" XDG_CONFIG_HOME="$work/xdg-config"
PI_GUARD_SIGNING_KEY="$(head -c 48 /dev/urandom | base64 | tr -d '\n')"
export PI_GUARD_SIGNING_KEY
log="$work/caddy.log"
# global_options <Caddyfile> <admin port> <storage root> <log file>: starts a
# Caddyfile with its global options.
global_options() {
	cat >"$1" <<EOF
{
	admin 127.0.0.1:${2}
	persist_config off
	auto_https off
	storage file_system {
		root ${3}
	}
	log {
		output file ${4}
		format json
		level INFO
	}
}

EOF
}
# guard_site <Caddyfile> <comment> <port> [lines for pi_guard]: a site with
# pi_guard and reverse_proxy in front of the upstream, appended to the
# Caddyfile.
guard_site() {
	local file="$1" comment="$2" port="$3" extra="${4:-}"
	cat >>"$file" <<EOF

# ${comment}
http://127.0.0.1:${port} {
	pi_guard {
		api_key pitest-api-key
		api_url http://127.0.0.1:${PI_PORT}/v2
		network "Pi Testnet"
		signing_key {env.PI_GUARD_SIGNING_KEY}
		lookup_rate 1000000
		lookup_rate_per_client 1000000
		redeliver_to http://127.0.0.1:${UP_PORT}${extra:+
${extra}}
	}
	reverse_proxy 127.0.0.1:${UP_PORT}
}
EOF
}

global_options "$work/Caddyfile" "$ADMIN_PORT" "$storage" "$log"
guard_site "$work/Caddyfile" "pi_guard + reverse_proxy" "$GUARD_PORT"
cat >>"$work/Caddyfile" <<EOF

# reverse_proxy alone, in front of the same upstream
http://127.0.0.1:${PLAIN_PORT} {
	reverse_proxy 127.0.0.1:${UP_PORT}
}
EOF
if [[ -n "$tmpfs_dir" ]]; then
	guard_site "$work/Caddyfile" "pi_guard + reverse_proxy with the guard's records on a tmpfs" "$TMPFS_PORT" "		storage file_system {
			root ${tmpfs_dir}
		}"
fi

million_storage=""
if [[ -n "$MILLION" ]]; then
	million_storage="${BENCH_MILLION_STORAGE:-$work/million-storage}"
	mkdir -p "$million_storage"
	guard_site "$work/Caddyfile" "pi_guard + reverse_proxy with a short retention and its own storage, for the million-payment run" "$MILLION_PORT" "		retention ${MILLION_RETENTION}
		storage file_system {
			root ${million_storage}
		}"
fi

# BENCH_BEFORE: one Caddy per build, each with the same one guard site as the
# first above and a storage of its own inside Caddy's (same file system),
# removed on exit.
if [[ -n "$BEFORE" ]]; then
	ba_storage="$(mktemp -d "$storage/piguard-bench-before-after.XXXXXX")"
	# On ext4, +T has the allocator put before/ and after/ in different block
	# groups: without a journal, ext4 passes over inodes deleted in the last
	# minutes whenever it allocates one, so the before build's deleted owed
	# files (one per payment) would slow every file the after build creates
	# in the same group (ignored where chattr or +T is not there).
	chattr +T "$ba_storage" 2>/dev/null || true
	for build in before after; do
		if [[ "$build" == before ]]; then ba_admin="$BEFORE_ADMIN_PORT" ba_port="$BEFORE_PORT"; else ba_admin="$AFTER_ADMIN_PORT" ba_port="$AFTER_PORT"; fi
		mkdir -p "$ba_storage/$build"
		global_options "$work/Caddyfile-$build" "$ba_admin" "$ba_storage/$build" "$work/caddy-$build.log"
		guard_site "$work/Caddyfile-$build" "pi_guard + reverse_proxy, the $build build" "$ba_port"
	done
fi

say "starting the upstream, the fake Pi and Caddy on 127.0.0.1:${base}+"
bin/piguard-bench upstream -addr "127.0.0.1:${UP_PORT}" 2>"$work/upstream.err" &
up_pid=$!
pids+=("$up_pid")
bin/fakepi -addr "127.0.0.1:${PI_PORT}" -api-key pitest-api-key -network "Pi Testnet" >"$work/fakepi.out" 2>&1 &
pi_pid=$!
pids+=("$pi_pid")
wait_for "http://127.0.0.1:${UP_PORT}/" "$up_pid"
wait_for "http://127.0.0.1:${PI_PORT}/control/calls" "$pi_pid"
if [[ -z "$ONLY_BA" ]]; then
	PI_API_URL="http://127.0.0.1:${PI_PORT}/v2" PI_API_KEY=pitest-api-key ADDR="127.0.0.1:${NODE_PORT}" \
		node bench/node-baseline/server.js >"$work/node.out" 2>&1 &
	node_pid=$!
	pids+=("$node_pid")
	if ! wait_for "http://127.0.0.1:${NODE_PORT}/hello" "$node_pid"; then
		cat "$work/node.out" >&2
		exit 1
	fi
fi
bin/piguard-bench gobaseline -addr "127.0.0.1:${GOFLOOR_PORT}" -pi-url "http://127.0.0.1:${PI_PORT}/v2" -api-key pitest-api-key \
	>"$work/gofloor.out" 2>&1 &
gofloor_pid=$!
pids+=("$gofloor_pid")
if ! wait_for "http://127.0.0.1:${GOFLOOR_PORT}/hello" "$gofloor_pid"; then
	cat "$work/gofloor.out" >&2
	exit 1
fi
bin/caddy run --adapter caddyfile --config "$work/Caddyfile" >"$work/caddy.out" 2>&1 &
caddy_pid=$!
pids+=("$caddy_pid")
if ! wait_for "http://127.0.0.1:${PLAIN_PORT}/hello" "$caddy_pid" || ! wait_for "http://127.0.0.1:${GUARD_PORT}/hello" "$caddy_pid"; then
	cat "$work/caddy.out" >&2
	exit 1
fi
if [[ -n "$BEFORE" ]]; then
	"$work/caddy-before" run --adapter caddyfile --config "$work/Caddyfile-before" >"$work/caddy-before.out" 2>&1 &
	before_pid=$!
	pids+=("$before_pid")
	bin/caddy run --adapter caddyfile --config "$work/Caddyfile-after" >"$work/caddy-after.out" 2>&1 &
	after_pid=$!
	pids+=("$after_pid")
	for build in before after; do
		if [[ "$build" == before ]]; then ba_pid="$before_pid" ba_port="$BEFORE_PORT"; else ba_pid="$after_pid" ba_port="$AFTER_PORT"; fi
		if ! wait_for "http://127.0.0.1:${ba_port}/hello" "$ba_pid"; then
			cat "$work/caddy-$build.out" >&2
			exit 1
		fi
	done
fi

if [[ -z "$ONLY_BA" ]]; then
	# The guard and the Node baseline first, while both are fresh (idle RSS).
	say "payment flows against the fake Pi"
	bin/piguard-bench payments -guard "http://127.0.0.1:${GUARD_PORT}" -fakepi "http://127.0.0.1:${PI_PORT}" \
		-log "$log" -pid "$caddy_pid" -app-pid "$up_pid" -pi-pid "$pi_pid" -name guard -summary "$work/guard.json" \
		-concurrency 1,16,64 -latency 0,50 "${PAY_FLAGS[@]}" | tee "$work/payments.md"

	say "payment flows against the Node/Express baseline"
	bin/piguard-bench payments -guard "http://127.0.0.1:${NODE_PORT}" -fakepi "http://127.0.0.1:${PI_PORT}" \
		-pid "$node_pid" -pi-pid "$pi_pid" -name node -summary "$work/node.json" -title "Node/Express baseline" \
		-concurrency 1,16,64 -latency 0,50 "${PAY_FLAGS[@]}" | tee "$work/node.md"
	floor_runs=(-concurrency 1,16,64 -latency 0,50)
else
	floor_runs=(-concurrency 16,64 -latency 0)
fi

say "payment flows against the Go floor (the Node baseline's job in plain Go)"
bin/piguard-bench payments -guard "http://127.0.0.1:${GOFLOOR_PORT}" -fakepi "http://127.0.0.1:${PI_PORT}" \
	-pid "$gofloor_pid" -pi-pid "$pi_pid" -name gofloor -summary "$work/gofloor.json" -title "Go floor (plain Go, no Caddy)" \
	"${floor_runs[@]}" "${PAY_FLAGS[@]}" | tee "$work/gofloor.md"

: >"$work/tmpfs.md"
tmpfs_summary=()
if [[ -n "$tmpfs_dir" ]]; then
	say "payment flows at 0 ms with the guard's records on tmpfs"
	bin/piguard-bench payments -guard "http://127.0.0.1:${TMPFS_PORT}" -fakepi "http://127.0.0.1:${PI_PORT}" \
		-log "$log" -pid "$caddy_pid" -app-pid "$up_pid" -pi-pid "$pi_pid" -name tmpfs -summary "$work/tmpfs.json" \
		-concurrency 1,16,64 -latency 0 -title "records on tmpfs" "${PAY_FLAGS[@]}" | tee "$work/tmpfs.md"
	tmpfs_summary=(-tmpfs "$work/tmpfs.json")
fi

if [[ -z "$ONLY_BA" ]]; then
	say "records on disk"
	# What the records of the run take on disk: the segments (log/, each
	# payment's line of the highest version counted once), or with the files
	# layout the delivered ones in payments/ and the owed ones in owed/ (few:
	# delivery is immediate); not those of BENCH_BEFORE's Caddys, whose
	# storage is inside this one.
	rec_dir="$(find "$storage" ${ba_storage:+-path "$ba_storage" -prune -o} -type d \( -name payments -o -name log \) -path '*pi_guard*' -print | head -n1)"
	rec_count=0 rec_bytes=0 rec_alloc=0 owed_count=0 rec_where="payments/"
	if [[ "$rec_dir" == */log ]]; then
		rec_where="segments (log/)"
		# Each payment's current line: the highest version (in file order on a tie).
		read -r rec_count owed_count rec_bytes < <(cat "$rec_dir"/*.seg 2>/dev/null | tr -d '\000' | awk '
			match($0, /"payment_id":"[^"]*"/) {
				id = substr($0, RSTART + 14, RLENGTH - 15); v = 0
				if (match($0, /"version":[0-9]+/)) v = substr($0, RSTART + 10, RLENGTH - 10) + 0
				if (!(id in ver) || v >= ver[id]) { ver[id] = v; len[id] = length($0) + 1; owed[id] = ($0 ~ /"state":"(pending|exhausted)"/) }
			}
			END { for (id in ver) { if (owed[id]) o++; else { d++; b += len[id] } } print d+0, o+0, b+0 }')
		rec_alloc="$(du -sk "$rec_dir" | cut -f1)"
	elif [[ -n "$rec_dir" ]]; then
		rec_count="$(find "$rec_dir" -name '*.json' | wc -l)"
		rec_bytes="$(find "$rec_dir" -name '*.json' -printf '%s\n' | awk '{s+=$1} END {print s+0}')"
		rec_alloc="$(du -sk "$rec_dir" | cut -f1)"
		owed_count="$(find "$(dirname "$rec_dir")/owed" -name '*.json' 2>/dev/null | wc -l)"
	fi
	caddy_rss_end="$(awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$caddy_pid/status")"
	{
		echo "### Records on disk"
		echo
		if [[ "$rec_count" -gt 0 ]]; then
			echo "After the runs above: ${rec_count} delivered records in ${rec_where} (${owed_count} still owed), $((rec_bytes / rec_count)) bytes of JSON each on average, $(( rec_alloc * 1024 / rec_count )) bytes allocated on disk each (\`du\`: blocks, the directory included, and in segments the earlier versions not compacted yet). A million delivered payments would take about $(( rec_alloc * 1024 / rec_count * 1000000 / 1048576 )) MiB (extrapolated from these ${rec_count}, not measured); \`retention\` (default 30 days) bounds the set to the payments of that window. Caddy's RSS after the runs: ${caddy_rss_end} MiB."
		else
			echo "No delivered records found under $storage."
		fi
		echo
	} >"$work/records.md"
	cat "$work/records.md"

	say "the guard against the Node baseline and the Go floor"
	bin/piguard-bench compare -guard "$work/guard.json" -node "$work/node.json" -gofloor "$work/gofloor.json" "${tmpfs_summary[@]}" \
		-sync-dir "$storage" | tee "$work/compare.md"
fi

say "passthrough: pi_guard + reverse_proxy vs reverse_proxy alone"
bin/piguard-bench passthrough -guard "http://127.0.0.1:${GUARD_PORT}" -plain "http://127.0.0.1:${PLAIN_PORT}" -pid "$caddy_pid" \
	-summary "$work/passthrough.json" "${PT_FLAGS[@]}" | tee "$work/passthrough.md"

: >"$work/beforeafter.md"
: >"$work/proxyflows.md"
if [[ -n "$BEFORE" ]]; then
	# What proxying a flow's two requests costs Caddy: the same two posts,
	# bodies and all, sent to reverse_proxy alone (made-up ids: nobody asks
	# Pi), at the flows in flight of the rounds.
	say "the flow's two posts through reverse_proxy alone"
	bin/piguard-bench payments -plain -guard "http://127.0.0.1:${PLAIN_PORT}" -pid "$caddy_pid" -app-pid "$up_pid" \
		-name proxy -summary "$work/proxyflows.json" -title "reverse_proxy alone, the flow's two posts" \
		-concurrency 16,64 -latency 0 "${PAY_FLAGS[@]}" | tee "$work/proxyflows.md"
	# Rounds of the same payments run against each build, alternating which
	# goes first (before, after; after, before; ...), so that the machine's
	# drift falls on both alike, each followed by the Go floor and the two
	# posts through reverse_proxy alone once more (what is taken off both
	# builds moved by up to 0.09 ms per flow between runs measured once); then
	# the table, with the medians of those and the passthrough's CPU per
	# request taken off.
	round_args=(-gofloor "$work/gofloor.json" -proxyflows "$work/proxyflows.json")
	for i in $(seq 1 "$BA_ROUNDS"); do
		if ((i % 2 == 1)); then order=(before after); else order=(after before); fi
		for build in "${order[@]}"; do
			if [[ "$build" == before ]]; then ba_pid="$before_pid" ba_port="$BEFORE_PORT" rev="$before_label"; else ba_pid="$after_pid" ba_port="$AFTER_PORT" rev="$after_label"; fi
			say "before and after, round $i of $BA_ROUNDS: payment flows at 0 ms against the $build build ($rev)"
			bin/piguard-bench payments -guard "http://127.0.0.1:${ba_port}" -fakepi "http://127.0.0.1:${PI_PORT}" \
				-pid "$ba_pid" -app-pid "$up_pid" -pi-pid "$pi_pid" -name "$build" -summary "$work/ba-$build-$i.json" \
				-title "$build build ($rev), round $i" -concurrency 16,64 -latency 0 "${PAY_FLAGS[@]}" >"$work/ba-$build-$i.md"
		done
		say "before and after, round $i of $BA_ROUNDS: the Go floor and the two posts through reverse_proxy alone"
		bin/piguard-bench payments -guard "http://127.0.0.1:${GOFLOOR_PORT}" -fakepi "http://127.0.0.1:${PI_PORT}" \
			-pid "$gofloor_pid" -pi-pid "$pi_pid" -name gofloor -summary "$work/gofloor-$i.json" -title "Go floor, round $i" \
			-concurrency 16,64 -latency 0 "${PAY_FLAGS[@]}" >"$work/gofloor-$i.md"
		bin/piguard-bench payments -plain -guard "http://127.0.0.1:${PLAIN_PORT}" -pid "$caddy_pid" -app-pid "$up_pid" \
			-name proxy -summary "$work/proxyflows-$i.json" -title "reverse_proxy alone, the flow's two posts, round $i" \
			-concurrency 16,64 -latency 0 "${PAY_FLAGS[@]}" >"$work/proxyflows-$i.md"
		round_args+=(-round "$work/ba-${order[0]}-$i.json,$work/ba-${order[1]}-$i.json")
		round_args+=(-gofloor "$work/gofloor-$i.json" -proxyflows "$work/proxyflows-$i.json")
	done
	say "the guard's own cost per payment, before and after"
	bin/piguard-bench beforeafter "${round_args[@]}" -passthrough "$work/passthrough.json" \
		-before-rev "$before_label" -after-rev "$after_label" -before-caddy "$before_caddy" -after-caddy "$after_caddy" |
		tee "$work/beforeafter.md"
	if [[ "$fs" == "ext4 without a journal" ]]; then
		printf '\n%s\n' "- The storage is on ext4 without a journal, which charges a build for the files it removed in the last minutes on every file it makes: a build that removes a file per payment pays more here than on a journaled file system, and its rounds vary more. For figures that hold elsewhere, run the comparison again with BENCH_STORAGE on a journaled file system (docs/benchmarks.md, sixth pass)." |
			tee -a "$work/beforeafter.md"
	fi
fi
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"

# profile <site port> <directory>: CPU and allocation profiles of Caddy during
# 64 flows at 0 ms against one site, and their `go tool pprof -top`.
profile() {
	local port="$1" dir="$2"
	mkdir -p "$dir"
	bin/piguard-bench payments -guard "http://127.0.0.1:${port}" -fakepi "http://127.0.0.1:${PI_PORT}" \
		-log "$log" -concurrency 64 -latency 0 -duration 12s -warmup 1s \
		-admin "http://127.0.0.1:${ADMIN_PORT}" -profile-dir "$dir" >"$dir/run.md"
	cp bin/caddy "$dir/caddy"
	local guard_re='caddy-pi-guard\.\(\*Handler\)\.ServeHTTP$'
	local cpu=("$dir/caddy" "$dir/cpu-0ms-64.pprof")
	local allocs=(-sample_index alloc_space -base "$dir/allocs-before-0ms-64.pprof" "$dir/caddy" "$dir/allocs-after-0ms-64.pprof")
	{
		echo "### CPU, whole Caddy process"
		"$GO" tool pprof -top -nodecount 40 "${cpu[@]}" 2>/dev/null
		echo "### CPU, cumulative, under pi_guard's ServeHTTP, without the forwarding (reverse_proxy)"
		"$GO" tool pprof -top -cum -nodecount 80 -focus "$guard_re" -ignore reverseproxy "${cpu[@]}" 2>/dev/null
		echo "### CPU, flat, under pi_guard's ServeHTTP, without the forwarding (reverse_proxy)"
		"$GO" tool pprof -top -nodecount 30 -focus "$guard_re" -ignore reverseproxy "${cpu[@]}" 2>/dev/null
		echo "### Allocated bytes during the run, whole process"
		"$GO" tool pprof -top -nodecount 40 "${allocs[@]}" 2>/dev/null
		echo "### Allocated bytes during the run, cumulative, under pi_guard's ServeHTTP, without the forwarding"
		"$GO" tool pprof -top -cum -nodecount 80 -focus "$guard_re" -ignore reverseproxy "${allocs[@]}" 2>/dev/null
	} >"$dir/top.txt"
	echo "bench: profiles and pprof -top in $dir (top.txt)" >&2
}

if [[ -z "$ONLY_BA" && "${BENCH_PROFILE:-}" == 1 ]]; then
	say "profiling Caddy during 64 flows at 0 ms Pi latency (profiles in $PROFILE_DIR)"
	rm -rf "$PROFILE_DIR"
	profile "$GUARD_PORT" "$PROFILE_DIR/disk"
	if [[ -n "$tmpfs_dir" ]]; then
		profile "$TMPFS_PORT" "$PROFILE_DIR/tmpfs"
	fi
fi

: >"$work/million.md"
if [[ -n "$MILLION" ]]; then
	say "$MILLION payment flows at 64 in flight, 0 ms, against the fourth site (retention $MILLION_RETENTION)"
	bin/piguard-bench million -guard "http://127.0.0.1:${MILLION_PORT}" -fakepi "http://127.0.0.1:${PI_PORT}" \
		-flows "$MILLION" -every "$MILLION_EVERY" -concurrency 64 -pid "$caddy_pid" -pi-pid "$pi_pid" \
		-admin "http://127.0.0.1:${ADMIN_PORT}" -storage "$million_storage" -retention "$MILLION_RETENTION" \
		| tee "$work/million.md"
	million_fs="$(df -T "$million_storage" 2>/dev/null | awk 'NR==2 {print $2}')"
fi

# --- the report ----------------------------------------------------------
say "writing $OUT"
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
mem="$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git status --porcelain 2>/dev/null)" ]]; then commit="$commit (with uncommitted changes)"; fi
mkdir -p "$(dirname "$OUT")"
# Hand-written notes below the marker line survive a new run (they are about
# a run, so say which one).
marker='<!-- notes: everything below this line is kept by make bench -->'
notes=""
if [[ -f "$OUT" ]] && grep -qxF "$marker" "$OUT"; then
	notes="$(awk -v m="$marker" 'keep {print} $0 == m {keep = 1}' "$OUT")"
fi
machine_section() {
	cat <<EOF
## Machine

| | |
|---|---|
| Date | $(date -u '+%Y-%m-%d %H:%M UTC') |
| Commit | ${commit} |
| CPU | ${cpu} |
| nproc | $(nproc) |
| Memory | ${mem} |
| Kernel | $(uname -sr) |
| Go | $("$GO" env GOVERSION) |
| Caddy storage | file_system on ${fs:-unknown} (records in segments: owed ones appended and synced before forwarding, one fdatasync per batch; delivered ones appended, not synced; locks are flock stripes) |
| Load average (1, 5, 15 min) | ${load_start} at the start, ${load_end} after the last run |
EOF
}
# floor_and_passthrough_sections: the Go floor's and the passthrough's
# tables, in both reports.
floor_and_passthrough_sections() {
	cat <<'EOF'

## The Go floor

`piguard-bench gobaseline` (bench/cmd/piguard-bench/gobaseline.go): the Node baseline's routes,
Pi calls, answers and status codes in plain Go, without Caddy: a net/http server, a keep-alive
http.Client, encoding/json, nothing durable, no log line per request. What it spends per flow is
the least the five HTTP exchanges of a flow (2 requests served, 3 Pi calls) cost in Go.

EOF
	cat "$work/gofloor.md"
	cat <<'EOF'

## Passthrough

EOF
	cat "$work/passthrough.md"
}
# before_after_section: the table of BENCH_BEFORE, when there is one.
before_after_section() {
	if [[ -s "$work/beforeafter.md" ]]; then
		printf '\n%s\n\n' "## Before and after: the guard's own cost per payment"
		cat "$work/beforeafter.md"
		if [[ -s "$work/proxyflows.md" ]]; then
			printf '\n%s\n\n' "The flow's two posts through reverse_proxy alone (\`piguard-bench payments -plain\`), whose CPU per flow is \`2 posts\` above:"
			cat "$work/proxyflows.md"
		fi
	fi
}
{
	if [[ -n "$ONLY_BA" ]]; then
		cat <<EOF
# Benchmarks: before and after

Written by \`BENCH_BEFORE=<revision> BENCH_ONLY_BEFORE_AFTER=1 make bench\` (scripts/bench.sh): only
what the guard's own cost per payment of two builds needs (the Go floor, the passthrough and the
rounds against both builds; \`make bench\` alone writes the whole report, docs/benchmarks.md).
Numbers from one run on one machine: compare runs on the same machine only.

EOF
		machine_section
		cat <<'EOF'

Everything runs on this one machine over loopback: the load generator, the Caddys, the upstream and
the fake Pi share its CPUs (and any other load on it, see the load average). Each build runs in a
Caddy process of its own with one guard site; a third Caddy, of the build under test, serves the
passthrough's two sites. Their logs are JSON in files.
EOF
		before_after_section
		floor_and_passthrough_sections
	else
		cat <<EOF
# Benchmarks

Written by \`make bench\` (scripts/bench.sh); run it again to refresh this file. Numbers from one
run on one machine: compare runs on the same machine only.

EOF
		machine_section
		cat <<EOF

Everything runs on this one machine over loopback: the load generator, Caddy, the upstream and
the fake Pi share its CPUs (and any other load on it, see the load average), so throughput figures
are lower bounds for Caddy alone. Caddy runs all sites in one process; its log is JSON in a file.
Times measured inside Caddy are wall-clock: when the CPUs are saturated (64 flows in flight) they
include the time a request waits for a CPU, not only the work the guard does.

## Cost per payment: the guard against a Node/Express backend

EOF
		cat "$work/compare.md"
		echo
		cat "$work/records.md"
		before_after_section
		cat <<'EOF'

## Payment flows

The guard's site (`pi_guard` + `reverse_proxy`, records in Caddy's file storage), with the fake Pi
platform answering every API call after the added latency (`POST /control/latency`). The client
latencies include everything; the guard's own log line per request separates its time from Pi's.

EOF
		cat "$work/payments.md"
		if [[ -s "$work/tmpfs.md" ]]; then
			cat <<'EOF'

## Payment flows with the records on tmpfs

The same flows at 0 ms against a third site whose pi_guard keeps its records and locks on a tmpfs
(`storage file_system` in /dev/shm): what remains is the guard's CPU time and waiting for a CPU,
without the cost of syncing files to disk.

EOF
			cat "$work/tmpfs.md"
		fi
		cat <<'EOF'

## The Node/Express baseline

bench/node-baseline/server.js: the approve and complete routes of Pi's reference backend
(pi-apps/platform-demo), without its session and database, calling the same fake Pi through axios
with a keep-alive agent. It writes nothing anywhere.

EOF
		cat "$work/node.md"
		floor_and_passthrough_sections
		if [[ -s "$work/million.md" ]]; then
			cat <<EOF

## A million payments: memory and records on disk

${MILLION} whole payment flows at 64 in flight with 0 ms of Pi latency, against a fourth site
whose pi_guard has \`retention ${MILLION_RETENTION}\` and its own storage (file_system on
${million_fs:-unknown}). It ran after everything above, in the same Caddy, with the same fake Pi.
The fake Pi keeps every payment it ever made in memory (about 2.5 KiB of RSS each), so its RSS
grows with the run: that is the fake's cost, not Caddy's.

EOF
			cat "$work/million.md"
		fi
		cat <<'EOF'

## Micro-benchmarks

`go test -run '^$' -bench . -benchmem . ./verify`: the callback body parse, record write and read
and storage lock (file storage in a temporary directory), the guard on a passthrough request, a
whole payment in process against the fake Pi (bench_test.go), and token signing and verification
(verify/bench_test.go).

```
EOF
		grep -E '^(goos|goarch|pkg|cpu|Benchmark)' "$work/micro.txt"
		echo '```'
	fi
	printf '\n%s\n' "$marker"
	if [[ -n "$notes" ]]; then printf '%s\n' "$notes"; fi
} >"$OUT"
echo >&2
echo "bench: wrote $OUT" >&2
