"""Sharded reads of the training data and data-parallel LightGBM on Ray Train v2 (issue 14 items 2 and 3).

The reads run against tables of this module's own in PostgreSQL (dropped afterwards); the Ray Train fits run
inside a real Ray job on the local cluster (``ray.init`` from a plain process cannot join it on this machine).
"""

from __future__ import annotations

import pandas as pd
import pytest
from isolated_support import drop_isolated, isolated_settings

from app.config import Settings

#: Stores of the slice: 1-30, two after a gap (an ``IN`` shard), and 50 with metadata but no sales.
SALES_STORES = [*range(1, 31), 40, 41]
META_ONLY = 50


@pytest.fixture(scope="module")
def pg_slice(stack: Settings, rossmann_dir) -> Settings:
    """The stack's settings with sales/stores tables of this module (the history of :data:`SALES_STORES`)."""
    from app.data import SALES_FILE, load_dataset, prepare
    from app.data.load import load_sales_table, load_stores_table

    if not (stack.data_dir / SALES_FILE).is_file():
        prepare(stack, rossmann_dir)
    sales, stores = load_dataset(stack)
    sales = sales[sales["store"].isin(SALES_STORES)]
    s = isolated_settings(stack, "tdist")
    try:
        load_stores_table(s, stores[stores["store"].isin([*SALES_STORES, META_ONLY])])
        load_sales_table(s, sales)
        yield s
    finally:
        drop_isolated(s)


# --- sharded reads -------------------------------------------------------------------------------------


@pytest.mark.integration
def test_sharded_read_equals_one_copy_and_reads_each_store_once(pg_slice: Settings) -> None:
    from app.forecasting.data import load_training_data, read_postgres, read_sharded

    one_sales, one_meta = read_postgres(pg_slice)
    assert one_sales["store"].nunique() == len(SALES_STORES) and META_ONLY in set(one_meta["store"])
    seen: list[tuple[int, ...]] = []

    def run(parts: list[tuple[int, ...]]) -> list:
        seen.extend(parts)
        return [read_postgres(pg_slice, p) for p in parts]

    sales, meta = read_sharded(pg_slice, 3, run=run)
    pd.testing.assert_frame_equal(sales, one_sales)
    pd.testing.assert_frame_equal(meta, one_meta)
    ids = [s for part in seen for s in part]
    assert len(seen) == 3 and sorted(ids) == sorted({*SALES_STORES, META_ONLY}) and len(ids) == len(set(ids))

    subset = [2, 5, 6, 7, 40, META_ONLY]  # not consecutive: keyed IN reads
    s_sales, s_meta = read_sharded(pg_slice, 2, subset)
    o_sales, o_meta = read_postgres(pg_slice, subset)
    pd.testing.assert_frame_equal(s_sales, o_sales)
    pd.testing.assert_frame_equal(s_meta, o_meta)

    a = load_training_data(pg_slice, "postgres", shards=4)
    b = load_training_data(pg_slice, "postgres", shards=1)
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])
    assert a[2] == b[2] == "postgres"


@pytest.mark.integration
def test_sharded_read_bad_shard_count(pg_slice: Settings) -> None:
    from app.forecasting.data import read_sharded

    with pytest.raises(ValueError, match="shards must be >= 1, got 0"):
        read_sharded(pg_slice, 0)


# --- worker shards and the config -------------------------------------------------------------------------


def test_balanced_store_shards_whole_stores_once_and_balanced() -> None:
    from app.forecasting.distributed import balanced_store_shards

    rows = pd.Series({s: 900 + (s * 37) % 200 for s in range(1, 31)})
    parts = balanced_store_shards(rows, 3)
    assert sorted(s for p in parts for s in p) == list(range(1, 31))
    loads = [int(rows[p].sum()) for p in parts]
    assert max(loads) - min(loads) <= int(rows.max())
    assert balanced_store_shards(rows, 1) == [list(range(1, 31))]
    with pytest.raises(ValueError, match="2 store\\(s\\) cannot be split into 3 worker shards"):
        balanced_store_shards(rows.head(2), 3)
    with pytest.raises(ValueError, match="must be >= 1"):
        balanced_store_shards(rows, 0)


def test_train_config_lgbm_workers() -> None:
    from app.forecasting.pipeline import TrainConfig

    [one] = [c for c in TrainConfig(neural=False, per_store=False).candidates() if c.name == "lgbm"]
    assert "num_workers" not in one.params and one.cpus == 2  # default: the single-process fit, as before
    [two] = [c for c in TrainConfig(neural=False, per_store=False, lgbm_workers=2).candidates() if c.name == "lgbm"]
    assert two.params["num_workers"] == 2 and two.cpus == 0  # the task coordinates; the Train workers hold the CPUs
    assert two.build().num_workers == 2
    with pytest.raises(ValueError, match="lgbm_workers must be >= 1"):
        TrainConfig(lgbm_workers=0)


