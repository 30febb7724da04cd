# sm-toolkit: `make demo` runs the main job, `make test` runs the tests; both set up
# everything they need on a fresh machine (a .venv with pinned dependencies).

.DEFAULT_GOAL := install
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install demo test test-unit test-integration lint clean bench venv-v3 test-v3

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	# torch is pinned to 2.13.0 in pyproject.toml: an unpinned torch pulls CUDA wheels.
	$(VENV)/bin/pip install --quiet -e '.[test,demo,dashboard,sdk-v2,tracking,bench]'
	touch $(STAMP)

# SDK v3 beside v2: both are the package `sagemaker`, so v3 gets its own venv. v3 goes in
# first, as in a user's project; installing sm-toolkit must leave it as it is (checked
# by tests/v3/test_v3_install.py against the freeze taken before).
VENV_V3 ?= .venv-v3
STAMP_V3 := $(VENV_V3)/.installed-stamp
SDK_V3 ?= sagemaker==3.27.*

$(STAMP_V3): pyproject.toml
	$(PYTHON) -m venv $(VENV_V3)
	$(VENV_V3)/bin/pip install --quiet --upgrade pip
	$(VENV_V3)/bin/pip install --quiet '$(SDK_V3)'
	$(VENV_V3)/bin/pip freeze --exclude-editable > $(VENV_V3)/freeze-before-sm-toolkit.txt
	$(VENV_V3)/bin/pip install --quiet -e '.[test,sdk-v3]'
	touch $(STAMP_V3)

venv-v3: $(STAMP_V3)

test-v3: $(STAMP_V3)
	$(VENV_V3)/bin/pytest tests/v3 tests/unit/test_sdk_generation.py $(PYTEST_ARGS)

install: $(STAMP)

# The demo runs with SDK v2 (.venv); it says so, since .venv-v3 may sit beside it.
demo: $(STAMP)
	@$(VENV)/bin/python -c "from importlib.metadata import version as v; \
		print('make demo: SageMaker SDK', v('sagemaker'), 'from $(VENV)')"
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
	$(VENV)/bin/python benchmarks/cpu_matmul.py
	$(VENV)/bin/python benchmarks/moe_layer.py
	$(VENV)/bin/python benchmarks/moe_layer.py --malloc keep  # as the training entrypoints run
	$(VENV)/bin/python benchmarks/moe_tradeoffs.py
	$(VENV)/bin/python benchmarks/activations_cnn.py
	$(VENV)/bin/python benchmarks/tuning_strategies.py
	$(VENV)/bin/python benchmarks/moe_lm_throughput.py
	$(VENV)/bin/python benchmarks/moe_lm_throughput.py --malloc-ab 8 --steps 6 --threads 2
	$(VENV)/bin/python benchmarks/local_start_times.py \
	  $(if $(wildcard $(VENV_V3)/bin/python),--v3-python $(VENV_V3)/bin/python)  # Docker, `make build`
	$(VENV)/bin/python benchmarks/endpoint_overhead.py

clean:
	rm -rf .sm-toolkit .pytest_cache

include container/container.mk

# The image build installs from a wheelhouse that the venv's pip downloads.
build: $(STAMP)
