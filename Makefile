# Two entry points (see README): `make demo` runs the whole pipeline on the embedded default,
# `make test` runs the test suite. Both create the virtual environment when it is missing.
VENV   ?= .venv
PYTHON := $(VENV)/bin/python
# Reinstall whenever pyproject.toml changes.
STAMP  := $(VENV)/.kocpt-installed

.PHONY: demo test test-fast venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	# torch first, pinned: the CPU wheel on local disk (any other spec pulls CUDA wheels).
	$(PYTHON) -m pip install -q torch==2.13.0
	$(PYTHON) -m pip install -q -e '.[test,eval]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/kocpt demo $(ARGS)

test: $(STAMP)
	$(PYTHON) -m pytest $(ARGS)

# The hermetic fast tier (no subprocess, Beam job, Megatron process or download): minutes, not tens.
test-fast: $(STAMP)
	$(PYTHON) -m pytest -m "not slow" $(ARGS)

clean:
	rm -rf demo-output .pytest_cache
