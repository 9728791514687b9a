# iotpipe: `make run` starts the whole pipeline, `make test` installs what
# the tests need and runs them. Every install step lives here (or in a
# script called from here) and is cached under .cache/.

SHELL      := /bin/bash
GO         ?= go
BIN        := bin/iotpipe
CACHE      := $(CURDIR)/.cache
# Downloads are cached per user, so a fresh clone on the same machine reuses them.
USER_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/iotpipe
APT_PKGS   := mosquitto mosquitto-clients kcat jq
CHDB_LIB   := $(USER_CACHE)/chdb/libchdb.so
FUZZTIME   ?= 2000x
LONGFUZZ   ?= 2m
STATICCHECK_VERSION := v0.8.2
export IOTPIPE_CHDB_LIB ?= $(CHDB_LIB)

.PHONY: all build run test deps deps-apt deps-go deps-chdb vet lint fuzz fuzz-short bench bench-e2e reliability clean help

all: build

help:
	@echo "make run          start the whole pipeline (MQTT :1883, HTTP :8080, log :9092, ClickHouse :9000/:8123) with --dev"
	@echo "make deps         install what tests and run need (Debian packages, Go modules, chDB)"
	@echo "make test         install test dependencies and run the tests (with short fuzzing)"
	@echo "make bench        benchmarks: Go benchmarks, the MQTT side-by-side against Mosquitto, the end-to-end benchmark"
	@echo "make bench-e2e    only the end-to-end benchmark (report in benchmarks/results/REPORT.md)"
	@echo "make fuzz         longer fuzzing of every parser and decoder (LONGFUZZ=$(LONGFUZZ) each)"
	@echo "make reliability  long runs: crash matrix, soak"
	@echo "make lint         go vet + staticcheck"

build:
	$(GO) build -o $(BIN) ./cmd/iotpipe

# --- dependencies -----------------------------------------------------------

deps: deps-apt deps-go deps-chdb

# Debian packages the tests and `make run` use; apt-get only when one is missing.
deps-apt:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

deps-go:
	@$(GO) mod download

# chDB (ClickHouse as a library, npm @chdb/lib-linux-x64-gnu, pinned) for the
# embedded ClickHouse server; .cache/chdb in the repo points at the user cache
# so `./bin/iotpipe run` finds it too.
deps-chdb:
	@sinks/clickhouse/install-chdb.sh $(USER_CACHE)/chdb
	@mkdir -p $(CACHE) && ln -sfn $(USER_CACHE)/chdb $(CACHE)/chdb

# --- run ----------------------------------------------------------------------

run: deps-chdb build
	./$(BIN) run --dev

# --- test ---------------------------------------------------------------------

vet:
	$(GO) vet ./...

test: deps build vet
	$(GO) test -count=1 -timeout 15m ./...
	@$(MAKE) --no-print-directory fuzz-short

# Each fuzz target briefly (FUZZTIME executions after its seed corpus: a count,
# not a duration, so a loaded machine cannot run out of time while the seed
# corpus is still being measured), so every parser and decoder is fuzzed in CI.
fuzz-short:
	@FUZZTIME=$(FUZZTIME) ./benchmarks/fuzz.sh

fuzz:
	@FUZZTIME=$(LONGFUZZ) ./benchmarks/fuzz.sh

lint: vet
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# --- long runs -----------------------------------------------------------------

bench: deps build
	$(GO) test -run '^$$' -bench . -benchtime 1s ./schemas/... ./processors/... ./rulesql/... ./sinks/...
	@if [ -x benchmarks/run-mqtt.sh ]; then IOTPIPE_BIN=$(CURDIR)/$(BIN) benchmarks/run-mqtt.sh; fi
	./$(BIN) bench e2e --out benchmarks/results

# Only the end-to-end benchmark (about 10 minutes on 2 cores): report in
# benchmarks/results/REPORT.md.
bench-e2e: deps build
	./$(BIN) bench e2e --out benchmarks/results

reliability: deps build
	IOTPIPE_RELIABILITY=long $(GO) test -count=1 -timeout 60m -run 'Crash|Kill|Soak|Outage' ./...

clean:
	rm -rf bin
