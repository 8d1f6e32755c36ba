# Yatagarasu — S3 gateway for Envoy. `make help` lists the targets.
GO          ?= go
BIN         := bin
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
BENCHSTAT   := golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
VERSITYGW   := github.com/versity/versitygw/cmd/versitygw@v1.8.0
BENCH_COUNT ?= 6

.PHONY: help build test run bench lint fuzz deps clean e2e-envoy policies chaos loadcmp

help: ## list targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

build: ## build bin/extproc and bin/xds
	$(GO) build -o $(BIN)/extproc ./extproc/cmd/extproc
	$(GO) build -o $(BIN)/xds ./xds/cmd/xds

POLICIES := $(notdir $(wildcard wasm-policies/examples/*))

policies: ## build the example wasm policies into bin/policies/ (GOOS=wasip1 reactors)
	@mkdir -p $(BIN)/policies
	@for p in $(POLICIES); do echo "  $$p"; GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath \
		-o $(BIN)/policies/$$p.wasm ./wasm-policies/examples/$$p || exit 1; done

deps: ## install the test dependencies (versitygw, redis-server, wabt, nginx, wrk) if missing
	@command -v versitygw >/dev/null 2>&1 || test -x "$$($(GO) env GOPATH)/bin/versitygw" || $(GO) install $(VERSITYGW)
	@command -v redis-server >/dev/null 2>&1 || test -x /usr/bin/redis-server || \
		{ apt-get update -qq && apt-get install -y -qq redis-server; }
	@command -v wat2wasm >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wabt; }
	@command -v nginx >/dev/null 2>&1 && command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq nginx wrk; }

test: deps ## run the whole suite under -race (starts versitygw and redis itself)
	$(GO) test -race -count=1 -timeout 30m ./...

chaos: deps ## fault-injection suite: S3/Redis killed, slowed, failing; full/read-only cache disk; kill -9, SIGTERM, 100 reloads
	$(GO) test -race -count=1 -timeout 10m ./internal/chaos/

e2e-envoy: deps ## the e2e suite against real Envoy (needs envoy >= 1.37 on PATH)
	@command -v envoy >/dev/null 2>&1 || { echo "e2e-envoy: SKIPPED: no envoy binary on PATH (the harness run in 'make test' still covers the suite)"; exit 0; }; \
		$(GO) test -race -count=1 -v -run . ./internal/e2e

run: deps ## demo: seeded S3 + xds + extproc + Envoy (or the emulation harness) on :8080
	$(GO) run ./internal/demo

BENCH_PKGS := ./internal/route ./internal/originauth ./extproc ./internal/e2e ./internal/auth \
	./internal/ratelimit ./internal/cache/... ./internal/policy ./internal/s3

bench: deps ## Go benchmarks, summarised with benchstat as ratios within one run, then loadcmp (docs/BENCHMARKS.md)
	@mkdir -p $(BIN)
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCH_COUNT) $(BENCH_PKGS) | tee $(BIN)/bench.txt
	$(GO) run $(BENCHSTAT) -filter '.name:RoundTrip' -col /impl $(BIN)/bench.txt
	$(GO) run $(BENCHSTAT) -filter '.name:CacheHit' -col /impl $(BIN)/bench.txt
	$(GO) run $(BENCHSTAT) -filter '.name:MissPath' -col /path $(BIN)/bench.txt
	$(GO) run $(BENCHSTAT) -filter '.name:ObservabilityOverhead' -col /obs $(BIN)/bench.txt
	$(GO) run $(BENCHSTAT) $(BIN)/bench.txt
	$(MAKE) loadcmp

LOADCMP_FLAGS ?= -duration 10s -threads 2 -conns 32

loadcmp: deps ## ours vs nginx proxy_cache under wrk (same versitygw; needs nginx, wrk) → bin/loadcmp.md
	@command -v nginx >/dev/null 2>&1 && command -v wrk >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq nginx wrk; }
	@mkdir -p $(BIN)
	$(GO) run ./internal/loadcmp $(LOADCMP_FLAGS) -out $(BIN)/loadcmp.md

lint: ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not gofmt-clean:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

fuzz: ## run each fuzz target for FUZZTIME (default 30s)
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $${FUZZTIME:-30s} ./internal/config
	$(GO) test -run '^$$' -fuzz FuzzDecodePath -fuzztime $${FUZZTIME:-30s} ./internal/requestcheck
	$(GO) test -run '^$$' -fuzz FuzzLookup -fuzztime $${FUZZTIME:-30s} ./internal/route
	$(GO) test -run '^$$' -fuzz FuzzInstrumentFuel -fuzztime $${FUZZTIME:-30s} ./internal/policy
	$(GO) test -run '^$$' -fuzz FuzzParseWrk -fuzztime $${FUZZTIME:-30s} ./internal/loadcmp

clean:
	rm -rf $(BIN)
