# The two commands: `make up` starts the whole stack, `make test` runs every test.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: up test deps bench-deps lint contracts chromium clean-data

up: deps
	@$(PY) -m marketplace.devstack ensure-redis
	@mkdir -p .data
	@$(VENV)/bin/honcho start -f Procfile

test: deps chromium
	@$(PY) -m marketplace.devstack ensure-redis
	$(PY) -m pytest $(PYTEST_ARGS)

deps: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@python3 -m venv $(VENV) 2>/dev/null || { rm -rf $(VENV); $(SUDO) apt-get install -y python3-venv && python3 -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

# The independent baselines bench/valuation.py compares with (benchmarks only).
bench-deps: deps
	$(PY) -m pip install --quiet --no-deps pydvl==0.10.0
	$(PY) -m pip install --quiet -r requirements-bench.txt

chromium:
	@command -v chromium >/dev/null || $(SUDO) apt-get install -y chromium

contracts: node_modules/.installed
	node chain/contracts/build.js

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Forget the local chain, IPFS repo and database (the next `make up` starts from scratch).
clean-data:
	rm -rf .data
