# The two commands of the README: `make demo` and `make test`. Both bootstrap what is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bootstrap chain serve bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

tests/clients/oceanjs8/node_modules/.package-lock.json: tests/clients/oceanjs8/package.json tests/clients/oceanjs8/package-lock.json
	cd tests/clients/oceanjs8 && npm ci --no-audit --no-fund --loglevel=error

bootstrap: $(STAMP) node_modules/.package-lock.json tests/clients/oceanjs8/node_modules/.package-lock.json

demo: bootstrap
	$(BIN)/tidewater demo

# pytest exits 5 when it collected no tests (e.g. a -k filter that matches nothing): report it
# and pass, unless TIDEWATER_REQUIRE_TESTS=1 (CI), where a run with no tests fails.
test: bootstrap
	$(BIN)/pytest $(PYTEST_ARGS); code=$$?; \
	if [ $$code -eq 5 ]; then echo "pytest collected no tests"; \
	  if [ "$$TIDEWATER_REQUIRE_TESTS" = 1 ]; then exit 5; fi; exit 0; fi; exit $$code

lint: bootstrap
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy tidewater provider operator_engine contracts_abi

chain: bootstrap
	$(BIN)/tidewater chain

serve: bootstrap
	$(BIN)/tidewater serve

bench: bootstrap
	$(BIN)/python bench/job_overhead.py --queue 1000
	$(BIN)/python bench/request_profile.py
	$(BIN)/python bench/provider_throughput.py
	$(BIN)/python bench/result_download.py

clean:
	rm -rf .tidewater .pytest_cache
