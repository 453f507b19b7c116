# Two commands on a fresh machine: `make demo` and `make test`. Everything else is installed here.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# Compiled bytecode makes every subprocess (CLI, servers) start seconds faster.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test test-slow test-all install browser podman lint audit reliability clean

# trainer/constraints.txt pins the trainer's packages to the versions the trainer image installs
# (scripts/trainer_constraints.py): the suite tests what the image ships.
$(STAMP): pyproject.toml trainer/constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv
	$(BIN)/uv pip install -q --python $(BIN)/python -e ".[dev]" -c trainer/constraints.txt
	touch $(STAMP)

install: $(STAMP)

# Debian's Chromium for the viewer test (no browser download: only the package registries are reachable).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "warning: could not install chromium; the viewer test will be skipped"; \
	  else echo "warning: chromium missing and not root; the viewer test will be skipped"; fi; }

# Debian's podman, for podman-compose (a dev dependency from PyPI): tests/test_compose.py runs
# `podman-compose config` on docker-compose.yml, a real Compose implementation (no engine needed).
podman:
	@command -v podman >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq podman >/dev/null) || echo "warning: could not install podman; podman-compose runs with --dry-run"; \
	  else echo "warning: podman missing and not root; podman-compose runs with --dry-run"; fi; }

demo: install
	$(BIN)/python scripts/demo.py

test: install browser podman
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# The long variants (more kills, more workers, DDP); .ci/run adds them when time allows.
test-slow: install browser podman
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-all: install browser podman
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check magdi services trainer tests benchmarks

# Also part of `make test`; skips, saying why, where PyPI's advisory API does not answer.
audit: install
	$(BIN)/python -m pytest -rs tests/test_dependency_audit.py

# The fault matrix (tests/reliability) run for real, rendered into docs/reliability.md.
reliability: install
	$(BIN)/python scripts/reliability_report.py $(if $(SLOW),--slow)

clean:
	rm -rf $(VENV) .pytest_cache
