# workload-ca developer tasks. `make test` is what CI (.ci/run) runs.

GO          ?= go
BIN         ?= bin/ca
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X main.version=$(VERSION)
STATICCHECK_VERSION := v0.8.2
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $(shell $(GO) env GOPATH)/bin/staticcheck)
# The PKCS#11 store needs cgo (crypto11 dlopens the module), so the binary
# links glibc dynamically; see Dockerfile.
# Test flags: every package with -race (about the concurrency in the server,
# key stores and issuance); override with `make test TESTFLAGS=...`.
TESTFLAGS   ?= -race -count=1 -timeout 20m

.PHONY: all build run test test-short bench drills compose-test compose-clean hsm-test lint fmt vet staticcheck fuzz clean

all: lint test build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ca

# The embedded default: SQLite and software keys in ./ca-data, loopback only,
# with the dashboard's local-admin sign-in (it takes effect only with the
# development policy: not when CA_POLICY_FILE is set).
run:
	CA_DASHBOARD_LOCAL_ADMIN=true $(GO) run ./cmd/ca serve

# Every package except the fault drills (internal/drills), which `make
# drills` runs once, after this, in CI.
TEST_PKGS    = $$($(GO) list ./... | grep -v /internal/drills)

test:
	$(GO) test $(TESTFLAGS) $(TEST_PKGS)

# Without -race, for a quick local loop.
test-short:
	$(GO) test -count=1 $(TEST_PKGS)

# Go benchmarks of the pieces, then cmd/ca-load against a real `ca serve` in
# both setups: the embedded default (SQLite + software keys) and production
# (Postgres + SoftHSM); prints every target with its figure, PASS/MISS and the
# server CPU per enrollment, and writes bench-out/report.md and report.json.
# Never part of `make test`.
BENCH_OUT   ?= bench-out
LOADFLAGS   ?=
bench: build
	@mkdir -p $(BENCH_OUT)
	$(GO) test -run '^$$' -bench . -benchmem -timeout 30m $(TEST_PKGS) > $(BENCH_OUT)/gobench.txt 2>&1; \
		st=$$?; cat $(BENCH_OUT)/gobench.txt; exit $$st
	$(GO) run ./cmd/ca-load --ca $(BIN) --out $(BENCH_OUT) --gobench $(BENCH_OUT)/gobench.txt $(LOADFLAGS)

# Fault drills (internal/drills): kill -9, Postgres and SoftHSM outages,
# replicas, clock skew, against the real binary and a private Postgres.
# -v prints each drill's progress; go test's own "ok"/"FAIL" package line
# ends the output. Under CI=true a missing PostgreSQL server binary or SoftHSM
# fails the drills instead of skipping them.
drills:
	$(GO) test -count=1 -timeout 12m -v ./internal/drills/...

# docker-compose.yml and the Dockerfile end to end (.ci/compose-test): build,
# up, enroll from the host, revoke, CRL and OCSP through the published port,
# restart, tear down. docker compose with an engine, else podman-compose;
# images are built locally when no registry answers. Needs root for podman.
compose-test:
	.ci/compose-test

# The images compose-test keeps as caches (localhost/workload-ca-compose/*).
compose-clean:
	@for e in docker podman; do \
		command -v $$e >/dev/null 2>&1 && $$e info >/dev/null 2>&1 || continue; \
		imgs=$$($$e images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/workload-ca-compose/' || true); \
		[ -z "$$imgs" ] || $$e rmi $$imgs; \
	done; true

# The HSM conformance suite on SoftHSM, tpm2-pkcs11 (swtpm + tpm2-abrmd) and
# opencryptoki's software token, installed from Debian's packages and set up
# by .ci/hsm (needs root: apt-get, opencryptoki's pkcsslotd).
hsm-test:
	.ci/hsm

lint: fmt vet staticcheck

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck:
	@if [ ! -x "$(STATICCHECK)" ]; then \
		echo "installing staticcheck $(STATICCHECK_VERSION)"; \
		$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION); \
	fi
	$(STATICCHECK) ./...

# Fuzz targets are added by the packages that parse outside input; each runs
# for FUZZTIME. Lists every Fuzz* function found.
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

clean:
	rm -rf bin
