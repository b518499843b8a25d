"""Hyperparameter search of the global LightGBM candidate with Ray Tune (issue 14 item 4, LightGBM half).

Switched on by ``TrainConfig.tune_trials`` > 0 (``SFMLOPS_TRAIN_TUNE_TRIALS``, ``sfmlops train --tune-trials``,
``train_all.py --tune-trials``); 0, the default, leaves training as it was. The search runs as a stage of its own
between load and plan (:func:`tune_stage`); its best trial's parameters become the ``lgbm_params`` of the
LightGBM candidate, for its backtest and its refit.

What a trial sees - the **calibration origin**, never the scored window: with ``h`` the main horizon and ``end``
the last day of the data, the backtest scores every candidate on ``(end - h, end]``. The search first drops
every row after ``end - h`` (:func:`tune_window`), then fits on the history up to ``end - 2h`` and scores the
RMSPE of the forecast of ``(end - 2h, end - h]`` - the first ``calib_windows`` origin of the backtest. So the
champion gate still compares candidates on days no trial has seen (tested by scrambling those days: the trial
scores do not change). The ensemble's weights are fitted on that same calibration origin, where the tuned
LightGBM is a little flattered; that shifts weight to LightGBM, never the scored comparison.

The search (Ray Tune, :class:`ray.tune.Tuner`):

* space (:func:`search_space`): ``num_leaves``, ``learning_rate``, ``min_data_in_leaf``, ``feature_fraction``,
  ``lambda_l2``; rounds fixed (the candidate's ``lgbm_rounds``, so the best parameters fit the rounds they are
  used with); the candidate's current parameters are the first trial (``points_to_evaluate``), so the search
  never picks something worse than them on the calibration origin;
* random search (``BasicVariantGenerator``, seeded: the same configurations in the same order every run);
* every trial declares ``cpu = threads`` (:func:`ray.tune.with_resources`), at most ``cluster CPUs // threads``
  trials run at once (the search generator's ``max_concurrent``: what the cluster's CPUs allow, counted when
  the search starts); trial actors are reused (``reuse_actors``: a fresh actor per trial cost ~8 s here);
* ``tune_time_budget_s``: Tune's ``time_budget_s``; when it is reached Tune starts no more trials (and stops
  the running ones); the summary says so (``stopped_early``, ``note``). When no trial finished, the candidate
  keeps its parameters.
* no ASHA: a trial's score is the RMSPE of the forecast, which exists only once the fit is done (the model
  corrects the store level and closed days after the booster); there is no cheap per-round value of it to stop
  on, and a LightGBM fit of a few hundred rounds is one step. Each trial reports once.

Results: the summary's ``tune`` (:meth:`TuneOutcome.summary`), the MLflow run's ``tune_best_*`` params,
``tune_best_rmspe`` metric and ``tune/trials.csv`` artifact (every trial's params, RMSPE, seconds, status).
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from app.forecasting.backtest import cutoffs, split
from app.forecasting.executor import run_storage

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings
    from app.forecasting.executor import Progress
    from app.forecasting.pipeline import TrainConfig, TrainingData

log = logging.getLogger(__name__)

#: The LightGBM parameters the search varies.
TUNED = ("num_leaves", "learning_rate", "min_data_in_leaf", "feature_fraction", "lambda_l2")
#: Random seed of the search (the configurations it draws).
SEED = 0


def search_space() -> dict[str, Any]:
    """The Ray Tune search space over :data:`TUNED` (log scales where the parameter acts multiplicatively)."""
    from ray import tune

    return {
        "num_leaves": tune.lograndint(15, 256),
        "learning_rate": tune.loguniform(0.02, 0.2),
        "min_data_in_leaf": tune.lograndint(10, 200),
        "feature_fraction": tune.uniform(0.5, 1.0),
        "lambda_l2": tune.loguniform(0.01, 10.0),
    }


def tune_window(long: pd.DataFrame, horizon: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp, pd.Timestamp]:
    """History and validation window of the trials: everything after the scored window's cutoff is dropped first.

    Returns:
        ``(history up to end - 2h, available rows of (end - 2h, end - h], tune cutoff, scored cutoff)``.

    Raises:
        ValueError: too little history for a calibration origin before the scored window.
    """
    [scored] = cutoffs(long["ds"].max(), horizon, 1)
    visible = long[long["ds"] <= scored]  # the scored window never leaves this function
    cutoff = scored - pd.Timedelta(days=horizon)
    hist, fut = split(visible, cutoff, horizon)
    if hist.empty or fut.empty:
        raise ValueError(
            f"tuning needs history before {cutoff.date()} and days up to {scored.date()} (2 x horizon {horizon} before the data's end)"
        )
    return hist, fut, cutoff, scored


def _trial(
    config: dict[str, Any], hist: pd.DataFrame, fut: pd.DataFrame, stores: pd.DataFrame, base: dict[str, Any], rounds: int | None, threads: int
) -> None:
    """One Tune trial: fit LightGBM with ``base`` overridden by ``config`` on ``hist``, report the RMSPE on ``fut``."""
    from ray import tune

    from app.forecasting.metrics import rmspe
    from app.forecasting.models import LGBMForecaster

    t0 = time.perf_counter()
    kw: dict[str, Any] = {"params": {**base, **config}, "num_threads": int(threads)}
    if rounds is not None:
        kw["num_boost_round"] = int(rounds)
    pred = LGBMForecaster(**kw).fit(hist, stores).predict(fut)
    tune.report({"rmspe": float(rmspe(pred["y"], pred["yhat"])), "seconds": round(time.perf_counter() - t0, 3)})


def _plain(value: Any) -> Any:
    """numpy scalars -> Python numbers (JSON, MLflow params)."""
    return value.item() if hasattr(value, "item") else value


@dataclass
class TuneOutcome:
    """What a search did.

    Attributes:
        requested: Trials asked for (``tune_trials``).
        budget_s: Time budget (None: none).
        trials: One dict per trial Tune created: ``trial`` (index), the :data:`TUNED` params, ``rmspe``,
            ``seconds`` (the trial's fit + forecast), ``status`` (``done``, ``error``, ``stopped``: no result
            before the budget ended the search) and ``error``.
        best_params: Parameters of the best finished trial (empty when none finished).
        best_rmspe: Its calibration-origin RMSPE (None when none finished).
        seconds: Wall seconds of the whole search.
        tune_cutoff / window_end: The calibration origin's cutoff and the last day any trial saw.
        max_concurrent: Trials allowed at once; cpus_per_trial: CPUs each declared.
    """

    requested: int
    budget_s: float | None
    trials: list[dict[str, Any]]
    best_params: dict[str, Any]
    best_rmspe: float | None
    seconds: float
    tune_cutoff: str
    window_end: str
    max_concurrent: int
    cpus_per_trial: int
    base_params: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return sum(1 for t in self.trials if t["status"] == "done")

    @property
    def stopped_early(self) -> bool:
        """The time budget ended the search before every requested trial finished."""
        return self.budget_s is not None and self.seconds >= self.budget_s and self.done < self.requested

    @property
    def note(self) -> str:
        text = f"{self.done} of {self.requested} trial(s) finished in {self.seconds:.1f}s"
        if self.stopped_early:
            text = f"time budget of {self.budget_s:g}s reached: " + text
        if not self.best_params:
            text += "; no trial finished, LightGBM keeps its parameters"
        return text

    def table(self) -> pd.DataFrame:
        cols = ["trial", *TUNED, "rmspe", "seconds", "status", "error"]
        return pd.DataFrame(self.trials, columns=cols)

    def summary(self) -> dict[str, Any]:
        """The ``tune`` entry of the training summary."""
        return {
            "trials": self.done, "requested": self.requested, "started": len(self.trials), "best_rmspe": self.best_rmspe,
            "best_params": dict(self.best_params), "seconds": round(self.seconds, 2), "budget_s": self.budget_s,
            "stopped_early": self.stopped_early, "note": self.note, "tune_cutoff": self.tune_cutoff, "window_end": self.window_end,
            "max_concurrent": self.max_concurrent, "cpus_per_trial": self.cpus_per_trial,
            "table": self.table().to_dict("records"),
        }


def _progress_callback(progress: Progress | None) -> Any:
    """A Tune callback counting finished/failed trials on the training's progress reporter (driver side; Tune
    pickles its run config into the experiment state, so the reporter is left out of the pickled state)."""
    from ray.tune import Callback

    class _Count(Callback):  # type: ignore[misc]
        # no closure over ``progress`` (cloudpickle would pickle the reporter with the class)
        def __init__(self, reporter: Progress | None) -> None:
            self.progress = reporter

        def __getstate__(self) -> dict[str, Any]:
            return {"progress": None}

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:  # noqa: ARG002
            if self.progress is not None:
                self.progress.finished(True)

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:  # noqa: ARG002
            if self.progress is not None:
                self.progress.finished(False)

    return _Count(progress)


def search(
    long: pd.DataFrame, stores: pd.DataFrame, *, horizon: int, trials: int, time_budget_s: float | None, threads: int,
    rounds: int | None, base_params: dict[str, Any], storage_path: str = "", progress: Progress | None = None, seed: int = SEED,
) -> TuneOutcome:
    """Run the search (joins the running Ray cluster, or starts Ray, when it is not initialized yet).

    Args:
        long, stores: The training data (only what :func:`tune_window` keeps goes to the trials).
        horizon: Main backtest horizon.
        trials: Trials (``num_samples``; the first one is ``base_params`` as they are).
        time_budget_s: Tune's ``time_budget_s`` (None: no budget).
        threads: LightGBM threads = CPUs each trial declares.
        rounds: Boosting rounds of every trial (None: the model's default).
        base_params: The candidate's parameters; the tuned keys override them.
        storage_path: Tune's run storage (empty: a temporary folder, removed afterwards).
    """
    import ray
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from app.forecasting.models import DEFAULT_LGBM_PARAMS

    if trials < 1:
        raise ValueError(f"tune_trials must be >= 1 to search, got {trials}")
    hist, fut, cutoff, scored = tune_window(long, horizon)
    t0 = time.perf_counter()
    if not ray.is_initialized():
        ray.init(log_to_driver=True)
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    concurrent = max(1, int(cpus // threads))
    current = {**DEFAULT_LGBM_PARAMS, **base_params}
    first = {k: _plain(current[k]) for k in TUNED}
    trainable = tune.with_resources(
        tune.with_parameters(_trial, hist=hist, fut=fut, stores=stores, base=dict(base_params), rounds=rounds, threads=int(threads)),
        {"cpu": int(threads)},
    )
    if progress is not None:
        progress.start("tune", trials)
    with run_storage(storage_path, "sfmlops-tune-") as storage:
        tuner = tune.Tuner(
            trainable,
            param_space=search_space(),
            tune_config=tune.TuneConfig(
                metric="rmspe", mode="min", num_samples=int(trials), time_budget_s=time_budget_s, reuse_actors=True,
                search_alg=BasicVariantGenerator(points_to_evaluate=[first], max_concurrent=concurrent, random_state=seed),
            ),
            run_config=tune.RunConfig(
                name=f"lgbm-tune-{uuid.uuid4().hex[:8]}", storage_path=storage, verbose=0, callbacks=[_progress_callback(progress)],
            ),
        )
        grid = tuner.fit()
    seconds = time.perf_counter() - t0
    rows: list[dict[str, Any]] = []
    for i, res in enumerate(grid):
        score = res.metrics.get("rmspe") if res.metrics else None
        ok = score is not None and math.isfinite(float(score))
        status = "error" if res.error is not None else ("done" if ok else "stopped")
        config = res.config or {}  # None for a trial that never reported
        rows.append({
            "trial": i, **{k: _plain(config.get(k)) for k in TUNED},
            "rmspe": float(score) if ok else None, "seconds": res.metrics.get("seconds") if res.metrics else None,
            "status": status, "error": str(res.error).splitlines()[0][:300] if res.error is not None else "",
        })
    done = [r for r in rows if r["status"] == "done"]
    best = min(done, key=lambda r: (r["rmspe"], r["trial"])) if done else None
    out = TuneOutcome(
        requested=int(trials), budget_s=time_budget_s, trials=rows,
        best_params={k: best[k] for k in TUNED} if best else {}, best_rmspe=best["rmspe"] if best else None,
        seconds=seconds, tune_cutoff=str(cutoff.date()), window_end=str(scored.date()), max_concurrent=concurrent,
        cpus_per_trial=int(threads), base_params=first,
    )
    log.info("lgbm tuning: %s; best %s rmspe=%s", out.note, out.best_params, out.best_rmspe)
    return out


def tune_stage(settings: Settings, config: TrainConfig, data: TrainingData, progress: Progress | None = None) -> tuple[TrainConfig, TuneOutcome]:
    """The pipeline's tune stage: search, then the config whose LightGBM candidate uses the best trial's params.

    Distributed LightGBM (``lgbm_workers`` > 1) is tuned with single-process trials on the calibration origin;
    the best parameters are then used by the data-parallel fits."""
    out = search(
        data.long, data.stores, horizon=config.horizon, trials=config.tune_trials, time_budget_s=config.tune_time_budget_s,
        threads=config.threads, rounds=config.lgbm_rounds, base_params=dict(config.lgbm_params),
        storage_path=settings.train_storage_path, progress=progress,
    )
    if not out.best_params:
        return config, out
    return replace(config, lgbm_params={**config.lgbm_params, **out.best_params}), out


def log_to_mlflow(settings: Settings, run_id: str, outcome: TuneOutcome) -> None:
    """Add the search to the training's MLflow run: ``tune_best_*`` params, ``tune_*`` metrics and the search
    table ``tune/trials.csv`` (+ ``tune/summary.json``)."""
    import json
    from pathlib import Path

    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    from app.forecasting.tracking import configure_mlflow

    configure_mlflow(settings)
    client = MlflowClient()
    now = int(time.time() * 1000)
    params = [Param(f"tune_best_{k}", str(v)) for k, v in outcome.best_params.items()]
    params += [Param("tune_requested", str(outcome.requested)), Param("tune_budget_s", str(outcome.budget_s))]
    metrics = [Metric("tune_trials", float(outcome.done), now, 0), Metric("tune_seconds", float(outcome.seconds), now, 0),
               Metric("tune_stopped_early", float(outcome.stopped_early), now, 0)]
    if outcome.best_rmspe is not None:
        metrics.append(Metric("tune_best_rmspe", float(outcome.best_rmspe), now, 0))
    client.log_batch(run_id, metrics=metrics, params=params)
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "trials.csv"
        outcome.table().to_csv(table, index=False)
        summary = Path(tmp) / "summary.json"
        summary.write_text(json.dumps({k: v for k, v in outcome.summary().items() if k != "table"}, indent=2, default=str))
        client.log_artifact(run_id, str(table), "tune")
        client.log_artifact(run_id, str(summary), "tune")


__all__ = ["TUNED", "TuneOutcome", "log_to_mlflow", "search", "search_space", "tune_stage", "tune_window"]
