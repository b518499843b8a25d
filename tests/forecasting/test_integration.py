"""End to end on the real local stack: a Ray job trains a few stores and logs to MLflow, the champion gate
works both ways, batch forecasts are idempotent, evaluate scores the champion."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid

import pandas as pd
import pytest

from app.config import PROJECT_ROOT, Settings

pytestmark = pytest.mark.integration

STORES = "1,2,3"
JOB_EXCLUDES = [
    ".git", ".venv", ".venv-*", ".cache", ".local", ".hypothesis", ".pytest_cache", "*.egg-info", "__pycache__",
    "terraform/.terraform", "screenshots", "tests",
]


@pytest.fixture(scope="module")
def fc_stack(stack: Settings, rossmann_dir, mlflow_cleaner):
    """The stack with the prepared dataset present, a model name and an MLflow experiment of its own (so the
    gate starts empty); every model named after it and the experiment's runs are removed afterwards."""
    from app.data import SALES_FILE, prepare

    if not (stack.data_dir / SALES_FILE).is_file():
        prepare(stack, rossmann_dir)
    tag = uuid.uuid4().hex[:8]
    s = stack.model_copy(update={"model_name": f"sales-forecaster-test-{tag}", "mlflow_experiment": f"sfmlops-test-{tag}"})
    yield s
    mlflow_cleaner(s, s.model_name, s.mlflow_experiment)


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith("SFMLOPS_")}
    env["SFMLOPS_MODEL_NAME"] = settings.model_name
    env["SFMLOPS_MLFLOW_EXPERIMENT"] = settings.mlflow_experiment
    env["SFMLOPS_STATE_DIR"] = str(settings.state_dir)
    env["SFMLOPS_TABLE_SALES"], env["SFMLOPS_TABLE_STORES"] = settings.table_sales, settings.table_stores
    return env


def _submit(settings: Settings, args: str, timeout_s: float = 1200, script: str = "ray_cluster/jobs/train_all.py") -> dict:
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(settings.ray_jobs_url)
    deadline = time.monotonic() + 180
    while True:  # a freshly started head answers 500 "No available agent" until its agent is up
        try:
            job_id = client.submit_job(
                # The head runs on this machine: use this interpreter (the head's PATH may lack the venv).
                entrypoint=f"{sys.executable} {script} {args}",
                runtime_env={"working_dir": str(PROJECT_ROOT), "excludes": JOB_EXCLUDES, "env_vars": _env(settings)},
            )
            break
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(5)
    deadline = time.monotonic() + timeout_s
    status = client.get_job_status(job_id)
    while status not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED} and time.monotonic() < deadline:
        time.sleep(3)
        status = client.get_job_status(job_id)
    logs = client.get_job_logs(job_id)
    if status != JobStatus.SUCCEEDED:
        client.stop_job(job_id)
        pytest.fail(f"ray job {job_id} ended {status}:\n{logs[-4000:]}")
    last = [line for line in logs.splitlines() if line.startswith("{")][-1]
    return json.loads(last)


