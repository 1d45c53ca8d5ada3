# codealign — the two commands a new user needs are `make quickstart` and `make test` (see README).
# Each creates or updates .venv by itself: torch first and pinned (a CPU build on this machine; an unpinned
# torch would pull a multi-GB CUDA build), then the project with the versions CI resolved (constraints.txt).

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PYTEST_ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.codealign-installed

.PHONY: venv quickstart benchmark test test-slow lock clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $(STAMP)

quickstart: venv
	$(BIN)/codealign quickstart

# Every method x 3 seeds (configs/benchmark.yaml): the README's table, with mean and interval per cell.
benchmark: venv
	$(BIN)/codealign benchmark

# System services the tests use: a loopback PostgreSQL (DB tests run on SQLite and Postgres) and Debian's
# chromium for the browser test. Both install themselves when run as root (then the Postgres tests are
# required); otherwise those tests skip.
test: venv
	@bash .ci/system-deps.sh
	@set -e; pg_url=$$(bash .ci/postgres.sh start); \
	trap 'bash .ci/postgres.sh stop' EXIT; \
	require_pg=$$([ "$$(id -u)" = 0 ] && echo 1 || echo 0); \
	CODEALIGN_TEST_PG_URL=$$pg_url CODEALIGN_REQUIRE_PG=$$require_pg $(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: venv
	$(BIN)/python -m pytest -m "slow" $(PYTEST_ARGS)

# Re-record the exact versions of today's resolution (run after changing dependencies in pyproject.toml).
lock: venv
	$(BIN)/pip freeze --exclude-editable | grep -v -E '^(torch|codealign)==' > constraints.txt

clean-venv:
	rm -rf $(VENV)
