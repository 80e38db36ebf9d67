# The two commands that work on a fresh clone: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SOURCES := $(wildcard core/*.py core/*/*.py ext/kamicore/*.py ext/kamicore/*.pyx ext/kamicore/*.pxd ext/kamicore/*.pyi proto/kamicore/*/*.proto \
	proto/kamicore/*/*/*.proto core/*/*/__init__.py) \
	setup.py pyproject.toml
CLIENT_STAMP := $(VENV)/.client-installed
CLIENT_SOURCES := $(wildcard clients/python/pyproject.toml clients/python/kamicore_client/* \
	clients/python/kamicore_client/v1/*)
PYTEST_ARGS ?=

.PHONY: install sdk serve test docs soak bench-engine bench-server bench-floor bench-topup bench-events bench-watch bench-ledger bench-webhooks bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel "Cython>=3.0" "grpcio-tools>=1.60"

# a regular (non-editable) install: tests exercise exactly what a user installs. First the
# system packages the engine links (a C compiler, liblmdb-dev, libssl-dev): installed with
# apt-get when missing and make runs as root, named otherwise (.ci/system-packages)
$(STAMP): $(BIN)/python $(SOURCES)
	bash .ci/system-packages
	$(BIN)/pip install --quiet --no-build-isolation ".[dev]"
	touch $(STAMP)

# the Python client (clients/python) beside the server in the same venv, as a partner would
# install it (tests/test_client_python*.py), with the pinned generators of `make sdk` and mypy
$(CLIENT_STAMP): $(STAMP) $(CLIENT_SOURCES)
	$(BIN)/pip install --quiet --no-build-isolation "./clients/python[dev]"
	touch $(CLIENT_STAMP)

install: $(STAMP) $(CLIENT_STAMP)

# regenerate the committed client code (clients/python/kamicore_client/v1, _services.py, and
# clients/node/gen through sdk-node) from
# proto/kamicore/v1; `make test` fails while it is out of date
sdk: $(STAMP) $(CLIENT_STAMP)
	$(BIN)/python clients/python/generate.py
	$(MAKE) --no-print-directory sdk-node

serve: $(STAMP)
	$(BIN)/kamicore serve

# lint first (ruff, configured in pyproject.toml), then the suite against the installed package
test: $(STAMP) $(CLIENT_STAMP)
	$(BIN)/ruff check .
	KAMICORE_EXT_DIR=$(CURDIR)/ext $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-node

# docs/api.md from the proto comments (tests/test_api_docs.py fails when it is out of date)
docs: $(STAMP)
	$(BIN)/python proto/api_docs.py

soak: $(STAMP)
	KAMICORE_EXT_DIR=$(CURDIR)/ext $(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

# the engine against the C floor (bench/c_floor.c: cc, liblmdb-dev and libssl-dev, installed with
# apt-get when missing and run as root, else named); ends with its headline line
bench-engine: $(STAMP)
	KAMICORE_EXT_DIR=$(CURDIR)/ext $(BIN)/python bench/engine_bench.py

# the C floor alone (one JSON line per figure), e.g. to size a machine: BENCH_ARGS="--codes N"
bench-floor: $(STAMP)
	$(BIN)/python bench/c_floor.py $(BENCH_ARGS)

# kamicore against a do-nothing server, closed and open loop, 1 and 2 workers; ends with its
# headline line
bench-server: $(STAMP)
	KAMICORE_EXT_DIR=$(CURDIR)/ext $(BIN)/python bench/server_bench.py

# direct top-ups against a simulated supplier, answering at once and with 200 ms latency
bench-topup: $(STAMP)
	KAMICORE_EXT_DIR=$(CURDIR)/ext $(BIN)/python bench/topup_bench.py $(BENCH_ARGS)

# orders/s with business events written in their commits against the same with emit a no-op,
# in one run
bench-events: $(STAMP)
	KAMICORE_EXT_DIR=$(CURDIR)/ext $(BIN)/python bench/events_bench.py $(BENCH_ARGS)

# orders/s over gRPC with no watcher, one WatchEvents watcher reading every event, and one that
# reads nothing, in one run; and how soon a delivery's event reaches the watcher
bench-watch: $(STAMP)
	KAMICORE_EXT_DIR=$(CURDIR)/ext $(BIN)/python bench/watch_bench.py $(BENCH_ARGS)
# orders/s with no webhook endpoint, 4 receiving and 4 down, over gRPC, same run
bench-webhooks: $(STAMP)
	KAMICORE_EXT_DIR=$(CURDIR)/ext $(BIN)/python bench/webhooks_bench.py $(BENCH_ARGS)

# orders/s with the ledger against its bookings replaced by a no-op, in process, same run
bench-ledger: $(STAMP)
	KAMICORE_EXT_DIR=$(CURDIR)/ext $(BIN)/python bench/ledger_bench.py $(BENCH_ARGS)

# everything: engine, server, concurrency sweep, Locust, pool/worker scaling, then the report
# (bench/results/<date>-<commit>.md with PNGs; bench/RESULTS.md); ~25 min here. BENCH_ARGS:
# e.g. --quick, or --max-codes 1000000
BENCH_ARGS ?=
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet --no-build-isolation ".[bench]"
	touch $(BENCH_STAMP)

bench: $(STAMP) $(BENCH_STAMP)
	command -v h2load >/dev/null || $(BIN)/python -c "import sys; sys.path.insert(0, 'bench'); import server_bench; server_bench.ensure_h2load()"
	KAMICORE_EXT_DIR=$(CURDIR)/ext $(BIN)/python bench/run_all.py $(BENCH_ARGS)

# the TypeScript client, clients/node: its packages exactly as package-lock.json pins them (npm
# ci, from the npm registry), then its tests (node --test) against a real server; node >= 20
.PHONY: node-deps test-node sdk-node
NODE_CLIENT := clients/node
$(NODE_CLIENT)/node_modules/.package-lock.json: $(NODE_CLIENT)/package-lock.json $(NODE_CLIENT)/package.json
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && node -e 'process.exit(parseInt(process.versions.node) < 20 ? 1 : 0)' \
		|| { echo "make: clients/node (the TypeScript client) needs node >= 20 and npm on PATH, e.g. apt-get install nodejs npm"; exit 1; }
	cd $(NODE_CLIENT) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

node-deps: $(NODE_CLIENT)/node_modules/.package-lock.json

test-node: $(STAMP) node-deps
	cd $(NODE_CLIENT) && KAMICORE_PYTHON=$(CURDIR)/$(BIN)/python KAMICORE_EXT_DIR=$(CURDIR)/ext npm test --silent

# regenerate clients/node/gen from proto/ (buf from npm, its own compiler, and ts-proto); commit it
sdk-node: node-deps
	cd $(NODE_CLIENT) && npm run --silent generate

clean:
	rm -rf build dist *.egg-info ext/kamicore/*.c ext/kamicore/*.html $(VENV) \
		clients/python/build clients/python/*.egg-info
