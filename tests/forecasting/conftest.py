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
