"""Hyperparameter search of the global LightGBM and the neural (NHITS) candidates with Ray Tune (issue 14 item 4).

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

The neural candidate (:func:`search_nhits`, when the training has it): neuralforecast's ``AutoNHITS`` with
``backend="ray"`` over :data:`NHITS_TUNED` on the same calibration origin (the frame ends at the scored window's
cutoff; neuralforecast validates on its last ``h`` days), the candidate's own parameters as the first trial,
``cpus = threads`` and no GPU per trial (``RayOptions``: neuralforecast's default is the whole machine), the same
trial count and time budget. Unlike LightGBM's, a neural trial has a score before it ends: neuralforecast reports
the validation loss (MAE of log sales on open days) every ``max_steps / NHITS_REPORTS`` steps, and **ASHA** stops
the trials that are behind at a rung (status ``pruned``). ``AutoNHITS``' own refit of the best configuration is
skipped (it would fit in the driver, outside any declared resources); the candidate's backtest and refit use the
best parameters (``TrainConfig.nhits_params``).

Results: the summary's ``tune`` / ``tune_nhits`` (:meth:`TuneOutcome.summary`), the MLflow run's ``tune_best_*`` /
``tune_nhits_best_*`` params, ``tune_best_rmspe`` / ``tune_nhits_best_val_loss`` metrics and the
``tune/trials.csv`` / ``tune_nhits/trials.csv`` artifacts (every trial's params, score, seconds, status).
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


def _concurrent_trials(trials: int, threads: float) -> int:
    """Trials that run at once: the cluster's CPUs (counted now, Ray started if needed) over each trial's ``threads``.

    Raises:
        ValueError: ``trials`` < 1.
    """
    import ray

    if trials < 1:
        raise ValueError(f"tune_trials must be >= 1 to search, got {trials}")
    if not ray.is_initialized():
        ray.init(log_to_driver=True)
    return max(1, int(float(ray.cluster_resources().get("CPU", 1.0)) // threads))


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
        best_score: Its calibration-origin score in ``metric`` (RMSPE for LightGBM; None when none finished).
        seconds: Wall seconds of the whole search.
        tune_cutoff / window_end: The calibration origin's cutoff and the last day any trial saw.
        max_concurrent: Trials allowed at once; cpus_per_trial: CPUs each declared.
    """

    requested: int
    budget_s: float | None
    trials: list[dict[str, Any]]
    best_params: dict[str, Any]
    best_score: float | None
    seconds: float
    tune_cutoff: str
    window_end: str
    max_concurrent: int
    cpus_per_trial: int
    base_params: dict[str, Any] = field(default_factory=dict)
    model: str = "lgbm"
    keys: tuple[str, ...] = TUNED
    metric: str = "rmspe"
    scheduler: str = "fifo"

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
        pruned = sum(1 for t in self.trials if t["status"] == "pruned")
        if pruned:
            text += f", {pruned} stopped early by {self.scheduler.upper()}"
        if not self.best_params:
            text += f"; no trial finished, {self.model} keeps its parameters"
        return text

    @property
    def prefix(self) -> str:
        """Name prefix of the search's MLflow params/metrics and artifact folder (``tune`` for LightGBM)."""
        return "tune" if self.model == "lgbm" else f"tune_{self.model}"

    def table(self) -> pd.DataFrame:
        cols = ["trial", *self.keys, self.metric, "seconds", "status", "error"]
        return pd.DataFrame(self.trials, columns=cols)

    def summary(self) -> dict[str, Any]:
        """The ``tune`` entry of the training summary."""
        return {
            "trials": self.done, "requested": self.requested, "started": len(self.trials), "best_rmspe": self.best_score if self.metric == "rmspe" else None,
            "best_score": self.best_score,
            "best_params": dict(self.best_params), "seconds": round(self.seconds, 2), "budget_s": self.budget_s,
            "stopped_early": self.stopped_early, "note": self.note, "tune_cutoff": self.tune_cutoff, "window_end": self.window_end,
            "max_concurrent": self.max_concurrent, "cpus_per_trial": self.cpus_per_trial,
            "model": self.model, "metric": self.metric, "scheduler": self.scheduler,
            "table": self.table().to_dict("records"),
        }


