# Ferry's commands. `make run` and `make test` work on a fresh machine: each sets up
# .venv from pyproject.toml first (again only when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FERRY := $(VENV)/bin/ferry
STAMP := $(VENV)/.installed-stamp

.PHONY: setup run test test-long test-system protos lint buf-lint bench clean constraints k8s

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Ferry needs Python >= 3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## What the browser tests inject into the page (axe-core), pinned by tests/e2e/package-lock.json.
## Without npm the accessibility test is skipped (and fails under CI=true).
E2E_JS := tests/e2e/node_modules/.package-lock.json
$(E2E_JS): tests/e2e/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: tests/e2e/test_accessibility.py will be skipped"; exit 0; }; \
	npm ci --prefix tests/e2e --no-audit --no-fund --ignore-scripts --loglevel=error

## Migrate, seed demo data into an empty database, and serve everything in one process.
run: setup
	$(FERRY) db upgrade
	$(FERRY) demo seed --if-empty
	$(FERRY) user add admin --role admin --if-missing --demo
	$(FERRY) serve

## The test suite (needs PostgreSQL on 127.0.0.1:5432; under CI=true it must be up),
## without the long system scenarios (`make test-system` runs those), on TEST_WORKERS
## processes (pytest-xdist; each test file stays on one). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: setup $(E2E_JS)
	$(VENV)/bin/pytest -q -m "not long" -n $(TEST_WORKERS) --dist loadfile

## The system tests, long scenarios included: one process per service, faults injected.
test-system: setup
	$(VENV)/bin/pytest -q tests/system

## Everything, the tests marked long included (make test leaves those out).
test-long: setup $(E2E_JS)
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadfile

## Regenerate ferry/v1 from protos/ (commit the result).
protos: setup
	$(PY) scripts/protos.py

lint: setup
	$(VENV)/bin/ruff check ferry services gateway tests bench scripts
	$(VENV)/bin/mypy ferry services gateway

buf-lint:
	npx --yes @bufbuild/buf lint

## Benchmarks on the `bench` dataset in PostgreSQL (FERRY_BENCH_PG overrides the server).
bench: setup
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m bench

## Pin every installed version into constraints.txt (the image installs from it; commit it).
constraints: setup
	@echo "# Exact versions for reproducible installs (the Dockerfile uses them)." > constraints.txt
	@echo "# Regenerate with \`make constraints\` after changing dependencies in pyproject.toml." >> constraints.txt
	$(PY) -m pip freeze --exclude-editable --all | grep -v -E '^pip==' >> constraints.txt

## Re-generate k8s/base/config/ferry.yaml and k8s/base/cronjobs.yaml from ferry.yaml.
k8s: setup
	$(FERRY) --config ferry.yaml k8s render
	$(FERRY) --config ferry.yaml k8s cronjobs

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .mypy_cache .ruff_cache
