SHELL := /bin/bash
# flowsentry — one entry point for building, testing, benchmarking and regenerating data.
# `make help` lists the targets.

CARGO ?= cargo
BIN := target/release/flowsentry
SHARED ?= ../shared

.PHONY: help build release test check fmt clippy doc bench fixtures models eval demo clean

help: ## list targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-10s %s\n", $$1, $$2}'

build: ## debug build
	$(CARGO) build

release: ## optimised build of the flowsentry binary
	$(CARGO) build --release

test: ## run every test (unit, integration, real-capture checks) with cargo test
	mkdir -p target && $(CARGO) test --profile ci --all-targets 2>&1 | tee target/test.log; exit $${PIPESTATUS[0]}

check: fmt clippy doc ## formatting, lints and docs (what CI enforces)

fmt: ## cargo fmt --check
	$(CARGO) fmt --all -- --check

clippy: ## clippy with warnings as errors
	$(CARGO) clippy --all-targets -- -D warnings

doc: ## build API docs, broken links are errors
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps

bench: release ## throughput benchmarks (see docs/benchmarks.md)
	$(CARGO) bench

MODEL_DATA ?= target/model-data
MODEL_SEED ?= 1
TARGET_FPR ?= 0.001
# Thresholds whose true FPR is at most their share of TARGET_FPR with this confidence
# (docs/detection.md); empty: the plain (1 - F) quantile.
CALIBRATION_CONFIDENCE ?= 0.95

models: release ## train models/default.fsm from the simulator's training and calibration scenarios
	$(BIN) simulate --scenario training --seed $(MODEL_SEED) --out $(MODEL_DATA)/training
	$(BIN) simulate --scenario calibration --seed $(MODEL_SEED) --out $(MODEL_DATA)/calibration
	$(BIN) train --pcap $(MODEL_DATA)/training/capture.pcap \
		--inventory $(MODEL_DATA)/training/inventory.toml \
		--calibrate $(MODEL_DATA)/calibration/capture.pcap \
		--target-fpr $(TARGET_FPR) $(if $(CALIBRATION_CONFIDENCE),--calibration-confidence $(CALIBRATION_CONFIDENCE)) \
		--seed $(MODEL_SEED) --out models/default.fsm
	$(CARGO) build --release

eval: release ## evaluation protocol (docs/evaluation.md): 5 forest seeds x 3 simulated days, ~25 GB in target/eval
	mkdir -p target/eval && CALIBRATION_CONFIDENCE=$(CALIBRATION_CONFIDENCE) scripts/evaluate.sh $(BIN) target/eval | tee target/eval/summary.md

fixtures: release ## regenerate fixtures/pcaps byte-for-byte from the simulator
	scripts/make-fixtures.sh $(BIN)

demo: release ## replay a shipped fixture with the default model and print its events
	$(BIN) replay --inventory fixtures/pcaps/fixture-mirai.inventory.toml fixtures/pcaps/fixture-mirai.pcap --out -

clean: ## remove build output
	$(CARGO) clean
