# Two commands on a fresh machine: `make run` and `make test`. Both build .venv first.
TORCH_VERSION := 2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SCENARIO ?= scenarios/baseline.yaml

# Mesa 3.5 needs Python >= 3.12 (on 3.11 pip silently falls back to Mesa 3.3.1, which leaks
# models). Try what is on PATH, then pyenv's versions folder; a pyenv shim that exists but
# is not selected fails `--version`, so each candidate is actually run.
PYTHON ?= $(shell for c in python3.12 python3.13 \
	  $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[2-9]*/bin/python3 2>/dev/null); do \
	  if $$c -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then \
	    echo $$c; break; fi; done)

.PHONY: run test bench claims lint venv clean

$(STAMP): pyproject.toml Makefile
	@if [ -z "$(PYTHON)" ]; then \
	  echo "error: no Python >= 3.12 found (tried python3.12, python3.13 and pyenv's versions)." \
	       "Install one, or pass PYTHON=/path/to/python3.12." >&2; exit 2; fi
	@echo "using $(PYTHON) ($$($(PYTHON) --version))"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned, so that nothing later pulls a different build.
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e '.[viz,sweep,dev,notebook]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/wsf run $(SCENARIO)

# Two pytest workers (pytest-xdist), a test file each at a time: the tests' module fixtures
# are built once, and the load-sensitive tests already make their own load (7.2 min instead of
# 11.4 on 2 cores). `pytest` alone runs the same suite in one process.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -n 2 --dist loadfile

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m bench

# Re-measure every answer the shipped files state (their `claims:` blocks); see
# analysis/claims.py. The single-run scenarios are also checked by `make test`.
CLAIMED := $(shell grep -l '^claims:' scenarios/*.yaml scenarios/sweeps/*.yaml \
	  scenarios/optimize/*.yaml 2>/dev/null)
claims: $(STAMP)
	$(VENV)/bin/wsf check-claims $(CLAIMED)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