@pytest.mark.slow
def test_ray_job_trains_logs_and_gates_both_ways(fc_stack: Settings) -> None:
    import mlflow
    from mlflow import MlflowClient

    from app.forecasting.registry import scope_aliases, scope_of
    from app.forecasting.tracking import configure_mlflow

    # A 3-store training is a subset: it competes for its scope's aliases, never for the chain's champion.
    champion, challenger = scope_aliases(scope_of([int(x) for x in STORES.split(",")]))
    common = f"--stores {STORES} --source dataset --short-windows 1"
    first = _submit(fc_stack, f"{common} --lgbm-rounds 60 --max-steps 3")
    assert first["stores"] == 3 and first["gate"]["decision"] == "scope_champion" and first["gate"]["alias"] == champion
    # The ensemble is there when at least two candidates get a weight (it depends on the data and the fits).
    assert {r["model"] for r in first["backtest"]["h48"]} - {"ensemble"} == {"lgbm", "nhits", "ses", "seasonal_naive", "median_dow_promo"}
    assert first["backtest"]["h7"], "7-day backtest missing"

    configure_mlflow(fc_stack)
    client = MlflowClient()
    run = client.get_run(first["run_id"])
    assert run.data.metrics["backtest_rmspe"] == pytest.approx(first["rmspe"])
    assert "h48.median_dow_promo.rmspe" in run.data.metrics and "h48.nhits.rmspe" in run.data.metrics
    arts = {a.path for a in client.list_artifacts(first["run_id"], "backtest")}
    assert "backtest/actual_vs_forecast.png" in arts
    assert client.get_model_version_by_alias(fc_stack.model_name, champion).version == first["model_version"]
    assert "champion" not in client.get_registered_model(fc_stack.model_name).aliases

    # A much worse model (one boosting round) does not move the alias.
    worse = _submit(fc_stack, f"{common} --lgbm-rounds 1 --no-neural --lgbm-param learning_rate=0.01")
    assert worse["rmspe"] > first["rmspe"]
    assert worse["gate"]["decision"] == "scope_challenger"
    assert worse["gate"]["champion_rmspe"] == pytest.approx(first["rmspe"], rel=1e-4)
    assert client.get_model_version_by_alias(fc_stack.model_name, champion).version == first["model_version"]
    assert client.get_model_version_by_alias(fc_stack.model_name, challenger).version == worse["model_version"]

    # The champion loads as a pyfunc and forecasts from its input example.
    model = mlflow.pyfunc.load_model(f"models:/{fc_stack.model_name}@{champion}")
    example = pd.DataFrame(
        {"store": [1, 2], "date": ["2015-06-14", "2015-06-15"], "open": [0, 1], "promo": [0, 1], "state_holiday": ["0", "0"], "school_holiday": [0, 0]}
    )
    out = model.predict(example)
    assert out["value"].tolist()[0] == 0.0 and out["value"].tolist()[1] > 0


@pytest.mark.slow
def test_gate_better_model_moves_champion(fc_stack: Settings) -> None:
    from mlflow import MlflowClient

    from app.forecasting.registry import champion_gate
    from app.forecasting.tracking import configure_mlflow

    configure_mlflow(fc_stack)
    client = MlflowClient()
    name = f"{fc_stack.model_name}-gate"
    client.create_registered_model(name)
    versions = [client.create_model_version(name, source="s3://nowhere/model").version for _ in range(4)]
    assert champion_gate(client, name, versions[0], 0.20)["decision"] == "champion"
    assert champion_gate(client, name, versions[1], 0.0998818)["decision"] == "champion"
    assert client.get_model_version_by_alias(name, "champion").version == versions[1]
    assert champion_gate(client, name, versions[2], 0.0998818)["decision"] == "challenger"  # a tie does not move it
    # the same score just under the champion's 6-decimal tag (0.099882) is still a tie
    assert champion_gate(client, name, versions[3], 0.09988181)["decision"] == "challenger"
    assert client.get_model_version_by_alias(name, "champion").version == versions[1]


@pytest.mark.slow
def test_batch_forecast_idempotent_and_evaluate(fc_stack: Settings, rossmann_dir, tmp_path) -> None:
    from app import db

    # A forecasts table of its own: the user's table (and what the API serves from it) is left alone.
    table = f"tfc{uuid.uuid4().hex[:8]}_forecasts"
    settings = fc_stack.model_copy(update={"model_name": f"{fc_stack.model_name}-batch", "table_forecasts": table})
    db.apply_migrations(settings)
    try:
        _batch_forecast_idempotent_and_evaluate(settings, tmp_path)
    finally:
        with db.transaction(settings) as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")


