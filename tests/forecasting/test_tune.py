"""Ray Tune search of the LightGBM candidate's parameters (issue 14 item 4, ``app/forecasting/tune.py``).

The searches run inside real Ray jobs on the local cluster (``ray.init`` from a plain process cannot join it on
this machine) on 20 synthetic stores written as this module's own prepared dataset (``SFMLOPS_STATE_DIR`` of a
temporary folder), logging to an MLflow experiment of this module's own (removed afterwards).
"""

from __future__ import annotations

import json
import uuid

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from app.config import Settings
from app.forecasting.pipeline import TrainConfig

HORIZON = 48
N_STORES = 20
END = "2015-06-13"
#: Small and quick: LightGBM only, 20 rounds on one thread (so 2 trials at once on a 2-CPU head), no 7-day backtest.
COMMON = "--source dataset --no-neural --no-per-store --short-windows 0 --lgbm-rounds 20 --threads 1 --no-register"
TUNED = ("num_leaves", "learning_rate", "min_data_in_leaf", "feature_fraction", "lambda_l2")
#: A slow learning rate for 20 rounds as the candidate's own parameters (the first trial): the search beats it.
BASE = "--lgbm-param learning_rate=0.02"


# --- settings, config and the window (no services) -------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tune_trials": -1}, "tune_trials must be >= 0, got -1"),
        ({"tune_time_budget_s": 0}, "tune_time_budget_s must be > 0"),
        ({"tune_time_budget_s": -5.0}, "tune_time_budget_s must be > 0"),
    ],
)
def test_config_rejects_bad_tune_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)
    assert TrainConfig().tune_trials == 0 and TrainConfig().tune_time_budget_s is None  # off by default


@pytest.mark.parametrize(
    ("env", "field"), [("SFMLOPS_TRAIN_TUNE_TRIALS", "train_tune_trials"), ("SFMLOPS_TRAIN_TUNE_TIME_BUDGET_S", "train_tune_time_budget_s")]
)
def test_bad_tune_settings_fail_at_start_up_naming_the_setting(monkeypatch, env: str, field: str) -> None:
    from typer.testing import CliRunner

    from app.cli import app
    from app.config import get_settings

    monkeypatch.setenv(env, "-1")
    with pytest.raises(ValidationError, match=field):
        Settings(_env_file=None)
    monkeypatch.setenv(env, "many")
    with pytest.raises(ValidationError, match=field):
        Settings(_env_file=None)
    get_settings.cache_clear()
    try:
        out = CliRunner().invoke(app, ["train", "--stores", "1"])
    finally:
        get_settings.cache_clear()
    assert out.exit_code == 2 and env in out.output, out.output
    monkeypatch.delenv(env)
    assert Settings(_env_file=None).train_tune_trials == 0 and Settings(_env_file=None).train_tune_time_budget_s == 0


def test_cli_train_rejects_negative_trials() -> None:
    from typer.testing import CliRunner

    from app.cli import app
    from app.config import get_settings

    get_settings.cache_clear()
    try:
        out = CliRunner().invoke(app, ["train", "--stores", "1", "--tune-trials", "-1"])
    finally:
        get_settings.cache_clear()
    assert out.exit_code == 2 and "tune_trials must be >= 0, got -1" in out.output, out.output


def _long(days: int = 300, stores: int = 3, seed: int = 0) -> pd.DataFrame:
    from app.data import synthetic
    from app.forecasting.features import to_long

    end = pd.Timestamp(END)
    sales, _ = synthetic.generate(seed, stores, str((end - pd.Timedelta(days=days - 1)).date()), END)
    return to_long(sales)


