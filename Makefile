SHELL := /bin/bash
# flowsentry — one entry point for building, testing, benchmarking and regenerating data.
# `make help` lists the targets.

CARGO ?= cargo
BIN := target/release/flowsentry
SHARED ?= ../shared

.PHONY: help build release test check fmt clippy doc bench fixtures models demo clean

help: ## list targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-10s %s\n", $$1, $$2}'

build: ## debug build
	$(CARGO) build

release: ## optimised build of the flowsentry binary
	$(CARGO) build --release

test: ## run every test (unit, integration, real-capture checks) with cargo test
	$(CARGO) test --release --all-targets 2>&1 | tee target/test.log; exit $${PIPESTATUS[0]}

check: fmt clippy doc ## formatting, lints and docs (what CI enforces)

fmt: ## cargo fmt --check
	$(CARGO) fmt --all -- --check

clippy: ## clippy with warnings as errors
	$(CARGO) clippy --all-targets -- -D warnings

doc: ## build API docs, broken links are errors
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps

bench: release ## throughput benchmarks (see docs/benchmarks.md)
	$(CARGO) bench

fixtures: release ## regenerate fixtures/pcaps byte-for-byte from the simulator
	scripts/make-fixtures.sh $(BIN)

demo: release ## replay a shipped fixture and print its events
	$(BIN) replay fixtures/pcaps/fixture-benign-camera.pcap --out -

clean: ## remove build output
	$(CARGO) clean
