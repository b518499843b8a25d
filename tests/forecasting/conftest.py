"""Fixtures of the forecasting tests: the real shared Rossmann data (skipped when absent), the chain of the
feature tests (the real data, else a synthetic stand-in), hand-made frames, MLflow clean-up."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "rossmann"


@pytest.fixture(scope="session")
def real_data() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(sales, stores) from ../shared/data/rossmann in the canonical format."""
    from app.data.kaggle import find_files, load_stores, load_train

    if not SHARED.is_dir():
        pytest.skip(f"real Rossmann data not found at {SHARED}")
    train, store = find_files(SHARED)
    return load_train(train), load_stores(store)


@pytest.fixture(scope="session")
def real_long(real_data):
    from app.forecasting.features import to_long

    return to_long(real_data[0])


@dataclass(frozen=True)
class Chain:
    """A chain's (sales, stores) with what is known of it independently of the code under test."""

    sales: pd.DataFrame
    stores: pd.DataFrame
    source: str  #: ``kaggle`` or ``synthetic``
    rows: int  #: sales rows of the source
    n_stores: int
    gaps: dict[int, int]  #: {days missing from a store's history: number of such stores}


#: The Kaggle file: 1,115 stores, 180 of them lack 2014-07-01..2014-12-31 (184 days), store 988 lacks 2013-01-01.
KAGGLE = {"rows": 963_689, "n_stores": 1115, "gaps": {184: 180, 1: 1}}
#: The synthetic stand-in: 8 stores over the Kaggle dates; stores 3 and 5 lack the same half year, store 7 a day.
SYNTHETIC_STORES, SYNTHETIC_DAYS = 8, ("2013-01-01", "2015-07-31")
SYNTHETIC_GAP = ((3, 5), ("2014-07-01", "2014-12-31")), ((7,), ("2013-06-05", "2013-06-05"))
#: Metadata of stores 1 and 2 as in the Kaggle file (the dated-feature test reads them), every store type present.
SYNTHETIC_META = {
    1: {"store_type": "c", "assortment": "a", "competition_open_since_month": 9.0, "competition_open_since_year": 2008.0,
        "promo2": 0, "promo2_since_week": None, "promo2_since_year": None, "promo_interval": None},
    2: {"store_type": "a", "assortment": "a", "competition_open_since_month": 11.0, "competition_open_since_year": 2007.0,
        "promo2": 1, "promo2_since_week": 13.0, "promo2_since_year": 2010.0, "promo_interval": "Jan,Apr,Jul,Oct"},
    3: {"store_type": "b", "assortment": "b"},
    4: {"store_type": "d", "assortment": "c"},
}


def synthetic_chain() -> Chain:
    """:data:`SYNTHETIC_STORES` stores of ``app.data.synthetic`` shaped like the Kaggle file (gaps, metadata)."""
    from app.data.synthetic import generate

    sales, stores = generate(42, SYNTHETIC_STORES, *SYNTHETIC_DAYS)
    drop = pd.Series(False, index=sales.index)
    gaps: dict[int, int] = {}
    for ids, (first, last) in SYNTHETIC_GAP:
        days = pd.date_range(first, last)
        drop |= sales["store"].isin(ids) & sales["date"].isin(days)
        gaps[len(days)] = gaps.get(len(days), 0) + len(ids)
    sales = sales[~drop].reset_index(drop=True)
    stores = stores.set_index("store")
    for store, meta in SYNTHETIC_META.items():
        for column, value in meta.items():
            stores.loc[store, column] = value
    stores = stores.reset_index().astype({"store": "int32", "promo2": "int8"})
    rows = SYNTHETIC_STORES * len(pd.date_range(*SYNTHETIC_DAYS)) - sum(days * n for days, n in gaps.items())
    return Chain(sales, stores, "synthetic", rows, SYNTHETIC_STORES, gaps)


@pytest.fixture(scope="session")
def chain() -> Chain:
    """The real shared data when present (unless ``SFMLOPS_TEST_DATA=synthetic``), else :func:`synthetic_chain`: the
    feature tests run on machines without ../shared/data too."""
    from app.data.kaggle import find_files, load_stores, load_train

    if os.environ.get("SFMLOPS_TEST_DATA") == "synthetic" or not SHARED.is_dir():
        return synthetic_chain()
    train, store = find_files(SHARED)
    return Chain(load_train(train), load_stores(store), "kaggle", **KAGGLE)


