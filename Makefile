# The two commands: `make up` starts the whole stack, `make test` runs every test.
# `make serve` runs the production processes of Procfile.prod (see "Deploying across hosts").
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: up serve test deps runtime-deps bench-deps lint contracts chromium clean-data

up: deps
	@$(PY) -m marketplace.devstack ensure-redis
	@mkdir -p .data
	@$(VENV)/bin/honcho start -f Procfile

# Production: gunicorn, Celery beat and the workers of Procfile.prod, all of them or a host's
# share (PROCESSES="web worker"), with the settings of the environment (DJANGO_DEBUG=0 unless set
# otherwise; ENV_FILE=path reads them from a file). It migrates nothing and deploys nothing: run
# those steps once per release, as the README says.
serve: runtime-deps
	@mkdir -p "$${MARKETPLACE_DATA_DIR:-.data}"
	@DJANGO_DEBUG="$${DJANGO_DEBUG:-0}" $(VENV)/bin/honcho start -f Procfile.prod $(if $(ENV_FILE),-e $(ENV_FILE)) $(PROCESSES)

test: deps chromium
	@$(PY) -m marketplace.devstack ensure-redis
	$(PY) -m pytest $(PYTEST_ARGS)

deps: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@python3 -m venv $(VENV) 2>/dev/null || { rm -rf $(VENV); $(SUDO) apt-get install -y python3-venv && python3 -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

# A production host needs the runtime packages only (no Node, no test tools).
runtime-deps: $(VENV)/.runtime

$(VENV)/.runtime: requirements.txt
	@python3 -m venv $(VENV) 2>/dev/null || { rm -rf $(VENV); $(SUDO) apt-get install -y python3-venv && python3 -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
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