def _progress_callback(progress: Progress | None) -> Any:
    """A Tune callback counting finished/failed trials on the training's progress reporter (driver side; Tune
    pickles its run config into the experiment state, so the reporter is left out of the pickled state)."""
    from ray.tune import Callback

    class _Count(Callback):
        # no closure over ``progress`` (cloudpickle would pickle the reporter with the class)
        def __init__(self, reporter: Progress | None) -> None:
            self.progress = reporter

        def __getstate__(self) -> dict[str, Any]:
            return {"progress": None}

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            if self.progress is not None:
                self.progress.finished(True)

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
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
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from app.forecasting.models import DEFAULT_LGBM_PARAMS

    concurrent = _concurrent_trials(trials, threads)
    hist, fut, cutoff, scored = tune_window(long, horizon)
    t0 = time.perf_counter()
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
    for i in range(len(grid)):  # by index: ResultGrid has __len__ and __getitem__, no __iter__ for mypy to follow
        res = grid[i]
        score = res.metrics.get("rmspe") if res.metrics else None
        ok = score is not None and math.isfinite(float(score))
        status = "error" if res.error is not None else ("done" if ok else "stopped")
        config = res.config or {}  # None for a trial that never reported
        rows.append({
            "trial": i, **{k: _plain(config.get(k)) for k in TUNED},
            "rmspe": float(score) if ok and score is not None else None, "seconds": res.metrics.get("seconds") if res.metrics else None,
            "status": status, "error": str(res.error).splitlines()[0][:300] if res.error is not None else "",
        })
    done = [r for r in rows if r["status"] == "done"]
    best = min(done, key=lambda r: (r["rmspe"], r["trial"])) if done else None
    out = TuneOutcome(
        requested=int(trials), budget_s=time_budget_s, trials=rows,
        best_params={k: best[k] for k in TUNED} if best else {}, best_score=best["rmspe"] if best else None,
        seconds=seconds, tune_cutoff=str(cutoff.date()), window_end=str(scored.date()), max_concurrent=concurrent,
        cpus_per_trial=int(threads), base_params=first,
    )
    log.info("lgbm tuning: %s; best %s rmspe=%s", out.note, out.best_params, out.best_score)
    return out


#: The NHITS parameters the neural search varies.
NHITS_TUNED = ("input_size", "learning_rate", "windows_batch_size")
#: Validation reports per neural trial (ASHA's rungs; neuralforecast reports at every ``val_check_steps``).
NHITS_REPORTS = 4


def nhits_search_space(horizon: int) -> dict[str, Any]:
    """The Ray Tune search space over :data:`NHITS_TUNED`: input window of 1-4 horizons, learning rate, windows per step."""
    from ray import tune

    return {
        "input_size": tune.choice([horizon, 2 * horizon, 4 * horizon]),
        "learning_rate": tune.loguniform(3e-4, 3e-3),
        "windows_batch_size": tune.choice([128, 256, 512]),
    }


def _search_only_auto() -> Any:
    """neuralforecast's ``AutoNHITS`` that searches only: its own ``fit`` ends with a refit of the best
    configuration in the calling process (the training's driver, outside any declared Ray resources) that
    nobody uses here - the candidate's backtest and refit fit the best parameters as Ray tasks."""
    from copy import deepcopy

    from neuralforecast.auto import AutoNHITS

    class SearchOnlyNHITS(AutoNHITS):
        def fit(self, dataset: Any, val_size: int = 0, test_size: int = 0, random_seed: int | None = None, distributed_config: Any = None) -> Any:
            self.results = self._tune_model(
                cls_model=self.cls_model, dataset=dataset, val_size=val_size or self.h, test_size=test_size,
                cpus=self.cpus, gpus=self.gpus, verbose=self.verbose, num_samples=self.num_samples,
                search_alg=deepcopy(self.search_alg), config=self.config, time_budget=self.time_budget,
            )
            return self

    return SearchOnlyNHITS


