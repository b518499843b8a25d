"""Data-parallel global LightGBM on Ray Train v2 (:class:`ray.train.lightgbm.LightGBMTrainer`).

A LightGBM candidate with ``num_workers > 1`` (``TrainConfig.lgbm_workers`` / ``SFMLOPS_TRAIN_LGBM_WORKERS``; 1,
the default, keeps the single-process fit) is a :class:`DistributedLGBMForecaster` (:func:`lgbm_forecaster`).

What is global and what is sharded:

* **global, computed once** by the task that calls ``fit`` and passed to every worker: the store
  statistics (:func:`app.forecasting.features.fit_store_stats`, target encodings), the static store features with
  their categorical codes (:func:`app.forecasting.features.store_static_features`), the stores frame and the
  calendar (first and last day), so a worker's features are those the single-process fit computes for its rows;
* **sharded by store**: every worker gets whole stores (``history`` split into ``num_workers`` shards of
  stores, balanced by rows, each put into the object store once) and builds the feature matrix of its own
  rows only; the largest process then holds one shard's design matrix, not the chain's.

Inside the training loop ``lightgbm.train`` runs with ``tree_learner="data"``, ``pre_partition=True`` and
:func:`ray.train.lightgbm.get_network_params` (machines / port / num_machines): the workers exchange histograms
and build one model (without those parameters each worker would fit its own shard and rank 0's model would be
silently kept). Rank 0 returns the model; every worker writes what it trained on (rows, stores) into the
run's checkpoint, which :attr:`DistributedFit.workers` reads back (the test checks that every row was seen
exactly once).

The run's checkpoint goes to ``SFMLOPS_TRAIN_STORAGE_PATH`` (default: a temporary folder on the node of the
calling task, removed after the fit; a multi-node cluster needs shared storage there, e.g. ``s3://...``).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from app.forecasting import features as F
from app.forecasting.executor import run_storage
from app.forecasting.models import CONTEXT_DAYS, DEFAULT_LGBM_PARAMS, LGBMForecaster, _design

if TYPE_CHECKING:  # pragma: no cover
    from ray import ObjectRef
    from ray.train.v2.api.result import Result as TrainV2Result

log = logging.getLogger(__name__)

WORKER_FILE = "worker_{rank}.json"


@dataclass
class DistributedFit:
    """What a distributed fit did: one entry per worker (``rank``, ``rows`` trained on, ``stores``, ``seconds``)."""

    workers: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(int(w["rows"]) for w in self.workers)


def balanced_store_shards(rows_per_store: pd.Series, n: int) -> list[list[int]]:
    """Split stores into ``n`` shards of whole stores with about equal rows (greedy, largest store first).

    Args:
        rows_per_store: Rows of each store (index: store id).
        n: Number of shards (>= 1; at most one shard per store).

    Raises:
        ValueError: when ``n`` < 1 or there are fewer stores than shards.
    """
    if n < 1:
        raise ValueError(f"number of shards must be >= 1, got {n}")
    if len(rows_per_store) < n:
        raise ValueError(f"{len(rows_per_store)} store(s) cannot be split into {n} worker shards (one store per worker at least)")
    order = rows_per_store.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    loads = [0] * n
    parts: list[list[int]] = [[] for _ in range(n)]
    for store, rows in order.items():
        i = min(range(n), key=lambda k: (loads[k], k))
        parts[i].append(int(store))
        loads[i] += int(rows)
    return [sorted(p) for p in parts]


#: Rows LightGBM samples to find its bins (its ``bin_construct_sample_cnt`` default).
BIN_SAMPLE_ROWS = 200_000


def _prepare_shard(part: pd.DataFrame, config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Ray task: one store shard -> ``(X float32, y, sample of X rows for the global bins, {"stores", "keys"})``
    with the global store statistics, static features and calendar of ``config``."""
    dense = F.fill_gaps(part, start=config["start"], end=config["end"])
    X = _design(dense, config["static"], config["stores"], config["stats"])
    rows = ((dense["available"] == 1) & (dense["open"] == 1) & (dense["y"] > 0)).to_numpy()
    X = X[rows]
    if list(X.columns) != config["feature_names"]:
        raise RuntimeError(f"shard {part['unique_id'].min()}..: feature columns {list(X.columns)} differ from {config['feature_names']}")
    y = np.log1p(dense.loc[rows, "y"].to_numpy()) - X["te_mean"].to_numpy()
    values = X.to_numpy(dtype="float32")
    take = -(-int(config["bin_sample_rows"]) // int(config["n"]))
    rng = np.random.default_rng(int(config["seed"]))
    sample = values if len(values) <= take else values[np.sort(rng.choice(len(values), take, replace=False))]
    info = {
        "stores": sorted(int(s) for s in part["unique_id"].unique()),
        "keys": int(pd.util.hash_pandas_object(dense.loc[rows, ["unique_id", "ds"]], index=False).sum() % (2**61)),
    }
    return values, y, sample, info


def _train_loop(config: dict[str, Any]) -> dict[str, Any] | None:
    """Ray Train worker: its shard's feature matrix (object store) on the global bins -> distributed ``lightgbm.train``."""
    import lightgbm as lgb
    import ray
    import ray.train
    from ray.train import Checkpoint
    from ray.train.lightgbm import get_network_params

    t0 = time.perf_counter()
    rank = ray.train.get_context().get_world_rank()
    X, y, info = ray.get(list(config["parts"][rank]))
    params = {**DEFAULT_LGBM_PARAMS, **config["params"], "num_threads": config["threads"], "seed": config["seed"]}
    # Bins from the global sample, found here without the network, the same in every worker (LightGBM's own
    # distributed bin finding would bin each feature on one worker's rows only).
    sample = config["bin_sample"]
    bins = lgb.Dataset(sample, feature_name=config["feature_names"], params={**params, "bin_construct_sample_cnt": max(len(sample), 1)})
    bins.construct()
    train_set = lgb.Dataset(X, label=y, reference=bins, feature_name=config["feature_names"], free_raw_data=True)
    dist_params = {**params, "tree_learner": "data", "pre_partition": True, **get_network_params()}
    booster = lgb.train(dist_params, train_set, num_boost_round=config["rounds"])
    out = {"rank": rank, "rows": int(len(X)), **info, "seconds": round(time.perf_counter() - t0, 3)}
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, WORKER_FILE.format(rank=rank)), "w") as fh:
            json.dump(out, fh)
        ray.train.report({"rows": out["rows"]}, checkpoint=Checkpoint.from_directory(tmp))
    return {"model": booster.model_to_string()} if rank == 0 else None