def test_more_than_one_lgbm_worker_builds_the_ray_train_model_and_the_plain_one_refuses_it(make_sales, make_stores) -> None:
    """num_workers > 1 is DistributedLGBMForecaster's: the plain model refuses to fit it in one process instead
    of silently ignoring the workers."""
    from app.forecasting.distributed import DistributedLGBMForecaster, lgbm_forecaster
    from app.forecasting.features import to_long
    from app.forecasting.models import LGBMForecaster
    from app.forecasting.pipeline import TrainConfig

    [two] = [c for c in TrainConfig(neural=False, per_store=False, lgbm_workers=2).candidates() if c.name == "lgbm"]
    assert type(two.build()) is DistributedLGBMForecaster
    [one] = [c for c in TrainConfig(neural=False, per_store=False).candidates() if c.name == "lgbm"]
    assert type(one.build()) is LGBMForecaster and type(lgbm_forecaster(num_workers=1)) is LGBMForecaster
    hist = to_long(make_sales(60, 3))
    with pytest.raises(ValueError, match="lgbm_forecaster"):
        LGBMForecaster(num_workers=2, num_boost_round=5).fit(hist, make_stores(3))


# --- Ray Train (inside a real Ray job) ---------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
def test_two_train_workers_see_every_row_and_match_one_worker(pg_slice: Settings) -> None:
    from test_integration import _submit

    # Bagging off: with it every worker draws its own bag of its own rows (not the single process's sample).
    args = "--stores 30 --workers 1,2 --rounds 100 --threads 1 --read-shards 2 --no-bagging"
    out = _submit(pg_slice, args, script="-m app.forecasting.distributed")
    assert out["stores"] == 30 and out["read"]["equal"] is True  # Ray-task shard reads == one COPY
    one, two = out["fits"]
    assert one["workers"] == 1 and one["per_worker"] is None
    workers = two["per_worker"]
    assert sorted(w["rank"] for w in workers) == [0, 1]
    # every training row seen by exactly one worker: rows add up, stores disjoint and complete, keys hash adds up
    assert sum(w["rows"] for w in workers) == one["train_rows"] == two["train_rows"] > 0
    assert all(w["rows"] > 0 for w in workers)
    stores = [s for w in workers for s in w["stores"]]
    assert len(stores) == len(set(stores)) == 30
    assert sum(w["keys"] for w in workers) % (2**61) == one["train_keys"]
    # one model from both shards (histograms exchanged), close to the single-process fit
    assert abs(two["rmspe"] - one["rmspe"]) <= 0.01 * one["rmspe"], (one["rmspe"], two["rmspe"])


@pytest.mark.integration
@pytest.mark.slow
def test_train_job_with_two_lgbm_workers_and_sharded_reads(pg_slice: Settings, mlflow_test_settings: Settings, monkeypatch) -> None:
    """The training job end to end with ``--lgbm-workers 2`` and 3 read shards (Ray tasks) equals the job's
    single-process run (``--in-driver``, one COPY) within 1 % RMSPE on the same rows.

    Bagging is off here: with it every worker draws its own bag of its own rows, a different sample than the
    single process draws. Without it the fits still differ in the order the workers' histograms are summed,
    which flips near-tied splits (measured on this slice with 60 rounds: 1.6 %, so the bound here is 3 %; the
    1 % check on 100 rounds is the test above)."""
    from test_integration import _submit

    s = mlflow_test_settings.model_copy(update={"table_sales": pg_slice.table_sales, "table_stores": pg_slice.table_stores})
    common = (
        "--source postgres --no-neural --no-per-store --short-windows 0 --no-mlflow --lgbm-rounds 60 --threads 1"
        " --lgbm-param bagging_fraction=1.0"
    )
    base = _submit(s, f"{common} --in-driver")
    monkeypatch.setenv("SFMLOPS_TRAIN_READ_SHARDS", "3")
    dist = _submit(s, f"{common} --lgbm-workers 2")
    assert dist["executor"] == "ray" and base["executor"] == "local"
    assert dist["rows"] == base["rows"] > 0 and dist["stores"] == base["stores"] == len(SALES_STORES)
    assert dist["tasks"] == base["tasks"] + 3  # the three read tasks of the load stage
    assert dist["model"] == base["model"] == "lgbm" and not dist["failed_candidates"]
    assert abs(dist["rmspe"] - base["rmspe"]) <= 0.03 * base["rmspe"], (base["rmspe"], dist["rmspe"])
    for name in ("median_baseline_rmspe", "seasonal_naive_rmspe"):  # the baselines see the same data
        assert dist[name] == pytest.approx(base[name], rel=1e-9)
