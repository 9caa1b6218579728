# The two commands of the contract: `make engines` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV ?= .venv
# CPU wheel at hand on these machines; on a GPU machine: make engines TORCH_SPEC='torch==2.11.0'
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= rtx,remote,test
PY := $(VENV)/bin/python
STAMP := $(VENV)/.trtforge-installed

.PHONY: engines test bench bench-big setup clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q '$(TORCH_SPEC)'
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $(STAMP)

setup: $(STAMP)

engines: $(STAMP)
	@$(VENV)/bin/trtforge build engines.toml

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/run.py $(BENCH)

# not part of CI: SD1.5- and SDXL-size UNets, plain path vs trtforge (needs ~20 GiB free, ~30 min)
bench-big: $(STAMP)
	$(PY) bench/big_unets.py $(MODELS)

clean:
	rm -rf .trtforge-cache engines
