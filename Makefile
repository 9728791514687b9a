# iotpipe: `make run` starts the whole pipeline, `make test` installs what
# the tests need and runs them. Every install step lives here (or in a
# script called from here) and is cached under .cache/.

SHELL      := /bin/bash
GO         ?= go
BIN        := bin/iotpipe
CACHE      := $(CURDIR)/.cache
# Downloads are cached per user, so a fresh clone on the same machine reuses them.
USER_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/iotpipe
APT_PKGS   := mosquitto mosquitto-clients kcat jq chromium
CHDB_LIB   := $(USER_CACHE)/chdb/libchdb.so
FUZZTIME   ?= 2000x
LONGFUZZ   ?= 2m
STATICCHECK_VERSION := v0.8.2
export IOTPIPE_CHDB_LIB ?= $(CHDB_LIB)

.PHONY: all build run run-dev test deps deps-apt deps-go deps-chdb deps-browser deps-awssdk vet lint fuzz fuzz-short bench bench-e2e reliability clean help

all: build

help:
	@echo "make run          start the whole pipeline (MQTT :1883 with tokens and :8883 with certificates, HTTP 127.0.0.1:8080, log :9092, ClickHouse :9000/:8123)"
	@echo "make run-dev      the same with anonymous devices allowed (--dev: development only)"
	@echo "make deps         install what tests and run need (Debian packages, Go modules, chDB)"
	@echo "make test         install test dependencies and run the tests (with short fuzzing)"
	@echo "make bench        benchmarks: Go benchmarks, the MQTT side-by-side against Mosquitto, the end-to-end benchmark"
	@echo "make bench-e2e    only the end-to-end benchmark (report in benchmarks/results/REPORT.md)"
	@echo "make fuzz         longer fuzzing of every parser and decoder (LONGFUZZ=$(LONGFUZZ) each)"
	@echo "make reliability  the reliability suite's long form (kill -9 x20, outages, disk full, SIGTERM, bad inputs)"
	@echo "make lint         go vet + staticcheck"

build:
	$(GO) build -o $(BIN) ./cmd/iotpipe

# --- dependencies -----------------------------------------------------------

deps: deps-apt deps-go deps-chdb deps-browser deps-awssdk

# Debian packages the tests and `make run` use; apt-get only when one is missing.
deps-apt:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
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

# playwright-core (npm, pinned in web/e2e/package-lock.json) drives Debian's
# chromium in the dashboard's browser test; installed once per lock file.
E2E_CACHE := $(USER_CACHE)/e2e
export IOTPIPE_E2E_CACHE ?= $(E2E_CACHE)
deps-browser:
	@if ! cmp -s web/e2e/package-lock.json $(E2E_CACHE)/package-lock.json || [ ! -d $(E2E_CACHE)/node_modules/playwright-core ]; then \
		echo "installing playwright-core (web/e2e/package-lock.json) into $(E2E_CACHE)"; \
		mkdir -p $(E2E_CACHE) && cp web/e2e/package.json web/e2e/package-lock.json $(E2E_CACHE)/ && \
		npm ci --prefix $(E2E_CACHE) --no-audit --no-fund --ignore-scripts --loglevel=error; \
	fi

# AWS IoT's device SDK for JavaScript (npm, pinned) for the test that runs
# its thingShadow flow against iotpipe (where the test looks for it).
AWS_SDK     := aws-iot-device-sdk@2.2.16
AWS_SDK_DIR := $(USER_CACHE)/npm/aws-iot-device-sdk-2.2.16
deps-awssdk:
	@if [ ! -f $(AWS_SDK_DIR)/node_modules/aws-iot-device-sdk/package.json ]; then \
		echo "installing $(AWS_SDK) into $(AWS_SDK_DIR)"; \
		mkdir -p $(USER_CACHE)/npm && tmp=$$(mktemp -d $(USER_CACHE)/npm/.install-XXXXXX) && \
		npm install --prefix $$tmp --no-audit --no-fund --no-save --no-package-lock --loglevel=error $(AWS_SDK) && \
		rm -rf $(AWS_SDK_DIR) && mv $$tmp $(AWS_SDK_DIR); \
	fi

# --- run ----------------------------------------------------------------------

# Only registered devices connect: client certificates on :8883 (and
# wss :8084), registry tokens as the MQTT password on :1883 (and ws :8083).
run: deps-chdb build
	./$(BIN) run --mqtt-token-auth

# Anonymous devices on :1883, no policies: development only.
run-dev: deps-chdb build
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
	$(GO) test -run '^$$' -bench . -benchtime 1s ./schemas/... ./processors/... ./rulesql/... ./sinks/... ./replay/...
	$(GO) test -run '^$$' -bench BenchmarkPublishLatency -benchtime 600000x ./ingest/
	@if [ -x benchmarks/run-mqtt.sh ]; then IOTPIPE_BIN=$(CURDIR)/$(BIN) benchmarks/run-mqtt.sh; fi
	./$(BIN) bench e2e --out benchmarks/results

# Only the end-to-end benchmark (about 10 minutes on 2 cores): report in
# benchmarks/results/REPORT.md.
bench-e2e: deps build
	./$(BIN) bench e2e --out benchmarks/results

# The reliability suite's long form (about 8 minutes on 2 cores; make test
# runs its short form): the table goes to benchmarks/results/reliability.md.
reliability: deps build
	@mkdir -p benchmarks/results
	IOTPIPE_RELIABILITY=long IOTPIPE_RELIABILITY_REPORT=$(CURDIR)/benchmarks/results/reliability.md \
		$(GO) test -count=1 -timeout 40m -run '^TestReliability$$' -v ./cmd/iotpipe/

clean:
	rm -rf bin
