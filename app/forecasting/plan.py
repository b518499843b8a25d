"""The work of a training as independent tasks: candidates x backtest origins x store shards, the final refit
and the batch forecast.

A :class:`Candidate` is a picklable recipe of a model family (no closures), so a task can be shipped to any
Ray worker; the task functions below are pure: they take the data (resolved from the object store by the
executor), a :class:`Task`, and return plain results. The local executor calls the same functions, which is
why a fanned-out training equals the single-process one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from app.forecasting.backtest import cutoffs, split
from app.forecasting.data import store_shards

Kind = Literal["lgbm", "nhits", "stats", "baseline", "ensemble"]
BASELINE_NAMES = ("seasonal_naive", "median_dow_promo")


@dataclass(frozen=True)
class Candidate:
    """A model family: ``kind`` and the keyword arguments of its class.

    Attributes:
        name: Name in the backtest table and MLflow (``lgbm``, ``nhits``, ``ses``, a baseline's name).
        kind: ``lgbm`` / ``nhits`` (global models), ``stats`` (local per-store models), ``baseline`` or
            ``ensemble`` (a blend of other candidates, :mod:`app.forecasting.ensemble`).
        params: Constructor arguments of the model class.
        cpus: CPUs one task of this family uses (its thread count).
        per_store: Stores are independent: the family is fitted in shards of stores, one task per shard.
    """

    name: str
    kind: Kind
    params: dict[str, Any] = field(default_factory=dict, hash=False)
    cpus: int = 1
    per_store: bool = False

    def build(self) -> Any:
        """A fresh, unfitted model."""
        from app.forecasting import models as Mo

        if self.kind == "lgbm":
            from app.forecasting.distributed import lgbm_forecaster

            return lgbm_forecaster(**self.params)
        if self.kind == "nhits":
            return Mo.NeuralForecaster(**self.params)
        if self.kind == "stats":
            return Mo.StatsForecaster(**self.params)
        if self.kind == "baseline":
            return Mo.BaselineModel(alias=self.name)
        if self.kind == "ensemble":  # params: {"members": [(Candidate, weight), ...]}
            from app.forecasting.ensemble import EnsembleForecaster

            return EnsembleForecaster(members=list(self.params["members"]), alias=self.name)
        raise ValueError(f"unknown candidate kind {self.kind!r}")


def baselines() -> list[Candidate]:
    """The baselines every model must beat, as candidates (scored in every backtest, never selected)."""
    return [Candidate(name, "baseline") for name in BASELINE_NAMES]


@dataclass(frozen=True)
class Task:
    """One unit of work: fit ``candidate`` on the history up to ``cutoff`` (all of it for a refit) of the stores
    in ``shard`` (all when None) and, for a backtest, forecast the ``horizon`` days after the cutoff."""

    stage: Literal["backtest", "refit"]
    candidate: Candidate
    horizon: int
    cutoff: pd.Timestamp | None = None
    shard: tuple[int, ...] | None = None

    @property
    def label(self) -> str:
        where = f"@{self.cutoff.date()}" if self.cutoff is not None else ""
        part = f"[{self.shard[0]}..{self.shard[-1]}]" if self.shard else ""
        return f"{self.stage}:{self.candidate.name}:h{self.horizon}{where}{part}"


def plan_backtest(
    candidates: list[Candidate], end: pd.Timestamp, store_ids: list[int], horizon: int, n_windows: int, shard_size: int
) -> list[Task]:
    """Tasks of a rolling-origin backtest of ``candidates`` (see :func:`app.forecasting.backtest.cutoffs`),
    longest first: the global models' fits (one task per origin, each the longest of the wave), then the
    per-store shards, then the baselines. Queued behind the short tasks, the last global fit would start when
    the others are done and leave every other worker idle until it ends (measured on two 1-CPU fake nodes)."""
    parts = store_shards(store_ids, shard_size)
    tasks = [
        Task("backtest", cand, horizon, cutoff, shard)
        for cutoff in cutoffs(end, horizon, n_windows)
        for cand in candidates
        for shard in (parts if cand.per_store else [None])
    ]
    return sorted(tasks, key=lambda t: 2 if t.candidate.kind == "baseline" else 1 if t.candidate.per_store else 0)


def plan_refit(candidate: Candidate, store_ids: list[int], horizon: int, shard_size: int) -> list[Task]:
    """Tasks of the final fit of ``candidate`` on all history."""
    return [Task("refit", candidate, horizon, None, shard) for shard in (store_shards(store_ids, shard_size) if candidate.per_store else [None])]


def _slice(long: pd.DataFrame, stores: pd.DataFrame, shard: tuple[int, ...] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    if shard is None:
        return long, stores
    return long[long["unique_id"].isin(shard)], stores[stores["store"].isin(shard)]


def run_task(long: pd.DataFrame, stores: pd.DataFrame, task: Task) -> dict[str, Any]:
    """Run one task.

    Returns:
        ``{"label", "seconds", "forecasts"}`` for a backtest (``unique_id, ds, y, open, yhat, cutoff, model``),
        ``{"label", "seconds", "model"}`` for a refit (the fitted model).
    """
    t0 = time.perf_counter()
    hist_all, meta = _slice(long, stores, task.shard)
    model = task.candidate.build()
    if task.stage == "refit":
        model.fit(hist_all, meta)
        return {"label": task.label, "seconds": time.perf_counter() - t0, "model": model, "shard": task.shard}
    assert task.cutoff is not None  # only a refit has none (plan_backtest dates every backtest task)
    hist, fut = split(hist_all, task.cutoff, task.horizon)
    if fut.empty:
        raise ValueError(f"backtest window after {task.cutoff.date()} has no rows")
    pred = model.fit(hist, meta).predict(fut)
    frame = pred[["unique_id", "ds", "y", "open", "yhat"]].assign(cutoff=task.cutoff, model=task.candidate.name)
    return {"label": task.label, "seconds": time.perf_counter() - t0, "forecasts": frame.reset_index(drop=True)}


def run_forecast(wrapper: Any, future: pd.DataFrame) -> pd.DataFrame:
    """The batch forecast of the fitted pyfunc wrapper on the projected known-future inputs."""
    return wrapper.predict(None, future)