@pytest.fixture(scope="session")
def chain_long(chain: Chain) -> pd.DataFrame:
    """:func:`chain`'s sales in the long format."""
    from app.forecasting.features import to_long

    return to_long(chain.sales)


def tiny_sales(days: int = 28, stores: int = 2, start: str = "2015-01-05") -> pd.DataFrame:
    """A small hand-made canonical sales frame: closed on Sundays, promo on the first 5 days of every 2 weeks."""
    rows = []
    for s in range(1, stores + 1):
        for i, d in enumerate(pd.date_range(start, periods=days, freq="D")):
            open_ = int(d.dayofweek != 6)
            promo = int(open_ and (i % 14) < 5)
            sales = (1000 * s + 100 * d.dayofweek + 300 * promo) * open_
            rows.append((s, d, d.dayofweek + 1, sales, sales // 10, open_, promo, "0", 0))
    cols = ["store", "date", "day_of_week", "sales", "customers", "open", "promo", "state_holiday", "school_holiday"]
    return pd.DataFrame(rows, columns=cols)


def tiny_stores(stores: int = 2) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "store": list(range(1, stores + 1)),
            "store_type": ["a"] * stores,
            "assortment": ["a"] * stores,
            "competition_distance": [500.0] * stores,
            "competition_open_since_month": [None] * stores,
            "competition_open_since_year": [None] * stores,
            "promo2": [0] * stores,
            "promo2_since_week": [None] * stores,
            "promo2_since_year": [None] * stores,
            "promo_interval": [None] * stores,
        }
    )


@pytest.fixture()
def make_sales():
    """Factory of :func:`tiny_sales` frames."""
    return tiny_sales


@pytest.fixture()
def make_stores():
    """Factory of :func:`tiny_stores` frames."""
    return tiny_stores


def drop_mlflow_test_state(settings, prefix: str, experiment: str | None = None) -> None:
    """Delete every registered model whose name starts with ``prefix`` and (hard) the runs of ``experiment``."""
    from mlflow import MlflowClient

    from app.forecasting.tracking import configure_mlflow

    configure_mlflow(settings)
    client = MlflowClient()
    for rm in client.search_registered_models(filter_string=f"name LIKE '{prefix}%'"):
        client.delete_registered_model(rm.name)
    if experiment:
        exp = client.get_experiment_by_name(experiment)
        if exp is not None:
            for run in client.search_runs([exp.experiment_id], max_results=1000):
                client.delete_run(run.info.run_id)
            client.delete_experiment(exp.experiment_id)


@pytest.fixture(scope="session")
def mlflow_cleaner():
    """:func:`drop_mlflow_test_state`, for module-scoped fixtures of test files."""
    return drop_mlflow_test_state


@pytest.fixture()
def mlflow_test_settings(stack):
    """The stack's settings with a model name and an MLflow experiment of this test only, both removed afterwards."""
    import uuid

    tag = uuid.uuid4().hex[:8]
    s = stack.model_copy(update={"model_name": f"sales-forecaster-test-{tag}", "mlflow_experiment": f"sfmlops-test-{tag}"})
    yield s
    drop_mlflow_test_state(s, s.model_name, s.mlflow_experiment)


@pytest.fixture()
def small_dataset(mlflow_test_settings, rossmann_dir, tmp_path):
    """:func:`mlflow_test_settings` whose prepared dataset (source=dataset) is the last 300 days of stores 1-3."""
    from app.data import SALES_FILE, STORES_FILE, load_dataset, prepare

    if not (mlflow_test_settings.data_dir / SALES_FILE).is_file():
        prepare(mlflow_test_settings, rossmann_dir)
    sales, stores = load_dataset(mlflow_test_settings)
    sales = sales[sales["store"].isin([1, 2, 3])]
    sales = sales[sales["date"] > sales["date"].max() - pd.Timedelta(days=300)]
    (tmp_path / "data").mkdir()
    sales.to_parquet(tmp_path / "data" / SALES_FILE)
    stores[stores["store"].isin([1, 2, 3])].to_parquet(tmp_path / "data" / STORES_FILE)
    return mlflow_test_settings.model_copy(update={"state_dir": tmp_path})
