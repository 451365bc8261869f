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

# Real-client tests (tests/clients): ocean.js 3.4.6 in its own npm folder.
tests/clients/oceanjs3/node_modules/.package-lock.json: tests/clients/oceanjs3/package.json tests/clients/oceanjs3/package-lock.json
	cd tests/clients/oceanjs3 && npm ci --no-audit --no-fund --loglevel=error

# ocean.py 3.1.2 in its own venv: it pins web3 6 and ocean-contracts 2 (tidewater: 7 and 3), and
# its pinned enforce-typing breaks on Python 3.11+, so the venv runs Python 3.10 (pyenv's, if
# python3.10 is not on PATH). Without a Python 3.10 the ocean.py client test cannot run.
OCEANPY := .venv-oceanpy
OCEANPY_PYTHON ?= $(shell for p in python3.10 $$(pyenv root 2>/dev/null)/versions/3.10*/bin/python3.10 \
	$$HOME/.pyenv/versions/3.10*/bin/python3.10; do \
	$$p -c 'import sys; print(sys.executable)' 2>/dev/null && break; done)
$(OCEANPY)/.installed: tests/clients/oceanpy/requirements.txt
	@if [ -z "$(OCEANPY_PYTHON)" ]; then \
		echo "no Python 3.10 found: $(OCEANPY) (ocean.py client test) not made"; exit 0; fi; \
	set -e; \
	$(OCEANPY)/bin/python -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null \
		|| { rm -rf $(OCEANPY); $(OCEANPY_PYTHON) -m venv $(OCEANPY); }; \
	$(OCEANPY)/bin/pip install -q --upgrade pip; \
	$(OCEANPY)/bin/pip install -q -r tests/clients/oceanpy/requirements.txt; \
	touch $@

tests/clients/oceanjs8/node_modules/.package-lock.json: tests/clients/oceanjs8/package.json tests/clients/oceanjs8/package-lock.json
	cd tests/clients/oceanjs8 && npm ci --no-audit --no-fund --loglevel=error

bootstrap: $(STAMP) node_modules/.package-lock.json tests/clients/oceanjs3/node_modules/.package-lock.json tests/clients/oceanjs8/node_modules/.package-lock.json $(OCEANPY)/.installed

demo: bootstrap
	$(BIN)/tidewater demo

# pytest exits 5 when it collected no tests (e.g. a -k filter that matches nothing): report it
# and pass, unless TIDEWATER_REQUIRE_TESTS=1 (CI), where a run with no tests fails.
test: bootstrap
	$(BIN)/pytest $(PYTEST_ARGS); code=$$?; \
	if [ $$code -eq 5 ]; then echo "pytest collected no tests"; \
	  if [ "$$TIDEWATER_REQUIRE_TESTS" = 1 ]; then exit 5; fi; exit 0; fi; exit $$code

# ruff over the whole tree; mypy on the five packages (strictness per package: pyproject.toml)
lint: bootstrap
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy tidewater provider operator_engine contracts_abi datastore

chain: bootstrap
	$(BIN)/tidewater chain

serve: bootstrap
	$(BIN)/tidewater serve

# Each script prints its own figures and appends the issue-16 rows to one file, printed last as
# one table (figure, baseline from the same run, ratio, goal, load average).
BENCH_SUMMARY := .tidewater/bench-summary.jsonl
bench: bootstrap
	mkdir -p $(dir $(BENCH_SUMMARY)) && rm -f $(BENCH_SUMMARY)
	$(BIN)/python bench/request_profile.py --summary $(BENCH_SUMMARY)
	$(BIN)/python bench/provider_throughput.py --summary $(BENCH_SUMMARY)
	$(BIN)/python bench/result_download.py --summary $(BENCH_SUMMARY)
	$(BIN)/python bench/job_overhead.py --queue 1000 --summary $(BENCH_SUMMARY)
	$(BIN)/python bench/summary.py $(BENCH_SUMMARY)

clean:
	rm -rf .tidewater .pytest_cache
