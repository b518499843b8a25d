# Forecasting (issue 5): training through Ray, batch forecast, evaluation, benchmark, tests.
FC_STORES    ?=
FC_MAX_STEPS ?= 100
FC_DAYS      ?= 48
FC_ACTUALS   ?=
FC_JOB_EXCLUDES := [".git", ".venv", ".venv-*", ".cache", ".local", ".hypothesis", ".pytest_cache", "*.egg-info", "__pycache__", "screenshots", "tests"]

.PHONY: fc-train fc-train-local fc-train-store fc-forecast fc-evaluate fc-bench fc-test fc-test-unit

fc-train: ## Train all stores (or FC_STORES=1,2) as a Ray job on the local head (backtest, MLflow, champion gate)
	$(VENV)/bin/ray job submit --address $$($(PY) -c "from app.config import get_settings as g; print(g().ray_jobs_url)") \
	  --runtime-env-json '{"working_dir": ".", "excludes": $(FC_JOB_EXCLUDES)}' \
	  -- $(CURDIR)/$(PY) ray_cluster/jobs/train_all.py $(if $(FC_STORES),--stores $(FC_STORES)) --max-steps $(FC_MAX_STEPS)

fc-train-local: ## Same training in this process, without Ray
	nice -n 19 $(PY) ray_cluster/jobs/train_all.py --in-driver $(if $(FC_STORES),--stores $(FC_STORES)) --max-steps $(FC_MAX_STEPS)

fc-train-store: ## Retrain and re-forecast one store as a Ray job (FC_STORE=7)
	$(VENV)/bin/ray job submit --address $$($(PY) -c "from app.config import get_settings as g; print(g().ray_jobs_url)") \
	  --runtime-env-json '{"working_dir": ".", "excludes": $(FC_JOB_EXCLUDES)}' \
	  -- $(CURDIR)/$(PY) ray_cluster/jobs/train_store.py --store $(FC_STORE)

fc-forecast: ## Write the champion's forecasts for every store for FC_DAYS days to the forecasts table
	$(PY) -c "import json; from app.config import get_settings; from app.forecasting.batch import forecast; print(json.dumps(forecast(get_settings(), $(FC_DAYS))))"

fc-evaluate: ## Score the champion on FC_ACTUALS (Kaggle train.csv format, dates after the training data)
	$(PY) -c "import json, sys; from app.config import get_settings; from app.forecasting.evaluate import evaluate; print(json.dumps(evaluate(get_settings(), sys.argv[1])))" "$(FC_ACTUALS)"

fc-bench: ## Benchmark full training + 48-day forecast on all stores (one JSON line)
	nice -n 19 $(PY) -c "import json; from app.config import get_settings; from app.bench.train import run; print(json.dumps(run(get_settings())))"

fc-test-unit: $(VENV)/.dev-installed ## Forecasting unit tests (real shared data, no services)
	$(PY) -m pytest tests/forecasting -m "not integration" $(PYTEST_ARGS)

fc-test: $(VENV)/.dev-installed ## All forecasting tests, including the Ray/MLflow/Postgres ones on the local stack
	$(PY) -m pytest tests/forecasting $(PYTEST_ARGS)
