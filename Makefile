# caddy-pi-guard: see README.md.
GO      ?= go
BIN     := bin
RACE    ?= -race
# xcaddy, installed by make setup (GOBIN=bin/tools) unless XCADDY names another
XCADDY  ?= $(CURDIR)/bin/tools/xcaddy

.PHONY: all build run setup test test-go test-node test-python test-e2e test-xcaddy vet lint fmt-check fuzz clean

all: build

## build: Caddy with the pi_guard module, the fake Pi platform and the example app, into bin/
build:
	$(GO) build -o $(BIN)/caddy ./caddy
	$(GO) build -o $(BIN)/fakepi ./piclient/pitest/cmd/fakepi
	$(GO) build -o $(BIN)/goapp ./examples/goapp

## run: the whole flow on this machine, no keys needed (fake Pi + example app + Caddy)
run: build
	./scripts/run.sh

## test: every test: gofmt, vet, staticcheck, Go tests with the race detector, the Node and Python examples, the demo in a browser
## (setup comes first, so what is missing fails in seconds; make runs prerequisites in order)
test: setup fmt-check vet lint test-go test-node test-python test-e2e test-xcaddy

## setup: check what make test needs; install xcaddy into bin/tools (no root needed); print the one
## apt-get line for what needs root (Chromium, PyJWT, Node.js) and fail when something is missing
setup:
	GO=$(GO) XCADDY=$(XCADDY) ./scripts/setup.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# staticcheck, the Go linter of record, at a fixed version (a tool: go.mod does not list it)
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint:
	$(GO) run $(STATICCHECK) ./...

# scripts/gotest.sh: go test, with the failures repeated at the end of its output
test-go:
	GO=$(GO) ./scripts/gotest.sh $(RACE) -count=1 -timeout 15m ./...
	# every benchmark once, so that make bench cannot rot unnoticed
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x ./...

# the verifier package (packages/node), then the example app that installs it
test-node:
	cd packages/node && npm ci --no-audit --no-fund --loglevel=error && npm test
	cd examples/node && npm ci --no-audit --no-fund --loglevel=error && npm test

# The PyJWT lines of docs/header.md run with the first interpreter that has PyJWT
# (.ci/run installs Debian's python3-jwt when none has it).
PYJWT_PYTHON ?= $(shell for p in python3 /usr/bin/python3; do $$p -c 'import jwt' 2>/dev/null && { echo $$p; break; }; done)

# The Flask and Django tests of packages/python run with the first interpreter
# that has both (Debian: python3-flask, python3-django); without one they skip.
FRAMEWORK_PYTHON ?= $(shell for p in python3 /usr/bin/python3; do $$p -c 'import flask, django' 2>/dev/null && { echo $$p; break; }; done)

test-python:
	python3 -m unittest discover -s packages/python/tests -t packages/python -v
	@if [ -z "$(FRAMEWORK_PYTHON)" ]; then echo "Flask/Django tests skipped: no python3 has both (apt-get install python3-flask python3-django)"; \
	elif [ "$(FRAMEWORK_PYTHON)" != python3 ]; then set -x; $(FRAMEWORK_PYTHON) -m unittest discover -s packages/python/tests -t packages/python -p 'test_[fd]*.py' -v; fi
	python3 -m unittest discover -s examples/python -v
	@test -n "$(PYJWT_PYTHON)" || { echo "PyJWT is missing: apt-get install python3-jwt (or pip install PyJWT)"; exit 1; }
	PI_GUARD_REQUIRE_PYJWT=1 $(PYJWT_PYTHON) -m unittest discover -s examples/python -p 'test_pyjwt.py' -v

## test-xcaddy: the README's xcaddy command, exactly, then the module and the
## pi-guard command must be in the binary (xcaddy: installed by make setup)
test-xcaddy:
	@command -v $(XCADDY) >/dev/null || { echo "xcaddy is not installed: run make setup (it installs it into bin/tools)"; exit 1; }
	$(XCADDY) build v2.11.9 --with github.com/caddy-pi-guard/caddy-pi-guard@v0.0.0=. --output bin/caddy
	bin/caddy list-modules | grep -x 'http.handlers.pi_guard'
	bin/caddy list-modules | grep -x 'admin.api.pi_guard'
	bin/caddy list-modules | grep -x 'admin.api.pi_guard_watched'
	bin/caddy help | grep -E '^ +pi-guard '

## test-e2e: the `make run` demo, and the fake Pi SDK on a frontend served from another origin,
## in headless Chromium (/usr/bin/chromium, or CHROMIUM=...); screenshots into out/e2e/
## (UPDATE_DEMO_PNG=1 also refreshes docs/demo.png)
test-e2e: build
	cd e2e && npm ci --no-audit --no-fund --loglevel=error && npm test

## fuzz: run every fuzz target for FUZZTIME each (not part of make test)
FUZZTIME ?= 30s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

## bench: benchmarks (payment flows against a Node/Express baseline, passthrough, Go micro-benchmarks) into docs/benchmarks.md; needs Node.js; not part of make test
## (BENCH_BEFORE=<git revision>: also the guard's own cost per payment of that revision's build against this one;
## with BENCH_ONLY_BEFORE_AFTER=1 only that, in a few minutes, into out/bench-before-after.md; see scripts/bench.sh)
.PHONY: bench
bench:
	./scripts/bench.sh

clean:
	rm -rf $(BIN)
