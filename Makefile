# Herald. `make run` starts the whole platform on embedded services; `make test` runs every test.
# Both create .venv and install the locked dependencies first (nothing else needs to be installed).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install tools wrk run test unit integration lint typecheck check lock clean bench-e2e bench-whatsapp bench-sms bench-sms-failover bench-email bench-search bench-campaigns bench-ingest bench-billing bench-close bench-delivery bench-tenants bench-broker bench-outbox

$(STAMP): pyproject.toml requirements-dev.lock clients/python/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	# The client library (its own package; its dependencies, httpx and msgspec, are in the lock).
	$(BIN)/python -m pip install --quiet --no-deps -e clients/python
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/herald dev

# Static checks first (fast, and a type error is a test failure), then the whole pytest suite in
# TEST_WORKERS parallel processes, each with its own PostgreSQL and broker (tests/conftest.py).
TEST_WORKERS ?= 2

# --dist worksteal with the long tests collected first (tests/conftest.py): an idle worker takes
# tests still waiting at another, so the suite does not end waiting for one long test.
test: install tools lint typecheck
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal

# promtool (Debian package prometheus) unit-tests the alert rules; installed when missing and
# possible (root with apt), otherwise that one test is skipped and says why.
tools:
	@command -v promtool >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null \
	  || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null) \
	  || echo "promtool could not be installed; tests/unit/test_observability.py will skip its promtool test"

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal tests/integration

lint: install
	$(BIN)/ruff check libs services tests loadtests clients/python
	$(BIN)/lint-imports --no-cache

typecheck: install
	$(BIN)/mypy

check: lint typecheck

# Re-resolve both locks from pyproject's pins (run after changing a dependency):
# requirements-dev.lock, everything `make install` puts in .venv (runtime, tests, linters), and
# requirements.lock, the runtime part alone at the same versions, which is all the image installs.
lock:
	rm -rf /tmp/herald-lock /tmp/herald-lock-runtime
	$(PYTHON) -m venv /tmp/herald-lock
	/tmp/herald-lock/bin/pip install --quiet --upgrade pip
	/tmp/herald-lock/bin/pip install --quiet -e '.[dev]'
	/tmp/herald-lock/bin/pip freeze --exclude-editable | grep -v '^herald' > requirements-dev.lock
	$(PYTHON) -m venv /tmp/herald-lock-runtime
	/tmp/herald-lock-runtime/bin/pip install --quiet --upgrade pip
	/tmp/herald-lock-runtime/bin/pip install --quiet -c requirements-dev.lock .
	/tmp/herald-lock-runtime/bin/pip freeze | grep -v '^herald' > requirements.lock

bench-e2e: install wrk
	$(BIN)/python -m loadtests.e2e

bench-whatsapp: install wrk
	$(BIN)/python -m loadtests.whatsapp

bench-sms: install
	$(BIN)/python -m loadtests.sms

bench-email: install
	$(BIN)/python -m loadtests.email

bench-search: install
	$(BIN)/python -m loadtests.search

bench-campaigns: install
	$(BIN)/python -m loadtests.campaigns

bench-sms-failover: install
	$(BIN)/python -m loadtests.sms --failover

bench-ingest: install wrk
	$(BIN)/python -m loadtests.ingest

bench-delivery: install wrk
	$(BIN)/python -m loadtests.delivery

bench-tenants: install
	$(BIN)/python -m loadtests.sweep --tenants 1,100,1000,10000

bench-broker: install
	$(BIN)/python -m loadtests.broker

bench-outbox: install
	$(BIN)/python -m loadtests.outbox

bench-billing: install
	$(BIN)/python -m loadtests.billing

bench-close: install
	$(BIN)/python -m loadtests.close

# The benchmarks' load generator (Debian package).
wrk:
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)

clean:
	rm -rf $(VENV) .herald .mypy_cache .ruff_cache .pytest_cache
