# The two commands of the README are `make run` and `make test`; every install step
# they need is a prerequisite here, so that a fresh clone needs nothing else.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
RUN := $(UV) run --frozen --no-sync

export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help install prereqs lint format test test-unit run bench clean synth glue-package openapi audit

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --all-extras
	@touch $@

install: $(VENV)/.synced ## Create .venv with the locked dependencies

# Outside Python the tests need a Java runtime (Spark) and the PostgreSQL server
# binaries (the store tests start their own server). As root with apt-get (as CI
# is) they are installed when missing; otherwise this says what to install.
# Debian's Chromium and its driver run the API reference's browser test, which is
# skipped without them: where they cannot be installed, this only says so.
prereqs: ## Check (and, as root, install) Java, the PostgreSQL server and Chromium
	@missing=""; \
	command -v java >/dev/null 2>&1 || missing="$$missing openjdk-17-jre-headless"; \
	compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "missing prerequisites:$$missing" >&2; exit 1; fi; \
	fi
	@browser=""; \
	command -v chromium >/dev/null 2>&1 || browser="$$browser chromium"; \
	command -v chromedriver >/dev/null 2>&1 || browser="$$browser chromium-driver"; \
	if [ -n "$$browser" ]; then \
	  if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$browser; \
	  then echo "installed$$browser"; \
	  else echo "the browser test of the API reference will be skipped: install$$browser" \
	    "(Debian packages)" >&2; fi; \
	fi

lint: install ## Ruff: lint and formatting
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: install ## Apply ruff's fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

PYTEST_ARGS ?=
PORT ?= 8080

test: install prereqs lint ## Set everything up and run the whole test suite
	$(RUN) pytest $(PYTEST_ARGS)

test-unit: install ## Only the fast tests
	$(RUN) pytest tests/unit

LOCAL_DIR := .local
API_KEY_FILE := $(LOCAL_DIR)/api-key

$(API_KEY_FILE):
	@mkdir -p $(LOCAL_DIR)
	@$(PYTHON) -c "import secrets; print(secrets.token_urlsafe(24))" > $@

# The whole local job: synthetic raw loans → the training pipeline (features,
# quality gate, store load, training, model gate, promote) → the API on localhost.
run: install prereqs $(API_KEY_FILE) ## Set up and run the main job locally, then serve the API
	@if [ -n "$$(ls -A $(LOCAL_DIR)/lake/raw/loans 2>/dev/null)" ]; then \
	  echo "raw loans already in $(LOCAL_DIR)/lake/raw/loans (make clean starts over)"; \
	else $(RUN) credit-risk generate-data; fi
	@# Exit 3: a gate kept the current champion (a re-run that did not beat it);
	@# the API still serves that champion, and `serve` refuses when there is none.
	$(RUN) credit-risk pipeline run || [ $$? -eq 3 ]
	CREDIT_RISK_API_KEY="$$(cat $(API_KEY_FILE))" $(RUN) credit-risk serve --port $(PORT)

BENCHES := $(sort $(wildcard bench/*.py))

bench: install prereqs ## Run every benchmark (prints figures; not part of the tests)
	@for script in $(BENCHES); do echo "== $$script"; $(RUN) python $$script || exit 1; done

bench-%: install prereqs ## Run one benchmark, e.g. `make bench-store`
	$(RUN) python bench/$*.py

NPM_STAMP := node_modules/.package-lock.json

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund

# The Glue job runs glue_jobs/feature_extraction.py with this wheel as its
# --extra-py-files; CDK uploads both as assets (infra/components/feature_job.py).
glue-package: install ## Build the library wheel the Glue job imports (dist/)
	rm -rf dist
	$(UV) build --wheel --out-dir dist

openapi: install ## Regenerate openapi.json from the inference handler's routes and models
	$(RUN) credit-risk openapi --output openapi.json

# Offline: no credentials, no Docker engine (container images are only staged).
# Each deployment as `<market>-<env>[-standby]`: the default market's environments,
# prod's standby region, and prod of each market cdk.json declares.
SYNTH_DEPLOYMENTS := dev staging prod prod-standby mx-prod co-prod mx-prod-standby

synth: glue-package $(NPM_STAMP) ## Synthesize the deployments above and the release pipeline into cdk.out/
	@for deployment in $(SYNTH_DEPLOYMENTS); do \
	  echo "synth $$deployment"; \
	  npx --no-install cdk synth --quiet $$($(RUN) python infra/deployment_context.py $$deployment) \
	    -o cdk.out/$$deployment || exit 1; \
	done
	@echo "synth pipeline"
	npx --no-install cdk synth --quiet -c release_pipeline=true -o cdk.out/pipeline

# Needs the vulnerability databases (PyPI's advisory API, npm's registry): run by
# the weekly dependency check of the release pipeline, or by hand; not by tests.
PIP_AUDIT_VERSION := 2.9.0
AUDIT_DIR := .local/audit

audit: $(UV) $(NPM_STAMP) ## Audit the locked dependencies: vulnerable ones fail, outdated ones are listed
	mkdir -p $(AUDIT_DIR)
	$(UV) export --frozen --all-extras --all-groups --no-hashes --no-emit-project --quiet \
	  -o $(AUDIT_DIR)/requirements.txt
	$(UV) tree --frozen --outdated --depth 1 | grep "(latest:" > $(AUDIT_DIR)/outdated.txt || true
	npm outdated >> $(AUDIT_DIR)/outdated.txt || true
	@echo "outdated (locked → latest):"; cat $(AUDIT_DIR)/outdated.txt
	$(UV) tool run --from "pip-audit==$(PIP_AUDIT_VERSION)" pip-audit --strict --disable-pip \
	  --no-deps --progress-spinner off -r $(AUDIT_DIR)/requirements.txt
	npm audit --audit-level=moderate

clean: ## Remove local data and build outputs (keeps the environments)
	rm -rf .local cdk.out .pytest_cache .ruff_cache .hypothesis