def test_tune_window_stops_before_the_scored_window() -> None:
    from app.forecasting.tune import tune_window

    long = _long()
    hist, fut, cutoff, scored = tune_window(long, HORIZON)
    end = long["ds"].max()
    assert scored == end - pd.Timedelta(days=HORIZON) and cutoff == end - pd.Timedelta(days=2 * HORIZON)
    assert hist["ds"].max() == cutoff and fut["ds"].min() > cutoff and fut["ds"].max() == scored
    # whatever happens after the scored window's cutoff, the trials get the same frames
    after = long["ds"] > scored
    other = long.copy()
    other.loc[after, "y"] = other.loc[after, "y"] * 7 + 1
    other.loc[after, "promo"] = 1 - other.loc[after, "promo"]
    h2, f2, _, _ = tune_window(other, HORIZON)
    pd.testing.assert_frame_equal(h2, hist)
    pd.testing.assert_frame_equal(f2, fut)
    with pytest.raises(ValueError, match="tuning needs history before"):
        tune_window(_long(days=2 * HORIZON), HORIZON)


def test_outcome_says_when_the_budget_stopped_it() -> None:
    from app.forecasting.tune import TuneOutcome

    row = {"trial": 0, **dict.fromkeys(TUNED, 1), "rmspe": 0.2, "seconds": 1.0, "status": "done", "error": ""}
    stopped = {**row, "trial": 1, "rmspe": None, "status": "stopped"}
    base = {"budget_s": 3.0, "tune_cutoff": "x", "window_end": "y", "max_concurrent": 2, "cpus_per_trial": 1}
    early = TuneOutcome(requested=10, trials=[row, stopped], best_params={}, best_score=None, seconds=3.2, **base)
    assert early.done == 1 and early.stopped_early
    assert early.note.startswith("time budget of 3s reached: 1 of 10 trial(s) finished") and "keeps its parameters" in early.note
    full = TuneOutcome(requested=1, trials=[row], best_params={"num_leaves": 1}, best_score=0.2, seconds=3.5, **base)
    assert not full.stopped_early and full.summary()["trials"] == 1 and full.summary()["table"][0]["status"] == "done"
    assert full.summary()["best_rmspe"] == 0.2 and full.prefix == "tune"


# --- real searches in Ray jobs -----------------------------------------------------------------------------


def _write_dataset(folder, sales: pd.DataFrame, stores: pd.DataFrame) -> None:
    from app.data import SALES_FILE, STORES_FILE

    (folder / "data").mkdir(parents=True)
    sales.to_parquet(folder / "data" / SALES_FILE)
    stores.to_parquet(folder / "data" / STORES_FILE)


@pytest.fixture(scope="module")
def tune_data(stack: Settings, mlflow_cleaner, tmp_path_factory):
    """``(plain, scrambled)`` settings: 20 synthetic stores as a prepared dataset each; in ``scrambled`` the
    sales, customers and promotions of every day after the scored window's cutoff are changed at random."""
    from app.data import synthetic

    sales, stores = synthetic.generate(11, N_STORES, "2014-03-01", END)
    scored = pd.Timestamp(END) - pd.Timedelta(days=HORIZON)
    after = sales["date"] > scored
    rng = np.random.default_rng(5)
    other = sales.copy()
    factor = rng.uniform(0.3, 3.0, int(after.sum()))
    other.loc[after, "sales"] = (other.loc[after, "sales"] * factor).round().astype(other["sales"].dtype)
    other.loc[after, "customers"] = (other.loc[after, "customers"] * factor).round().astype(other["customers"].dtype)
    flip = after & (other["open"] == 1) & (rng.random(len(other)) < 0.3)
    other.loc[flip, "promo"] = 1 - other.loc[flip, "promo"]
    tag = uuid.uuid4().hex[:8]
    base = stack.model_copy(update={"model_name": f"sales-forecaster-test-{tag}", "mlflow_experiment": f"sfmlops-test-{tag}"})
    plain_dir, scrambled_dir = tmp_path_factory.mktemp("tune-plain"), tmp_path_factory.mktemp("tune-scrambled")
    _write_dataset(plain_dir, sales, stores)
    _write_dataset(scrambled_dir, other, stores)
    yield base.model_copy(update={"state_dir": plain_dir}), base.model_copy(update={"state_dir": scrambled_dir})
    mlflow_cleaner(base, base.model_name, base.mlflow_experiment)