def _feature_names(history: pd.DataFrame, static: pd.DataFrame, stores: pd.DataFrame, stats: F.StoreStats) -> list[str]:
    first = history[history["unique_id"] == history["unique_id"].iloc[0]].head(3)
    return list(_design(F.fill_gaps(first), static, stores, stats).columns)


@dataclass
class DistributedLGBMForecaster(LGBMForecaster):
    """The global LightGBM fitted data-parallel by ``num_workers`` Ray Train workers (:func:`fit_distributed`).
    It predicts as :class:`~app.forecasting.models.LGBMForecaster` does; ``dist`` says what each worker did."""

    dist: DistributedFit | None = field(default=None, repr=False)

    def fit(self, history: pd.DataFrame, stores: pd.DataFrame) -> DistributedLGBMForecaster:
        return fit_distributed(self, history, stores)


def lgbm_forecaster(**params: Any) -> LGBMForecaster:
    """The LightGBM model of ``params`` (:class:`~app.forecasting.models.LGBMForecaster`'s fields): fitted by
    Ray Train workers when ``num_workers > 1``, else in this process."""
    if int(params.get("num_workers", 1)) > 1:
        return DistributedLGBMForecaster(**params)
    return LGBMForecaster(**params)


def fit_distributed(model: DistributedLGBMForecaster, history: pd.DataFrame, stores: pd.DataFrame) -> DistributedLGBMForecaster:
    """Fit ``model`` with its ``num_workers`` Ray Train workers; sets the same attributes as the single-process
    fit plus ``dist``.

    Steps: global statistics here; one Ray task per store shard builds its feature matrix into the object store
    and a row sample; the samples together give the global bins; the Train workers fit one model on the shards.

    Raises:
        ValueError: fewer stores than workers.
        RuntimeError: the training run failed (its error is the cause).
    """
    import lightgbm as lgb
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.lightgbm import LightGBMTrainer

    from app.config import get_settings

    t0 = time.perf_counter()
    n = int(model.num_workers)
    model.stores = stores.copy()
    model.static = F.store_static_features(stores)
    model.stats = F.fit_store_stats(history)  # global: once, for every shard
    model.train_end = history["ds"].max()
    feature_names = _feature_names(history, model.static, stores, model.stats)
    shards = balanced_store_shards(history.groupby("unique_id").size(), n)
    shared = ray.put({
        "start": history["ds"].min(), "end": model.train_end, "static": model.static, "stores": stores, "stats": model.stats,
        "feature_names": feature_names, "seed": int(model.seed), "n": n,
        "bin_sample_rows": int(model.params.get("bin_construct_sample_cnt", BIN_SAMPLE_ROWS)),
    })
    prepare = ray.remote(num_returns=4, num_cpus=1)(_prepare_shard)
    # num_returns=4: each call returns 4 refs (ray's stubs type it as one ref to the 4-tuple)
    parts = [
        cast("list[ObjectRef[Any]]", prepare.remote(history[history["unique_id"].isin(p)].reset_index(drop=True), shared))
        for p in shards
    ]
    bin_sample = np.concatenate(ray.get([p[2] for p in parts]))
    config = {
        "parts": [(p[0], p[1], p[3]) for p in parts], "bin_sample": bin_sample, "feature_names": feature_names,
        "params": dict(model.params), "threads": int(model.num_threads), "seed": int(model.seed), "rounds": int(model.num_boost_round),
    }
    with run_storage(get_settings().train_storage_path, "sfmlops-train-") as storage:
        # ray.train.lightgbm and ray.train export their Train v2 classes (the default) only at run time: mypy sees the
        # v1 trainer, whose loop must return None and whose Result has no return_value
        trainer = LightGBMTrainer(
            _train_loop,  # type: ignore[arg-type]  # v2 passes rank 0's return value on (Result.return_value)
            train_loop_config=config,
            scaling_config=ScalingConfig(num_workers=n, resources_per_worker={"CPU": float(model.num_threads)}),
            run_config=RunConfig(name=f"lgbm-{uuid.uuid4().hex[:8]}", storage_path=storage),
        )
        result = cast("TrainV2Result", trainer.fit())
        if result.error is not None or not result.return_value:
            raise RuntimeError(f"distributed LightGBM run failed: {result.error}")
        assert result.checkpoint is not None  # every worker reports one (_train_loop), so a run without error has one
        workers = []
        with result.checkpoint.as_directory() as ckpt:
            for rank in range(n):
                with open(os.path.join(ckpt, WORKER_FILE.format(rank=rank))) as fh:
                    workers.append(json.load(fh))
    model.booster = lgb.Booster(model_str=result.return_value["model"])
    model.feature_names = feature_names
    cut = model.train_end - pd.Timedelta(days=CONTEXT_DAYS)
    tail = F.fill_gaps(history[history["ds"] > cut])
    model.context = tail.loc[tail["available"] == 1, ["unique_id", "ds", *F.FUTURE_EXOG, "available"]].reset_index(drop=True)
    model.dist = DistributedFit(workers=workers, seconds=round(time.perf_counter() - t0, 3))
    model.fit_seconds = time.perf_counter() - t0
    log.info("lgbm fitted on %d rows by %d Ray Train workers in %.1fs", model.dist.rows, n, model.fit_seconds)
    return model


