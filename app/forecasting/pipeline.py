"""The training pipeline, stage by stage, configured by one :class:`TrainConfig`:

1. **load** - sales and stores (:func:`app.forecasting.data.load_training_data`) -> :class:`TrainingData`;
2. **plan** - the candidates (LightGBM, NHITS, per-store statsforecast) and the backtest tasks
   (candidate x origin x store shard, :mod:`app.forecasting.plan`);
3. **backtest** - every task through the executor (in-process or fanned out on Ray), candidates vs baselines;
4. **select** - the best candidate on the main horizon's last origin, the ensemble of the candidates (weights
   fitted on the earlier ``calib_windows`` origins) included; failed candidates are reported, not fatal;
5. **refit** - the best on all data (and its short-horizon backtest, in the same wave of tasks), then the
   batch forecast of the horizon as a task of its own;
6. **log** - the MLflow run (:func:`app.forecasting.run_log.log_training_run`);
7. **register/gate** - a new registry version with its scope, gated for the alias
   (:func:`app.forecasting.registry.register_and_gate`).

Called by the Ray job entrypoints (``ray_cluster/jobs/``), ``sfmlops train`` and the benchmarks.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from app.forecasting import ensemble as E
from app.forecasting import features as F
from app.forecasting.backtest import BacktestResult, interval_quantiles
from app.forecasting.executor import Call, LocalExecutor, Progress, RayExecutor, make_executor, peak_rss_mb
from app.forecasting.plan import Candidate, Task, baselines, plan_backtest, plan_refit, run_forecast, run_task

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings

log = logging.getLogger(__name__)

MEDIAN_BASELINE = "median_dow_promo"
SEASONAL_NAIVE = "seasonal_naive"


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides the settings.

    Attributes:
        stores: Train on these stores only (all stores when None); decides the model's registry scope.
        source: Data source (``auto``, ``postgres``, ``dataset``).
        horizon: Main backtest horizon (days); the model is chosen on it and forecasts it.
        short_horizon: Second backtest horizon, of the chosen model only.
        short_windows: Rolling origins of the short-horizon backtest (0 disables it).
        lgbm: Backtest the global LightGBM candidate.
        lgbm_rounds: Its boosting rounds (default: the model's).
        lgbm_params: Extra LightGBM parameters.
        lgbm_workers: Ray Train workers of each LightGBM fit (1: one process; more: data-parallel on Ray Train,
            :mod:`app.forecasting.distributed`; its task then only coordinates and reserves no CPU).
        neural: Backtest the neuralforecast (NHITS) candidate.
        max_steps: Its training steps (default: the model's).
        nhits_params: Extra :class:`~app.forecasting.models.NeuralForecaster` arguments (the neural search's best).
        per_store: Backtest the local per-store statsforecast family (``per_store_model``).
        per_store_model: ``ses`` (seasonal exponential smoothing) or ``ets`` (AutoETS).
        calib_windows: Backtest origins before the scored one (every candidate; they fit the ensemble's weights
            and calibrate and measure the intervals, never the candidates' scores).
        ensemble: Add the blend of the candidates (weights fitted on the ``calib_windows`` origins) as a
            candidate of its own (:mod:`app.forecasting.ensemble`).
        shard_stores: Stores per task of a per-store family.
        threads: Threads (and so CPUs per task) of LightGBM / torch.
        tune_trials: Ray Tune trials of each tuned candidate's parameters (LightGBM; NHITS through neuralforecast's
            ``AutoNHITS``) before the backtest (0: no search; :mod:`app.forecasting.tune`: scored on the
            calibration origin, never the scored window).
        tune_time_budget_s: Time budget of each search (None: none); Tune starts no trial after it.
        log_mlflow: Log to MLflow at all (False for offline experiments and the benchmark baseline).
        register: Register the model and run the champion gate (needs ``log_mlflow``).
        run_name: MLflow run name.
        tags: Extra MLflow run tags.
    """

    stores: tuple[int, ...] | None = None
    source: str = "auto"
    horizon: int = 48
    short_horizon: int = 7
    short_windows: int = 2
    lgbm: bool = True
    lgbm_rounds: int | None = None
    lgbm_params: dict[str, Any] = field(default_factory=dict, hash=False)
    lgbm_workers: int = 1
    neural: bool = True
    max_steps: int | None = None
    nhits_params: dict[str, Any] = field(default_factory=dict, hash=False)
    per_store: bool = True
    per_store_model: str = "ses"
    calib_windows: int = 1
    ensemble: bool = True
    shard_stores: int = 250
    threads: int = 2
    tune_trials: int = 0
    tune_time_budget_s: float | None = None
    log_mlflow: bool = True
    register: bool = True
    run_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.stores is not None:
            object.__setattr__(self, "stores", tuple(sorted({int(s) for s in self.stores})) or None)
        for name in ("horizon", "short_horizon", "threads", "shard_stores", "lgbm_workers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.short_windows < 0:
            raise ValueError(f"short_windows must be >= 0, got {self.short_windows}")
        if self.calib_windows < 0:
            raise ValueError(f"calib_windows must be >= 0, got {self.calib_windows}")
        if int(self.tune_trials) < 0:
            raise ValueError(f"tune_trials must be >= 0, got {self.tune_trials}")
        if self.tune_time_budget_s is not None and not float(self.tune_time_budget_s) > 0:
            raise ValueError(f"tune_time_budget_s must be > 0 (or None: no budget), got {self.tune_time_budget_s}")
        if self.register and not self.log_mlflow:
            raise ValueError("register needs log_mlflow (the registry version is the run's model)")
        if self.per_store_model not in ("ses", "ets"):
            raise ValueError(f"per_store_model must be 'ses' or 'ets', not {self.per_store_model!r}")
        if not (self.lgbm or self.neural or self.per_store):
            raise ValueError("no candidate family enabled (lgbm, neural, per_store)")

    def candidates(self) -> list[Candidate]:
        """The candidate families this config backtests (baselines are added by the plan)."""
        out: list[Candidate] = []
        if self.lgbm:
            kw: dict[str, Any] = {"num_threads": self.threads, "params": dict(self.lgbm_params)}
            if self.lgbm_rounds is not None:
                kw["num_boost_round"] = int(self.lgbm_rounds)
            if self.lgbm_workers > 1:
                kw["num_workers"] = int(self.lgbm_workers)
            out.append(Candidate("lgbm", "lgbm", kw, cpus=self.threads if self.lgbm_workers == 1 else 0))
        if self.neural:
            nn: dict[str, Any] = {"h": self.horizon, "num_threads": self.threads}
            if self.max_steps is not None:
                nn["max_steps"] = int(self.max_steps)
            nn.update(self.nhits_params)
            out.append(Candidate("nhits", "nhits", nn, cpus=self.threads))
        if self.per_store:
            name = self.per_store_model
            # 8 weeks beyond the horizon: the batch forecast may start after new data arrived (cheap to precompute).
            params = {"model": name, "h": self.horizon + 56, "alias": name}
            out.append(Candidate(name, "stats", params, cpus=1, per_store=True))
        return out


@dataclass
class TrainingData:
    """Output of the load stage."""

    sales: pd.DataFrame
    stores: pd.DataFrame
    long: pd.DataFrame
    source: str

    @property
    def store_ids(self) -> list[int]:
        return sorted(int(s) for s in self.long["unique_id"].unique())


@dataclass
class TrainResult:
    """Everything the stages produced; :func:`train` turns it into the JSON summary."""

    config: TrainConfig
    data: TrainingData
    backtest: BacktestResult
    short: BacktestResult | None
    best: str
    failures: list[dict[str, str]]
    model: Any
    wrapper: Any
    future: pd.DataFrame
    forecast: pd.DataFrame
    seconds: dict[str, float]
    tasks: int
    executor: str
    champion: Candidate | None = None
    ensemble_weights: dict[str, float] = field(default_factory=dict)
    interval_metrics: dict[str, float] = field(default_factory=dict)
    tune: Any = None  # app.forecasting.tune.TuneOutcome when the LightGBM parameters were searched
    tune_nhits: Any = None  # the same for the neural candidate


# --- stages -----------------------------------------------------------------------------------------------


def load(settings: Settings, config: TrainConfig, executor: Any = None, progress: Progress | None = None) -> TrainingData:
    """Stage 1: the training data; ``SFMLOPS_TRAIN_READ_SHARDS`` > 1 reads PostgreSQL in keyed store-range shards,
    each a task of ``executor`` (in parallel on Ray; same frames as one read)."""
    from app.forecasting.data import load_training_data, read_postgres

    def run(parts: list[tuple[int, ...]]) -> list[Any]:
        calls = [Call(read_postgres, (settings, p), f"read[{p[0]}..{p[-1]}]", 1) for p in parts]
        outs = (executor or LocalExecutor()).map("load", calls, progress or Progress(lambda _e: None))
        bad = [o for o in outs if not o.ok]
        if bad:
            raise RuntimeError(f"reading shard {bad[0].label} failed: {bad[0].error}")
        return [o.value for o in outs]

    stores = list(config.stores) if config.stores else None
    sales, stores_df, used = load_training_data(
        settings, source=config.source, stores=stores, shards=int(settings.train_read_shards), run=run  # type: ignore[arg-type]
    )
    return TrainingData(sales=sales, stores=stores_df, long=F.to_long(sales), source=used)


def plan(config: TrainConfig, data: TrainingData) -> list[Task]:
    """Stage 2: the main backtest's tasks (every candidate and baseline, the scored origin and the
    ``calib_windows`` before it, store shards)."""
    return plan_backtest(
        config.candidates() + baselines(), data.long["ds"].max(), data.store_ids, config.horizon, 1 + config.calib_windows, config.shard_stores
    )


def run_backtest(
    executor: Any, refs: tuple[Any, Any], tasks: list[Task], horizon: int, progress: Progress, stage: str
) -> tuple[BacktestResult | None, list[dict[str, str]]]:
    """Stage 3: run backtest ``tasks``; a candidate with any failed task is dropped and reported.

    Returns:
        ``(result of the candidates whose every task succeeded, failures [{"candidate", "task", "error"}])``.
    """
    outcomes = executor.map(stage, [Call(run_task, (*refs, t), t.label, t.candidate.cpus) for t in tasks], progress)
    failed: dict[str, dict[str, str]] = {}
    for task, out in zip(tasks, outcomes, strict=True):
        if not out.ok and task.candidate.name not in failed:
            failed[task.candidate.name] = {"candidate": task.candidate.name, "task": out.label, "error": out.error or ""}
    parts: list[Any] = []
    seconds: dict[str, float] = {}
    for task, out in zip(tasks, outcomes, strict=True):
        if out.ok and task.candidate.name not in failed:
            parts.append(out.value["forecasts"])
            seconds[task.candidate.name] = seconds.get(task.candidate.name, 0.0) + out.value["seconds"]
    result = BacktestResult.from_parts(horizon, parts, seconds) if parts else None
    return result, list(failed.values())


def select(config: TrainConfig, bt: BacktestResult | None, failures: list[dict[str, str]], extra: tuple[str, ...] = ()) -> tuple[str, float]:
    """Stage 4: the candidate with the lowest RMSPE on the main horizon (baselines are yardsticks only);
    ``extra``: candidates built in the stage itself (the ensemble)."""
    names = {c.name for c in config.candidates()} | set(extra)
    if bt is None or not names & set(bt.metrics):
        raise RuntimeError(f"every candidate failed in the backtest: {failures}")
    for base in (MEDIAN_BASELINE, SEASONAL_NAIVE):
        if base not in bt.metrics:
            raise RuntimeError(f"baseline {base} failed in the backtest: {failures}")
    table = bt.table()
    rows = table[table["model"].isin(names)]
    return str(rows.iloc[0]["model"]), float(rows.iloc[0]["rmspe"])


def refit(
    executor: Any, refs: tuple[Any, Any], config: TrainConfig, data: TrainingData, best: Candidate, progress: Progress
) -> tuple[Any, BacktestResult | None, float, float]:
    """Stage 5a: the best candidate on all data and, in the same wave of tasks, its short-horizon backtest.

    Returns:
        ``(fitted model, short backtest or None, refit task seconds, short backtest task seconds)``.
    """
    fit_tasks = plan_refit(best, data.store_ids, config.horizon, config.shard_stores)
    short_tasks = (
        plan_backtest([best], data.long["ds"].max(), data.store_ids, config.short_horizon, config.short_windows, config.shard_stores)
        if config.short_windows > 0
        else []
    )
    tasks = fit_tasks + short_tasks
    outcomes = executor.map("refit", [Call(run_task, (*refs, t), t.label, t.candidate.cpus) for t in tasks], progress)
    bad = [o for o in outcomes if not o.ok]
    if bad:
        raise RuntimeError(f"refit of {best.name} failed: {bad[0].label}: {bad[0].error}")
    fits = [o.value for o in outcomes[: len(fit_tasks)]]
    if best.per_store:
        from app.forecasting.models import ShardedModel

        model: Any = ShardedModel([(list(f["shard"]), f["model"]) for f in fits], alias=best.name)
    else:
        model = fits[0]["model"]
    short = None
    if short_tasks:
        parts = [o.value["forecasts"] for o in outcomes[len(fit_tasks) :]]
        short = BacktestResult.from_parts(config.short_horizon, parts, {best.name: sum(o.value["seconds"] for o in outcomes[len(fit_tasks) :])})
    return model, short, sum(f["seconds"] for f in fits), sum(o.value["seconds"] for o in outcomes[len(fit_tasks) :])


def forecast_horizon(executor: Any, wrapper: Any, future: pd.DataFrame, progress: Progress) -> pd.DataFrame:
    """Stage 5b: the batch forecast of the horizon as a task."""
    [out] = executor.map("forecast", [Call(run_forecast, (executor.put(wrapper), executor.put(future)), "forecast", 1)], progress)
    if not out.ok:
        raise RuntimeError(f"forecast task failed: {out.error}")
    return out.value


def ensemble_stage(
    bt_all: BacktestResult, members: list[Candidate], name: str = E.ENSEMBLE
) -> tuple[BacktestResult, Candidate | None, pd.DataFrame, dict[str, float]]:
    """The select stage's view of a multi-origin backtest, with the ensemble candidate added.

    The last origin is the scored window of every candidate; the earlier ones only fit the ensemble's weights
    (and calibrate the intervals). Members whose weight rounds to 0 are left out of the blend.

    Args:
        bt_all: :class:`~app.forecasting.backtest.BacktestResult` of every origin.
        members: The candidates (:class:`~app.forecasting.plan.Candidate`) that may be blended.

    Returns:
        ``(result of the scored origin with the ensemble's rows, ensemble Candidate or None, forecasts of every
        origin including the ensemble's, weights)``; no ensemble when there is a single origin or fewer than 2
        members with forecasts and a non-zero weight.
    """
    forecasts = bt_all.forecasts
    origins = sorted(forecasts["cutoff"].unique())
    score = [origins[-1]]
    bt = bt_all.only_origins(score)
    names = [m.name for m in members if m.name in bt.metrics]
    if len(origins) < 2 or len(names) < 2:
        return bt, None, forecasts, {}
    weights, _ = E.backtest_ensemble(forecasts, names, score, name)
    weights = {m: w for m, w in weights.items() if w > 0}
    if len(weights) < 2:
        return bt, None, forecasts, weights
    rows = E.blend(forecasts, weights, name)  # earlier origins: in-sample for the weights, used for intervals only
    scored = rows[rows["cutoff"].isin(score)]
    by_name = {m.name: m for m in members}
    cand = Candidate(name, "ensemble", {"members": [(by_name[m], w) for m, w in weights.items()]}, cpus=max(by_name[m].cpus for m in weights))
    bt = bt.with_model(scored, seconds=sum(bt_all.fit_seconds.get(m, 0.0) for m in weights))
    return bt, cand, pd.concat([forecasts, rows], ignore_index=True), weights


def run_stages(settings: Settings, config: TrainConfig, executor: Any = None, progress: Progress | None = None) -> TrainResult:
    """Stages 1-5 (no MLflow): load, plan, backtest, select, refit, forecast."""
    from app.forecasting.batch import project_future_inputs
    from app.forecasting.pyfunc import SalesForecaster

    executor = executor or LocalExecutor()
    progress = progress or Progress()
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    progress.start("load")
    data = load(settings, config, executor, progress)
    seconds["data"] = round(time.perf_counter() - t0, 2)

    searches: dict[str, Any] = {}
    if config.tune_trials > 0 and (config.lgbm or config.neural):  # the candidates get the best trials' parameters
        from app.forecasting.tune import tune_stage

        config, outcomes = tune_stage(settings, config, data, progress)
        searches = {o.model: o for o in outcomes}
        for o in outcomes:
            seconds[o.prefix] = round(o.seconds, 2)

    t0 = time.perf_counter()
    refs = (executor.put(data.long), executor.put(data.stores))  # once; every task gets the references
    tasks = plan(config, data)
    bt_all, failures = run_backtest(executor, refs, tasks, config.horizon, progress, "backtest")
    # The last origin scores every candidate; the earlier ones fit the ensemble's weights and the intervals.
    bt, ens, all_forecasts, weights = ensemble_stage(bt_all, config.candidates() if config.ensemble else []) if bt_all else (None, None, None, {})
    best, _ = select(config, bt, failures, extra=(ens.name,) if ens is not None else ())
    seconds["backtest"] = round(time.perf_counter() - t0, 2)

    t0 = time.perf_counter()
    cand = {c.name: c for c in [*config.candidates(), *([ens] if ens is not None else [])]}[best]
    model, short, fit_s, short_s = refit(executor, refs, config, data, cand, progress)
    seconds["refit_stage"] = round(time.perf_counter() - t0, 2)
    seconds["final_fit"] = round(fit_s, 2)
    seconds["backtest_short"] = round(short_s, 2)

    from app.forecasting.intervals import evaluate_intervals

    assert bt is not None and all_forecasts is not None
    intervals = interval_quantiles(all_forecasts, best)
    interval_metrics = evaluate_intervals(all_forecasts, best) if config.calib_windows > 0 else {}
    info = {"family": best, "backtest_rmspe": float(bt.metrics[best]["rmspe"])}
    wrapper = SalesForecaster(model, intervals, data.long["ds"].max(), data.store_ids, info=info)
    t0 = time.perf_counter()
    future = project_future_inputs(data.sales, config.horizon)
    forecast = forecast_horizon(executor, wrapper, future, progress)
    seconds["forecast"] = round(time.perf_counter() - t0, 2)
    n_tasks = progress.tasks_total
    progress.start("done")
    return TrainResult(
        config=config, data=data, backtest=bt, short=short, best=best, failures=failures, model=model, wrapper=wrapper,
        future=future, forecast=forecast, seconds=seconds, tasks=n_tasks, executor=getattr(executor, "name", "local"),
        champion=cand, ensemble_weights=weights, interval_metrics=interval_metrics,
        tune=searches.get("lgbm"), tune_nhits=searches.get("nhits"),
    )


def summarize(result: TrainResult) -> dict[str, Any]:
    """The JSON-able summary of a training (what the job prints and the API stores)."""
    cfg, bt = result.config, result.backtest
    rmspe = float(bt.metrics[result.best]["rmspe"])
    median = float(bt.metrics[MEDIAN_BASELINE]["rmspe"])
    short_table = result.short.table() if result.short is not None else pd.DataFrame()
    extra = {o.prefix: o.summary() for o in (result.tune, result.tune_nhits) if o is not None}
    return {**extra,
        "source": result.data.source,
        "rows": int(len(result.data.sales)),
        "stores": len(result.data.store_ids),
        "train_end": str(result.data.long["ds"].max().date()),
        "model": result.best,
        "rmspe": rmspe,
        "median_baseline_rmspe": median,
        "seasonal_naive_rmspe": float(bt.metrics[SEASONAL_NAIVE]["rmspe"]),
        "improvement_vs_median": 1.0 - rmspe / median if median else None,
        "candidates": [c.name for c in cfg.candidates()] + (["ensemble"] if result.ensemble_weights and "ensemble" in bt.metrics else []),
        "ensemble_weights": result.ensemble_weights,
        "intervals": result.interval_metrics,
        "failed_candidates": result.failures,
        "backtest": {f"h{cfg.horizon}": bt.table().to_dict("records"), f"h{cfg.short_horizon}": short_table.to_dict("records")},
        "seconds": dict(result.seconds),
        "executor": result.executor,
        "tasks": result.tasks,
        "forecast_rows": int(len(result.forecast)),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def train(settings: Settings, config: TrainConfig | None = None, executor: Any = None, progress: Progress | None = None) -> dict[str, Any]:
    """Run every stage: backtest the candidates against the baselines, fit the best on all data, forecast,
    log to MLflow, register and gate it.

    Args:
        settings: Settings (data, MLflow, registry names).
        config: What to train (default :class:`TrainConfig`).
        executor: :class:`~app.forecasting.executor.LocalExecutor` (default) or
            :class:`~app.forecasting.executor.RayExecutor`.
        progress: Progress reporter (default: ``SFMLOPS_PROGRESS`` lines on stdout).

    Returns:
        Summary (:func:`summarize`) plus ``run_id``, ``model_version`` and ``gate`` when logged/registered.
    """
    config = config or TrainConfig()
    t_start = time.perf_counter()
    progress = progress or Progress()
    from app.monitoring.metrics import push_training, training_scope

    try:
        result = run_stages(settings, config, executor, progress)
    except BaseException as exc:
        push_training(settings, training_scope(config.stores), None, error=exc)  # monitoring: the failed run
        raise
    summary = summarize(result)
    if config.log_mlflow:
        from app.forecasting.run_log import log_training_run

        progress.start("log")
        summary["run_id"] = log_training_run(settings, result, summary)
        from app.forecasting.tune import log_to_mlflow

        for outcome in (result.tune, result.tune_nhits):
            if outcome is not None:
                log_to_mlflow(settings, summary["run_id"], outcome)
    if config.register:
        from app.forecasting.registry import register_and_gate

        progress.start("register")
        summary.update(register_and_gate(settings, summary["run_id"], summary["rmspe"], list(config.stores) if config.stores else None))
    summary["seconds"]["total"] = round(time.perf_counter() - t_start, 2)
    push_training(settings, training_scope(config.stores), summary)  # stage seconds, candidate RMSPEs, gate
    return summary


__all__ = [
    "LocalExecutor", "RayExecutor", "TrainConfig", "TrainResult", "TrainingData", "load", "make_executor", "plan", "refit",
    "ensemble_stage", "run_backtest", "run_stages", "select", "summarize", "train",
]