@pytest.fixture(scope="module")
def tuned(tune_data):
    """The training job with a search of 4 trials on the plain data, logged to MLflow."""
    from test_integration import _submit

    out = _submit(tune_data[0], f"{COMMON} {BASE} --tune-trials 4")
    print("tune summary:", json.dumps(out["tune"]), "seconds:", json.dumps(out["seconds"]))  # for the record (-s)
    return out


def _scores(summary: dict) -> dict[tuple, float]:
    return {tuple(row[k] for k in TUNED): row["rmspe"] for row in summary["tune"]["table"]}


@pytest.mark.integration
@pytest.mark.slow
def test_search_runs_its_trials_and_the_lgbm_candidate_uses_the_best(tune_data, tuned: dict) -> None:
    import mlflow
    from mlflow import MlflowClient
    from test_integration import _submit

    from app.forecasting.models import DEFAULT_LGBM_PARAMS
    from app.forecasting.tracking import configure_mlflow

    tune = tuned["tune"]
    table = tune["table"]
    assert tune["requested"] == 4 and tune["trials"] == 4 and len(table) == 4
    assert all(r["status"] == "done" and r["rmspe"] > 0 and r["seconds"] > 0 for r in table)
    assert tune["cpus_per_trial"] == 1 and tune["max_concurrent"] >= 1 and tune["stopped_early"] is False
    # one trial is the candidate's own parameters; the best is the lowest calibration-origin RMSPE, another one
    own = {**{k: DEFAULT_LGBM_PARAMS[k] for k in TUNED}, "learning_rate": 0.02}
    assert own in [{k: r[k] for k in TUNED} for r in table]
    best = min(table, key=lambda r: r["rmspe"])
    assert tune["best_rmspe"] == best["rmspe"] and tune["best_params"] == {k: best[k] for k in TUNED} != own
    end = pd.Timestamp(END)
    assert tune["window_end"] == str((end - pd.Timedelta(days=HORIZON)).date())
    assert tune["tune_cutoff"] == str((end - pd.Timedelta(days=2 * HORIZON)).date())
    assert tuned["model"] == "lgbm" and tuned["seconds"]["tune"] > 0

    # MLflow: the best params, the candidate's LightGBM params (the tuned ones) and the search table
    configure_mlflow(tune_data[0])
    run = MlflowClient().get_run(tuned["run_id"])
    for k, v in tune["best_params"].items():
        assert run.data.params[f"tune_best_{k}"] == str(v)
        assert run.data.params[f"lgbm.lgb.{k}"] == str(v)
    assert run.data.params["tune_trials"] == "4" and run.data.metrics["tune_best_rmspe"] == pytest.approx(tune["best_rmspe"])
    path = mlflow.artifacts.download_artifacts(run_id=tuned["run_id"], artifact_path="tune/trials.csv")
    logged = pd.read_csv(path)
    assert len(logged) == 4 and set(logged["status"]) == {"done"}
    assert sorted(logged["rmspe"]) == pytest.approx(sorted(r["rmspe"] for r in table))
    assert {*TUNED, "seconds"} <= set(logged.columns)

    # The same training without a search but with the best params given by hand: the same LightGBM backtest.
    given = " ".join(f"--lgbm-param {k}={v}" for k, v in tune["best_params"].items())
    by_hand = _submit(tune_data[0], f"{COMMON} --no-mlflow {BASE} {given}")
    assert "tune" not in by_hand
    a = {r["model"]: r["rmspe"] for r in tuned["backtest"]["h48"]}
    b = {r["model"]: r["rmspe"] for r in by_hand["backtest"]["h48"]}
    assert a["lgbm"] == pytest.approx(b["lgbm"], rel=1e-12)


