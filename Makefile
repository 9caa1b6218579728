# The two commands of the contract: `make engines` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV ?= .venv
# CPU wheel at hand on these machines; on a GPU machine: make engines TORCH_SPEC='torch==2.11.0'
TORCH_SPEC ?= torch==2.13.0
# remote: the shared remote cache (docs/farm.md); a runner of a build farm needs it
BUILD_EXTRAS ?= rtx,remote
DEV_EXTRAS ?= rtx,remote,sign,test,lint
PY := $(VENV)/bin/python
BASE := $(VENV)/.trtforge-base
BUILD_STAMP := $(VENV)/.trtforge-build
DEV_STAMP := $(VENV)/.trtforge-dev

# test workers (pytest-xdist): auto = one per CPU core
TEST_WORKERS ?= auto

.PHONY: engines test test-fast lint format bench bench-big setup clean

$(BASE):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q '$(TORCH_SPEC)'
	touch $(BASE)

# what building engines needs, and nothing else (no test or lint tools)
$(BUILD_STAMP): pyproject.toml $(BASE)
	$(PY) -m pip install -q -e '.[$(BUILD_EXTRAS)]'
	touch $(BUILD_STAMP)

# everything: build, test and lint tools
$(DEV_STAMP): pyproject.toml $(BASE)
	$(PY) -m pip install -q -e '.[$(DEV_EXTRAS)]'
	touch $(DEV_STAMP) $(BUILD_STAMP)

setup: $(DEV_STAMP)

engines: $(BUILD_STAMP)
	@$(VENV)/bin/trtforge build engines.toml

# everything CI runs, on TEST_WORKERS processes (loadgroup: tests/scheduling.py keeps the tests
# that share a module-scoped fixture on one worker)
test: $(DEV_STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# the in-process lane: no console script, no engine build (a minute on 2 cores)
test-fast: $(DEV_STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow" $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check trtforge tests bench examples
	$(VENV)/bin/ruff format --check trtforge tests bench examples
	$(VENV)/bin/mypy

format: $(DEV_STAMP)
	$(VENV)/bin/ruff check --fix trtforge tests bench examples
	$(VENV)/bin/ruff format trtforge tests bench examples

bench: $(DEV_STAMP)
	$(PY) bench/run.py $(BENCH)

# not part of CI: SD1.5- and SDXL-size UNets, plain path vs trtforge (needs ~20 GiB free, ~30 min),
# then the SD1.5-size text-to-image pipeline at 4 steps (PIPELINE_SIZES=tiny: the same, in a minute)
PIPELINE_SIZES ?= sd15
bench-big: $(DEV_STAMP)
	$(PY) bench/big_unets.py $(MODELS)
	$(PY) bench/big_pipeline.py $(PIPELINE_SIZES)

clean:
	rm -rf .trtforge-cache engines