def search_nhits(
    long: pd.DataFrame, stores: pd.DataFrame, *, horizon: int, trials: int, time_budget_s: float | None, threads: int,
    base_params: dict[str, Any], storage_path: str = "", progress: Progress | None = None, seed: int = SEED,
) -> TuneOutcome:
    """Search the neural candidate's parameters with neuralforecast's ``AutoNHITS`` on Ray Tune (``backend="ray"``).

    The same calibration origin as the LightGBM search: the frame ends at the scored window's cutoff
    (:func:`tune_window`) and neuralforecast validates on its last ``horizon`` days. Each trial declares
    ``cpu = threads`` and no GPU (``RayOptions``; neuralforecast's default would be the whole machine), reports its
    validation loss (MAE of log sales on open days: a relative error, like RMSPE) :data:`NHITS_REPORTS` times,
    and ASHA stops the trials that are behind at a rung. The first trial is ``base_params`` as they are.

    Args:
        base_params: The candidate's :class:`~app.forecasting.models.NeuralForecaster` keyword arguments
            (``h``, ``max_steps``, ...); the tuned keys override them.
    """
    from neuralforecast import NeuralForecast
    from neuralforecast.auto import RayOptions
    from neuralforecast.losses.pytorch import MAE
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from app.forecasting import features as F
    from app.forecasting.models import NeuralForecaster

    concurrent = _concurrent_trials(trials, threads)
    hist, fut, cutoff, scored = tune_window(long, horizon)
    t0 = time.perf_counter()
    model = NeuralForecaster(**{**base_params, "h": horizon, "num_threads": int(threads)})
    first = {k: _plain(getattr(model, k)) for k in NHITS_TUNED}
    every = max(1, int(model.max_steps) // NHITS_REPORTS)
    config = {**model.nhits_kwargs(), **nhits_search_space(horizon), "val_check_steps": every}
    # The level the target is relative to comes from the history before the validation window only.
    frame = NeuralForecaster._frame(pd.concat([hist, fut], ignore_index=True), F.fit_store_stats(hist, events=True))
    static = NeuralForecaster.static_frame(stores, frame["unique_id"].unique())
    if progress is not None:
        progress.start("tune_nhits", trials)
    with run_storage(storage_path, "sfmlops-tune-") as storage:
        auto = _search_only_auto()(
            h=horizon, loss=MAE(), config=config, num_samples=int(trials), time_budget=time_budget_s, backend="ray",
            search_alg=BasicVariantGenerator(points_to_evaluate=[first], max_concurrent=concurrent, random_state=seed),
            ray_options=RayOptions(
                cpus=int(threads), gpus=0,
                scheduler=ASHAScheduler(time_attr="training_iteration", max_t=NHITS_REPORTS, grace_period=1, reduction_factor=2),
                run_config=tune.RunConfig(
                    name=f"nhits-tune-{uuid.uuid4().hex[:8]}", storage_path=storage, verbose=0, callbacks=[_progress_callback(progress)],
                ),
            ),
        )
        nf = NeuralForecast(models=[auto], freq="D")  # keeps copies of its models: the search's results are on nf's
        nf.fit(df=frame, static_df=static, val_size=horizon)
        grid = nf.models[0].results
    seconds = time.perf_counter() - t0
    rows: list[dict[str, Any]] = []
    for i, res in enumerate(grid):
        metrics = res.metrics or {}
        score = metrics.get("loss")
        ok = score is not None and math.isfinite(float(score))
        reports = int(metrics.get("training_iteration", 0) or 0)
        status = "error" if res.error is not None else ("stopped" if not ok else ("done" if reports >= NHITS_REPORTS else "pruned"))
        cfg = res.config or {}
        rows.append({
            "trial": i, **{k: _plain(cfg.get(k)) for k in NHITS_TUNED}, "val_loss": float(score) if ok and score is not None else None,
            "seconds": round(float(metrics["time_total_s"]), 3) if "time_total_s" in metrics else None,
            "status": status, "error": str(res.error).splitlines()[0][:300] if res.error is not None else "",
        })
    done = [r for r in rows if r["status"] == "done"]
    best = min(done, key=lambda r: (r["val_loss"], r["trial"])) if done else None
    out = TuneOutcome(
        requested=int(trials), budget_s=time_budget_s, trials=rows,
        best_params={k: best[k] for k in NHITS_TUNED} if best else {}, best_score=best["val_loss"] if best else None,
        seconds=seconds, tune_cutoff=str(cutoff.date()), window_end=str(scored.date()), max_concurrent=concurrent,
        cpus_per_trial=int(threads), base_params=first, model="nhits", keys=NHITS_TUNED, metric="val_loss", scheduler="asha",
    )
    log.info("nhits tuning: %s; best %s val_loss=%s", out.note, out.best_params, out.best_score)
    return out


def tune_stage(
    settings: Settings, config: TrainConfig, data: TrainingData, progress: Progress | None = None
) -> tuple[TrainConfig, list[TuneOutcome]]:
    """The pipeline's tune stage: a search per tuned family (LightGBM, then the neural candidate), then the config
    whose candidates use the best trials' parameters.

    Distributed LightGBM (``lgbm_workers`` > 1) is tuned with single-process trials on the calibration origin;
    the best parameters are then used by the data-parallel fits."""
    outcomes: list[TuneOutcome] = []
    if config.lgbm:
        out = search(
            data.long, data.stores, horizon=config.horizon, trials=config.tune_trials, time_budget_s=config.tune_time_budget_s,
            threads=config.threads, rounds=config.lgbm_rounds, base_params=dict(config.lgbm_params),
            storage_path=settings.train_storage_path, progress=progress,
        )
        outcomes.append(out)
        if out.best_params:
            config = replace(config, lgbm_params={**config.lgbm_params, **out.best_params})
    if config.neural:
        [nhits] = [c for c in config.candidates() if c.kind == "nhits"]
        out = search_nhits(
            data.long, data.stores, horizon=config.horizon, trials=config.tune_trials, time_budget_s=config.tune_time_budget_s,
            threads=config.threads, base_params=dict(nhits.params), storage_path=settings.train_storage_path, progress=progress,
        )
        outcomes.append(out)
        if out.best_params:
            config = replace(config, nhits_params={**config.nhits_params, **out.best_params})
    return config, outcomes


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
    pre = outcome.prefix
    params = [Param(f"{pre}_best_{k}", str(v)) for k, v in outcome.best_params.items()]
    params += [Param(f"{pre}_requested", str(outcome.requested)), Param(f"{pre}_budget_s", str(outcome.budget_s))]
    metrics = [Metric(f"{pre}_trials", float(outcome.done), now, 0), Metric(f"{pre}_seconds", float(outcome.seconds), now, 0),
               Metric(f"{pre}_stopped_early", float(outcome.stopped_early), now, 0)]
    if outcome.best_score is not None:
        metrics.append(Metric(f"{pre}_best_{outcome.metric}", float(outcome.best_score), now, 0))
    client.log_batch(run_id, metrics=metrics, params=params)
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "trials.csv"
        outcome.table().to_csv(table, index=False)
        summary = Path(tmp) / "summary.json"
        summary.write_text(json.dumps({k: v for k, v in outcome.summary().items() if k != "table"}, indent=2, default=str))
        client.log_artifact(run_id, str(table), pre)
        client.log_artifact(run_id, str(summary), pre)


__all__ = ["NHITS_TUNED", "TUNED", "TuneOutcome", "log_to_mlflow", "nhits_search_space", "search", "search_nhits", "search_space", "tune_stage", "tune_window"]