def _batch_forecast_idempotent_and_evaluate(settings: Settings, tmp_path) -> None:
    from app import db

    # Train on data that ends 14 days before the real end, so that the last 14 days are unseen actuals.
    from app.data import load_dataset
    from app.forecasting.batch import forecast
    from app.forecasting.evaluate import EvaluationError, evaluate
    from app.forecasting.pipeline import TrainConfig, train

    sales, stores = load_dataset(settings)
    sales = sales[sales["store"].isin([1, 2, 3])]
    end = sales["date"].max()
    held_out = sales[sales["date"] > end - pd.Timedelta(days=14)]
    hist_dir = tmp_path / "data"
    hist_dir.mkdir()
    sales[sales["date"] <= end - pd.Timedelta(days=14)].to_parquet(hist_dir / "sales.parquet")
    stores.to_parquet(hist_dir / "stores.parquet")
    local = settings.model_copy(update={"state_dir": tmp_path})
    result = train(local, TrainConfig(lgbm_rounds=40, neural=False, per_store=False, short_windows=0, source="dataset"))
    assert result["gate"]["decision"] == "champion"

    def count() -> tuple[int, object]:
        with db.transaction(settings) as conn, conn.cursor() as cur:
            cur.execute(
                f"SELECT count(*), max(created_at) FROM {settings.table_forecasts} WHERE model_name = %s AND model_version = %s",
                (settings.model_name, result["model_version"]),
            )
            return cur.fetchone()

    one = forecast(local, days=7, source="dataset")
    n1, t1 = count()
    two = forecast(local, days=7, source="dataset")
    n2, t2 = count()
    assert one["written"] == two["written"] == n1 == n2 == 3 * 7
    assert t2 >= t1

    actuals = tmp_path / "actuals.csv"
    kaggle = held_out.rename(
        columns={"store": "Store", "day_of_week": "DayOfWeek", "date": "Date", "sales": "Sales", "customers": "Customers",
                 "open": "Open", "promo": "Promo", "state_holiday": "StateHoliday", "school_holiday": "SchoolHoliday"}
    )
    kaggle.assign(Date=kaggle["Date"].dt.strftime("%Y-%m-%d")).to_csv(actuals, index=False)
    scored = evaluate(local, actuals)
    assert scored["rows"] == len(held_out) and scored["stores"] == 3 and scored["horizon_days"] == 14
    assert scored["model_version"] == result["model_version"] and 0 < scored["rmspe"] < 0.3
    overlap = tmp_path / "overlap.csv"
    kaggle.assign(Date=(kaggle["Date"] - pd.Timedelta(days=21)).dt.strftime("%Y-%m-%d")).to_csv(overlap, index=False)
    with pytest.raises(EvaluationError, match="overlapping the training data"):
        evaluate(local, overlap)
    unknown = tmp_path / "unknown.csv"
    one = kaggle[kaggle["Store"] == 1]
    one.assign(Store=999, Date=one["Date"].dt.strftime("%Y-%m-%d")).to_csv(unknown, index=False)
    with pytest.raises(EvaluationError, match="unknown to the model"):
        evaluate(local, unknown)


FANOUT = "--stores 1,2 --source dataset --no-neural --lgbm-rounds 10 --short-windows 1 --shard-stores 1"


@pytest.mark.slow
def test_fanned_out_job_equals_single_process(fc_stack: Settings) -> None:
    """The same training run as Ray tasks (default) and with every task in the driver gives the same backtest."""
    fanned = _submit(fc_stack, f"{FANOUT} --no-register")
    single = _submit(fc_stack, f"{FANOUT} --no-register --in-driver")
    assert fanned["executor"] == "ray" and single["executor"] == "local"
    # 4 candidates/baselines (ses in 2 shards) + refit and short backtest of the best + the forecast
    assert fanned["tasks"] == single["tasks"] >= 5 + 2
    assert fanned["failed_candidates"] == single["failed_candidates"] == []
    a = {r["model"]: r["rmspe"] for r in fanned["backtest"]["h48"]}
    b = {r["model"]: r["rmspe"] for r in single["backtest"]["h48"]}
    assert set(a) - {"ensemble"} == {"lgbm", "ses", "seasonal_naive", "median_dow_promo"} and a.keys() == b.keys()
    for name in a:
        assert a[name] == pytest.approx(b[name], abs=1e-9), name
    assert fanned["model"] == single["model"] and fanned["forecast_rows"] == single["forecast_rows"] == 2 * 48


@pytest.mark.slow
def test_failing_candidate_is_reported_and_the_best_of_the_rest_registered(fc_stack: Settings) -> None:
    from mlflow import MlflowClient

    from app.forecasting.tracking import configure_mlflow

    settings = fc_stack.model_copy(update={"model_name": f"{fc_stack.model_name}-fail"})
    out = _submit(settings, f"{FANOUT} --lgbm-param objective=no_such_objective")
    [failure] = out["failed_candidates"]
    assert failure["candidate"] == "lgbm" and "no_such_objective" in failure["error"]
    assert out["model"] == "ses" and out["model_version"] and out["gate"]["scope"].startswith("stores-")
    assert "lgbm" not in {r["model"] for r in out["backtest"]["h48"]}
    configure_mlflow(settings)
    client = MlflowClient()
    run = client.get_run(out["run_id"])
    assert run.data.tags["failed_candidates"] == "lgbm" and run.data.metrics["failed_candidates"] == 1.0
    assert "backtest/failures.json" in {a.path for a in client.list_artifacts(out["run_id"], "backtest")}
    assert client.get_model_version(settings.model_name, out["model_version"]).run_id == out["run_id"]