def compare(
    settings: Any, n_stores: int, workers: list[int], rounds: int, threads: int, horizon: int, read_shards: int,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure on the first ``n_stores`` stores of the PostgreSQL tables (inside a Ray job): one ``COPY`` vs
    ``read_shards`` keyed reads as Ray tasks, then a backtest fit of LightGBM with each worker count.

    Returns:
        ``{"rows", "stores", "read": {...}, "fits": [{"workers", "rmspe", "train_rows", "seconds", "per_worker"}]}``.
    """
    import ray

    from app.forecasting import metrics as M
    from app.forecasting.backtest import split
    from app.forecasting.data import read_postgres, read_sharded, store_ids

    ids = store_ids(settings)[:n_stores]
    t0 = time.perf_counter()
    sales, meta = read_postgres(settings, ids)
    single_s = time.perf_counter() - t0
    reader = ray.remote(num_cpus=1)(read_postgres)
    t0 = time.perf_counter()
    sh_sales, sh_meta = read_sharded(settings, read_shards, ids, lambda parts: ray.get([reader.remote(settings, p) for p in parts]))
    sharded_s = time.perf_counter() - t0
    same = sh_sales.equals(sales) and sh_meta.equals(meta)
    del sh_sales, sh_meta
    long = F.to_long(sales)
    cutoff = long["ds"].max() - pd.Timedelta(days=horizon)
    hist, fut = split(long, cutoff, horizon)
    fits = []
    trained = hist[(hist["open"] == 1) & (hist["y"] > 0)]
    train_keys = int(pd.util.hash_pandas_object(trained[["unique_id", "ds"]], index=False).sum() % (2**61))
    for n in workers:
        t0 = time.perf_counter()
        model = lgbm_forecaster(params=dict(params or {}), num_boost_round=rounds, num_threads=threads, num_workers=n).fit(hist, meta)
        fit_s = time.perf_counter() - t0
        pred = model.predict(fut)
        scored = pred[(pred["open"] == 1) & (pred["y"] > 0)]
        dist = model.dist if isinstance(model, DistributedLGBMForecaster) else None
        fits.append({
            "workers": n, "rmspe": float(M.rmspe(scored["y"], scored["yhat"])), "seconds": round(fit_s, 3),
            "per_worker": dist.workers if dist is not None else None,
            "train_rows": dist.rows if dist is not None else len(trained), "train_keys": train_keys,
        })
    return {
        "rows": int(len(sales)), "stores": len(ids),
        "read": {"single_copy_s": round(single_s, 3), "sharded_s": round(sharded_s, 3), "shards": read_shards, "equal": bool(same)},
        "fits": fits,
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m app.forecasting.distributed --stores 30 --workers 1,2`` as a Ray job: one JSON line (see :func:`compare`)."""
    import argparse

    import ray

    from app.config import get_settings

    parser = argparse.ArgumentParser(description="LightGBM with 1 vs N Ray Train workers and sharded reads, on a slice")
    parser.add_argument("--stores", type=int, default=30, help="First N stores of the sales table")
    parser.add_argument("--workers", default="1,2", help="Comma-separated Ray Train worker counts")
    parser.add_argument("--rounds", type=int, default=100, help="Boosting rounds")
    parser.add_argument("--threads", type=int, default=1, help="Threads (= CPUs) per worker")
    parser.add_argument("--horizon", type=int, default=48, help="Backtest horizon (days)")
    parser.add_argument("--read-shards", type=int, default=2, help="Keyed reads of the sharded load")
    parser.add_argument("--no-bagging", action="store_true", help="bagging_fraction=1 (with bagging every worker draws its own bag)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ray.init(address="auto", log_to_driver=True)
    out = compare(get_settings(), args.stores, [int(w) for w in args.workers.split(",")], args.rounds, args.threads, args.horizon, args.read_shards,
        {"bagging_fraction": 1.0} if args.no_bagging else None,
    )
    print(json.dumps(out, default=str), flush=True)


if __name__ == "__main__":
    main()