@pytest.mark.integration
@pytest.mark.slow
def test_trials_never_see_the_scored_window(tune_data, tuned: dict) -> None:
    from test_integration import _submit

    scrambled = _submit(tune_data[1], f"{COMMON} --no-mlflow {BASE} --tune-trials 4")
    assert _scores(scrambled) == _scores(tuned)  # the same configurations, bit-identical scores
    assert scrambled["tune"]["best_params"] == tuned["tune"]["best_params"]
    # while the scored window did change under them: every model's backtest score moved
    assert scrambled["median_baseline_rmspe"] != pytest.approx(tuned["median_baseline_rmspe"], rel=1e-3)
    assert scrambled["rmspe"] != pytest.approx(tuned["rmspe"], rel=1e-3)


@pytest.mark.integration
@pytest.mark.slow
def test_time_budget_stops_the_search_early(tune_data) -> None:
    from test_integration import _submit

    out = _submit(tune_data[0], f"{COMMON} --no-mlflow --tune-trials 40 --tune-time-budget-s 4")
    tune = out["tune"]
    assert tune["requested"] == 40 and tune["budget_s"] == 4.0
    assert tune["started"] <= 40 and tune["trials"] < 40
    assert tune["stopped_early"] is True and tune["note"].startswith("time budget of 4s reached"), tune["note"]
    assert out["model"] == "lgbm" and out["forecast_rows"] == N_STORES * HORIZON  # the training went on


# --- the neural candidate (neuralforecast AutoNHITS on Ray Tune) -------------------------------------------


def test_nhits_params_reach_the_neural_candidate() -> None:
    [nn] = [c for c in TrainConfig(nhits_params={"input_size": 144, "learning_rate": 0.002}, max_steps=7).candidates() if c.kind == "nhits"]
    model = nn.build()
    assert (model.input_size, model.learning_rate, model.max_steps) == (144, 0.002, 7)
    assert model.nhits_kwargs()["input_size"] == 144 and model.nhits_kwargs()["learning_rate"] == 0.002


@pytest.mark.integration
@pytest.mark.slow
def test_nhits_search_with_auto_nhits_declares_its_cpus_and_asha_ranks_the_trials(tune_data) -> None:
    from test_integration import _submit

    from app.forecasting.models import NeuralForecaster
    from app.forecasting.tune import NHITS_TUNED

    out = _submit(
        tune_data[0],
        "--source dataset --no-per-store --short-windows 0 --lgbm-rounds 10 --max-steps 8 --threads 1 --no-register --no-mlflow --tune-trials 2",
    )
    print("nhits tune:", json.dumps(out["tune_nhits"]), "seconds:", json.dumps(out["seconds"]))  # for the record (-s)
    nn = out["tune_nhits"]
    assert nn["model"] == "nhits" and nn["scheduler"] == "asha" and nn["metric"] == "val_loss"
    assert nn["requested"] == 2 and nn["started"] == 2 and nn["cpus_per_trial"] == 1
    table = nn["table"]
    assert {r["status"] for r in table} <= {"done", "pruned"} and any(r["status"] == "done" for r in table)
    # the candidate's own parameters are the first trial; the search space's values otherwise
    own = NeuralForecaster()
    assert {k: table[0][k] for k in NHITS_TUNED} == {k: getattr(own, k) for k in NHITS_TUNED}
    for r in table:
        assert r["input_size"] in (HORIZON, 2 * HORIZON, 4 * HORIZON) and 3e-4 <= r["learning_rate"] <= 3e-3
        assert r["windows_batch_size"] in (128, 256, 512) and r["val_loss"] > 0
    best = min((r for r in table if r["status"] == "done"), key=lambda r: r["val_loss"])
    assert nn["best_params"] == {k: best[k] for k in NHITS_TUNED} and nn["best_score"] == best["val_loss"]
    # the same calibration origin as the LightGBM search, which ran in the same stage
    assert (nn["tune_cutoff"], nn["window_end"]) == (out["tune"]["tune_cutoff"], out["tune"]["window_end"])
    assert out["seconds"]["tune_nhits"] > 0 and "nhits" in {r["model"] for r in out["backtest"]["h48"]}
