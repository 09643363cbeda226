# The one entry point: a person and CI type the same targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint generate check-generated bench bench-versus bench-run-path clean

$(BIN)/flowport: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/flowport

# Python code generated from proto/ lives in services/flowport/v1 and is committed;
# `make check-generated` proves it is current.
generate: $(BIN)/flowport
	$(BIN)/python -m flowport.protos

check-generated: $(BIN)/flowport
	$(BIN)/python -m flowport.protos --check

run: $(BIN)/flowport
	$(BIN)/flowport demo
	$(BIN)/flowport serve

test: $(BIN)/flowport
	$(BIN)/pytest -q

lint: $(BIN)/flowport node_modules/.bin/buf
	$(BIN)/ruff check services tests
	$(BIN)/ruff format --check services tests
	$(BIN)/mypy
	$(BIN)/python -m flowport.protos --descriptor-set build/lint.binpb
	# buf reads the descriptor set as an image: googleapis comes from the wheel, not from the BSR.
	node_modules/.bin/buf lint build/lint.binpb --path flowport
	$(MAKE) check-generated

node_modules/.bin/buf:
	npm install --no-save --no-audit --no-fund @bufbuild/buf@1

# BENCH_RUNS=N runs per figure (3), BENCH_QUICK=1 a short smoke run; results in .flowport/bench.json.
bench: $(BIN)/flowport bench-tools
	$(BIN)/python -m tests.bench

# The blocking figures of this checkout against commit BASE, both running at once (README, Performance).
bench-versus: $(BIN)/flowport bench-tools
	$(BIN)/python -m tests.bench.versus $(or $(BASE),$(error set BASE=<commit>))

# The run path alone (no gRPC, no Envoy), in one process, against BASE: CPU per run.
bench-run-path: $(BIN)/flowport
	$(BIN)/python -m tests.bench.run_path $(or $(BASE),$(error set BASE=<commit>))

# wrk, the bench's HTTP load generator, from Debian's packages (make runs as root here).
.PHONY: bench-tools
bench-tools:
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)

clean:
	rm -rf $(VENV) .flowport node_modules
