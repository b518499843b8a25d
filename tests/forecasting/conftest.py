"""Fixtures of the forecasting tests: the real shared Rossmann data (skipped when absent)."""

from __future__ import annotations

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
def real_long(real_data):  # noqa: ANN001, ANN201
    from app.forecasting.features import to_long

    return to_long(real_data[0])


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
def make_sales():  # noqa: ANN201
    """Factory of :func:`tiny_sales` frames."""
    return tiny_sales


@pytest.fixture()
def make_stores():  # noqa: ANN201
    """Factory of :func:`tiny_stores` frames."""
    return tiny_stores


def drop_mlflow_test_state(settings, prefix: str, experiment: str | None = None) -> None:  # noqa: ANN001
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
def mlflow_cleaner():  # noqa: ANN201
    """:func:`drop_mlflow_test_state`, for module-scoped fixtures of test files."""
    return drop_mlflow_test_state


@pytest.fixture()
def mlflow_test_settings(stack):  # noqa: ANN001, ANN201
    """The stack's settings with a model name and an MLflow experiment of this test only, both removed afterwards."""
    import uuid

    tag = uuid.uuid4().hex[:8]
    s = stack.model_copy(update={"model_name": f"sales-forecaster-test-{tag}", "mlflow_experiment": f"sfmlops-test-{tag}"})
    yield s
    drop_mlflow_test_state(s, s.model_name, s.mlflow_experiment)


@pytest.fixture()
def small_dataset(mlflow_test_settings, rossmann_dir, tmp_path):  # noqa: ANN001, ANN201
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
