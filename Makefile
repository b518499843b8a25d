# sfmlops - every workflow is a make target; `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON      ?= python3.11
VENV        := .venv
PY          := $(VENV)/bin/python
UV          := $(VENV)/bin/uv
SFMLOPS     := $(VENV)/bin/sfmlops
UV_VERSION  := 0.13.8
# Downloads live in the git-ignored .cache/ folder (override to share a cache between clones).
export UV_CACHE_DIR ?= $(CURDIR)/.cache/uv
ROSSMANN_DIR ?= $(firstword $(wildcard ../shared/data/rossmann))
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: env-example help setup setup-dev lint system-deps up down status data demo test test-fast lock clean-state

help: ## List the targets
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z0-9_.-]+:.*?## / {printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

system-deps: ## Install OS packages the stack needs (PostgreSQL, Java 17, Maven, Prometheus + Alertmanager) if missing
	@bash app/stack/system-deps.sh

$(VENV)/.installed: pyproject.toml requirements/main.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) pip install -q --python $(PY) -r requirements/main.lock
	$(UV) pip install -q --python $(PY) --no-deps -e .
	@touch $@

# The test and lint tools (pytest, schemathesis, playwright, ruff, mypy, import-linter): the same pins as main.lock plus these.
$(VENV)/.dev-installed: requirements/dev.lock | $(VENV)/.installed
	$(UV) pip install -q --python $(PY) -r requirements/dev.lock
	@touch $@

.venv-emulator/.installed: requirements/emulator.lock
	@test -x .venv-emulator/bin/python || $(PYTHON) -m venv .venv-emulator
	$(UV) pip install -q --python .venv-emulator/bin/python -r requirements/emulator.lock
	@touch $@

.cache/jars/kafka.stamp: app/stack/maven/kafka-pom.xml | $(VENV)/.installed
	$(PY) -c "from app.config import get_settings; from app.stack.kafka import resolve_jars; print(resolve_jars(get_settings()))"
	@touch $@

SETUP_EXTRA ?=
setup: system-deps $(VENV)/.installed .venv-emulator/.installed .cache/jars/kafka.stamp $(SETUP_EXTRA) ## What the pipeline needs: virtualenvs and jars (idempotent; a second run is a no-op)
	@echo "setup complete"

# mk/terraform.mk (checkov, tflint built with Go) and mk/ui.mk (chromium) add their prerequisites.
setup-dev: setup $(VENV)/.dev-installed ## `setup` plus the test and lint tools (run by `make test`)
	@echo "setup-dev complete"

lock: ## Re-resolve the pinned dependency locks from pyproject.toml (dev.lock = main.lock's pins + the dev extra)
	$(UV) pip compile -q pyproject.toml --python-version 3.11 -o requirements/main.lock
	$(UV) pip compile -q pyproject.toml --extra dev -c requirements/main.lock --python-version 3.11 -o requirements/dev.lock
	$(UV) pip compile -q requirements/emulator.in --python-version 3.11 -o requirements/emulator.lock

up: setup ## Start the local stack (reuses running services)
	$(SFMLOPS) up

down: ## Stop the local stack
	@test -x $(SFMLOPS) && $(SFMLOPS) down || true

status: ## Show the local stack's services, health and memory
	$(SFMLOPS) status

data: setup ## Load the Rossmann data (../shared/data/rossmann if present, else synthetic)
	$(SFMLOPS) data $(if $(ROSSMANN_DIR),--path $(ROSSMANN_DIR),--synthetic)

demo: setup ## The main job end to end: stack, Terraform on the emulator, Kafka, Spark, Ray training via the API, forecasts
	$(SFMLOPS) demo $(if $(ROSSMANN_DIR),--path $(ROSSMANN_DIR)) $(DEMO_ARGS)

test: setup-dev lint ## Lint, then the whole test suite, real services included
	$(SFMLOPS) up
	SFMLOPS_TEST_ROSSMANN_DIR=$(ROSSMANN_DIR) $(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(VENV)/.dev-installed ## Tests that need no services
	$(PY) -m pytest -m "not integration and not slow" $(PYTEST_ARGS)

LINT_PATHS ?= .
lint: $(VENV)/.dev-installed ## ruff, mypy and import-linter (configuration in pyproject.toml)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

env-example: ## Regenerate .env.example from the Settings class
	$(PY) -c "from app.config import render_env_example; print(render_env_example(), end='')" > .env.example

clean-state: down ## Remove the local stack's state (databases, topics, logs)
	rm -rf .local

-include mk/*.mk
