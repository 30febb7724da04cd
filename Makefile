# sm-toolkit: `make demo` runs the main job, `make test` runs the tests; both set up
# everything they need on a fresh machine (a .venv with pinned dependencies).

.DEFAULT_GOAL := install
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install demo test test-unit test-integration lint clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	# torch is pinned to 2.13.0 in pyproject.toml: an unpinned torch pulls CUDA wheels.
	$(VENV)/bin/pip install --quiet -e '.[test,demo]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sm-toolkit demo

test: $(STAMP)
	$(VENV)/bin/pytest tests $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP)
	$(VENV)/bin/pytest tests/integration $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check sm_toolkit entrypoints benchmarks tests

# Speed, memory and quality figures, measured side by side in one run (see README).
bench: $(STAMP)
	$(VENV)/bin/python benchmarks/moe_layer.py
	$(VENV)/bin/python benchmarks/moe_tradeoffs.py
	$(VENV)/bin/python benchmarks/activations_cnn.py
	$(VENV)/bin/python benchmarks/tuning_strategies.py
	$(VENV)/bin/python benchmarks/local_start_times.py  # needs Docker and `make build`

clean:
	rm -rf .sm-toolkit .pytest_cache

include container/container.mk

# The image build installs from a wheelhouse that the venv's pip downloads.
build: $(STAMP)
