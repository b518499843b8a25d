# Airflow (issues 8, 20): its own pinned virtualenv, the DAG tests, and the MWAA DAGs-bucket package.
# Target: Apache Airflow 3.3.2 (Task SDK 1.3.2), locally on Python 3.11; MWAA environment 3.3.2 (see dags/README.md).
# The last commit that supported Airflow 2.x (2.10.1) is eca6c73.
AIRFLOW_VERSION     := 3.3.2
AIRFLOW_PYTHON      := 3.11
# How `make airflow-lock` emulates the official constraints when GitHub is unreachable (requirements/airflow.in):
# every package as of the 3.3.2rc1 upload, Airflow's own distributions as of the 3.3.2 release.
AIRFLOW_CONSTRAINTS_CUT := 2026-09-13T15:06:00Z
AIRFLOW_RELEASED        := 2026-09-17T09:00:00Z
AIRFLOW_LOCK_FROM   ?= release-date
AIRFLOW_VENV        := .venv-airflow
AIRFLOW_PY          := $(AIRFLOW_VENV)/bin/python
AIRFLOW_CONSTRAINTS := .cache/airflow/constraints-$(AIRFLOW_VERSION)-$(AIRFLOW_PYTHON).txt
AIRFLOW_CONSTRAINTS_URL := https://raw.githubusercontent.com/apache/airflow/constraints-$(AIRFLOW_VERSION)/constraints-$(AIRFLOW_PYTHON).txt
DAGS_ZIP            := build/dags.zip

# `make setup` installs the Airflow virtualenv too (extra prerequisite of the root setup target).
setup: $(AIRFLOW_VENV)/.installed

.PHONY: airflow-setup airflow-constraints airflow-lock dags-vendor dags-package test-dags airflow-up

$(AIRFLOW_VENV)/.installed: requirements/airflow.lock | $(VENV)/.installed
	@test -x $(AIRFLOW_PY) || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(UV) pip sync -q --python $(AIRFLOW_PY) requirements/airflow.lock
	@touch $@

airflow-setup: $(AIRFLOW_VENV)/.installed ## Create .venv-airflow from requirements/airflow.lock (idempotent, stamp file)
	@$(AIRFLOW_VENV)/bin/airflow version

airflow-constraints: ## Download Airflow's official constraints file for AIRFLOW_VERSION into .cache/airflow/
	@mkdir -p $(dir $(AIRFLOW_CONSTRAINTS))
	curl -fsSL --retry 2 -o $(AIRFLOW_CONSTRAINTS).tmp $(AIRFLOW_CONSTRAINTS_URL) && mv $(AIRFLOW_CONSTRAINTS).tmp $(AIRFLOW_CONSTRAINTS)

airflow-lock: | $(VENV)/.installed ## Re-resolve requirements/airflow.lock (AIRFLOW_LOCK_FROM=constraints: under the official file)
ifeq ($(AIRFLOW_LOCK_FROM),constraints)
	@test -f $(AIRFLOW_CONSTRAINTS) || $(MAKE) airflow-constraints
	$(UV) pip compile -q requirements/airflow.in -c $(AIRFLOW_CONSTRAINTS) --python-version $(AIRFLOW_PYTHON) -o requirements/airflow.lock
else
	$(UV) pip compile -q --upgrade requirements/airflow.in --python-version $(AIRFLOW_PYTHON) \
	  --exclude-newer $(AIRFLOW_CONSTRAINTS_CUT) \
	  $(foreach d,apache-airflow apache-airflow-core apache-airflow-task-sdk,--exclude-newer-package $(d)=$(AIRFLOW_RELEASED)) \
	  -o requirements/airflow.lock
endif

DAGS_COMMON := dags/sfmlops_dag_utils/common
dags-vendor: ## Copy app/common (job states, job results, the API client) verbatim into the DAG bundle (dags/sfmlops_dag_utils/common)
	@rm -rf $(DAGS_COMMON) && mkdir -p $(DAGS_COMMON) && cp app/common/*.py $(DAGS_COMMON)/
	@echo "$(DAGS_COMMON): $$(ls $(DAGS_COMMON) | tr '\n' ' ')"

dags-package: dags-vendor ## Build build/dags.zip (DAG files, helper package, .airflowignore) for the MWAA DAGs bucket
	@mkdir -p build
	@rm -f $(DAGS_ZIP)
	@python3 -c 'import pathlib, zipfile, sys; root = pathlib.Path("dags"); \
		files = [root / "sales_ingest_daily.py", root / "sales_train_weekly.py", root / ".airflowignore", \
			*sorted(p for p in (root / "sfmlops_dag_utils").rglob("*.py"))]; \
		z = zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED); \
		[z.write(f, f.relative_to(root).as_posix()) or print("  " + f.relative_to(root).as_posix()) for f in files]; z.close()' $(DAGS_ZIP)
	@echo "$(DAGS_ZIP): $$(stat -c %s $(DAGS_ZIP)) bytes (Airflow $(AIRFLOW_VERSION) DAG bundle); upload its contents to s3://<dags bucket>/dags/ and dags/requirements.txt to s3://<dags bucket>/requirements.txt (MWAA $(AIRFLOW_VERSION))"

test-dags: airflow-setup $(VENV)/.dev-installed ## DAG tests in .venv-airflow (DagBag, failing tasks, dag.test() end to end on the stack)
	$(SFMLOPS) up
	$(PY) -m pytest tests/dags $(PYTEST_ARGS)

airflow-up: airflow-setup ## Start the local stack with Airflow standalone on 127.0.0.1:SFMLOPS_AIRFLOW_PORT
	$(SFMLOPS) up --with-airflow
