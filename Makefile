# Ferry's commands. `make run` and `make test` work on a fresh machine: each sets up
# .venv from pyproject.toml at the versions pinned in constraints.txt first (again only when
# either file changes); `make test` also sets up the machine's parts (scripts/machine-setup.sh).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FERRY := $(VENV)/bin/ferry
STAMP := $(VENV)/.installed-stamp
# buf, for `make buf-lint`, from the npm registry at a fixed version.
BUF_VERSION ?= 1.75.0

.PHONY: setup machine run test test-long test-system protos lint buf-lint bench clean constraints \
	k8s fresh-check

# Every install takes its versions from constraints.txt, so a fresh clone gets the versions CI
# got, whatever was released since (tests/unit/test_constraints.py holds the file to pyproject).
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Ferry needs Python >= 3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## The machine's parts the tests use: PostgreSQL client, Chromium, DejaVu fonts, Prometheus and
## promtool, npx; starts PostgreSQL and Redis when they are installed but down. Installs as root
## with apt-get; otherwise prints what is missing and how to get it.
machine:
	@bash scripts/machine-setup.sh

## What the browser tests inject into the page (axe-core), pinned by tests/e2e/package-lock.json.
## Without npm the accessibility test is skipped (and fails under CI=true);
## `make machine` installs npm first.
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
test: setup machine $(E2E_JS)
	$(VENV)/bin/pytest -q -m "not long" -n $(TEST_WORKERS) --dist loadfile

## The system tests, long scenarios included: one process per service, faults injected.
test-system: setup machine
	$(VENV)/bin/pytest -q tests/system

## Everything, the tests marked long included (make test leaves those out).
test-long: setup machine $(E2E_JS)
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadfile

## Regenerate ferry/v1 from protos/ (commit the result).
protos: setup
	$(PY) scripts/protos.py

lint: setup
	$(VENV)/bin/ruff check ferry services gateway tests bench scripts
	$(VENV)/bin/mypy ferry services gateway

buf-lint:
	npx --yes @bufbuild/buf@$(BUF_VERSION) lint

## Benchmarks on the `bench` dataset in PostgreSQL (FERRY_BENCH_PG overrides the server).
bench: setup
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	$(PY) -m bench

## Pin every version into constraints.txt after changing dependencies in pyproject.toml (commit
## it). Installs `.[dev,bench]` into a throwaway venv at today's pins, so only the packages that
## changed move; UPGRADE=1 ignores today's pins and takes the newest versions pyproject allows.
## Then run `make lint` and `make test`: a new version can break either.
UPGRADE ?=
constraints:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/pip" install --quiet --upgrade pip; \
	"$$tmp/venv/bin/pip" install --quiet $(if $(UPGRADE),,-c constraints.txt) '.[dev,bench]' setuptools \
	  || { echo "make constraints: a pin in constraints.txt conflicts with pyproject.toml;" \
	       "delete that line (or run make constraints UPGRADE=1) and run it again" >&2; exit 1; }; \
	{ echo "# Exact versions for reproducible installs: make setup, make bench and the Dockerfile use them."; \
	  echo "# Regenerate with \`make constraints\` after changing dependencies in pyproject.toml."; \
	  "$$tmp/venv/bin/pip" freeze --all | grep -v -E '^(pip|ferry)[= @]'; \
	} > constraints.txt.new; \
	mv constraints.txt.new constraints.txt; echo "constraints.txt rewritten; review git diff constraints.txt"

## Re-generate k8s/base/config/ferry.yaml and k8s/base/cronjobs.yaml from ferry.yaml.
k8s: setup
	$(FERRY) --config ferry.yaml k8s render
	$(FERRY) --config ferry.yaml k8s cronjobs

## The newcomer's path in one command: clone this repository (its committed HEAD) into a
## temporary folder and run `make test` there with CI=true, printing the wall time. Not in CI.
fresh-check:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	git clone --quiet . "$$tmp/ferry"; rev=$$(git -C "$$tmp/ferry" rev-parse --short HEAD); start=$$(date +%s); \
	status=0; ( cd "$$tmp/ferry" && CI=true $(MAKE) --no-print-directory test ) || status=$$?; \
	echo "fresh-check: make test on a fresh clone of $$rev:" \
	  "exit $$status, wall time $$(( $$(date +%s) - start )) s"; exit $$status

clean:
	rm -rf $(VENV) var build *.egg-info .pytest_cache .mypy_cache .ruff_cache
