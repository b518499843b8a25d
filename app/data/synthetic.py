"""A deterministic, Rossmann-shaped synthetic dataset for machines without the Kaggle files.

Shape follows the real data: daily rows per store, closed on Sundays (but a few stores) and on state
holidays, alternate-week Monday-Friday promos, per-state school holidays, weekly and yearly seasonality,
store types and assortments with different levels, refurbishment closures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from app.data.schema import PROMO_INTERVALS, SALES_DTYPES

N_STATES = 12


def _easter(year: int) -> pd.Timestamp:
    """Gregorian Easter Sunday (anonymous algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month = (h + l_ - 7 * m + 114) // 31
    day = ((h + l_ - 7 * m + 114) % 31) + 1
    return pd.Timestamp(year=year, month=month, day=day)


def _state_holidays(dates: pd.DatetimeIndex, rng: np.random.Generator) -> np.ndarray:
    """Matrix (state, day) of state-holiday codes '0', 'a' (public), 'b' (Easter), 'c' (Christmas)."""
    codes = np.full((N_STATES, len(dates)), "0", dtype=object)
    pos = {d: i for i, d in enumerate(dates)}
    for year in sorted(set(dates.year)):
        easter = _easter(year)
        national = {
            pd.Timestamp(year, 1, 1): "a",
            easter - pd.Timedelta(days=2): "b",
            easter + pd.Timedelta(days=1): "b",
            pd.Timestamp(year, 5, 1): "a",
            easter + pd.Timedelta(days=39): "a",
            easter + pd.Timedelta(days=50): "a",
            pd.Timestamp(year, 10, 3): "a",
            pd.Timestamp(year, 12, 25): "c",
            pd.Timestamp(year, 12, 26): "c",
        }
        regional = [pd.Timestamp(year, 1, 6), easter + pd.Timedelta(days=60), pd.Timestamp(year, 8, 15),
                    pd.Timestamp(year, 10, 31), pd.Timestamp(year, 11, 1)]
        for day, code in national.items():
            if day in pos:
                codes[:, pos[day]] = code
        for day in regional:
            if day in pos:
                states = rng.random(N_STATES) < 0.4
                codes[states, pos[day]] = "a"
    return codes


def _school_holidays(dates: pd.DatetimeIndex, rng: np.random.Generator) -> np.ndarray:
    """Matrix (state, day) of 0/1 school holidays: summer, Easter, autumn and Christmas breaks."""
    school = np.zeros((N_STATES, len(dates)), dtype=np.int8)
    doy = dates.dayofyear.to_numpy()
    years = dates.year.to_numpy()
    for s in range(N_STATES):
        summer_start = 170 + int(rng.integers(0, 35))
        autumn_start = 280 + int(rng.integers(0, 20))
        for year in np.unique(years):
            in_year = years == year
            easter_doy = _easter(int(year)).dayofyear
            windows = [(summer_start, 42), (easter_doy - 9, 14), (autumn_start, 10), (356, 14), (1, 6)]
            for start, length in windows:
                school[s, in_year & (doy >= start) & (doy < start + length)] = 1
    return school


def _stores(n_stores: int, rng: np.random.Generator) -> pd.DataFrame:
    store_type = rng.choice(list("abcd"), size=n_stores, p=[0.54, 0.02, 0.13, 0.31])
    assortment = np.where(
        store_type == "b", rng.choice(list("abc"), size=n_stores, p=[0.4, 0.5, 0.1]),
        rng.choice(["a", "c"], size=n_stores, p=[0.53, 0.47]),
    )
    competition_distance = np.round(np.exp(rng.normal(7.7, 1.3, n_stores)) / 10) * 10
    competition_distance[rng.random(n_stores) < 0.003] = np.nan
    has_since = rng.random(n_stores) < 0.68
    promo2 = (rng.random(n_stores) < 0.49).astype(np.int8)
    frame = pd.DataFrame(
        {
            "store": np.arange(1, n_stores + 1, dtype=np.int32),
            "store_type": store_type,
            "assortment": assortment,
            "competition_distance": competition_distance,
            "competition_open_since_month": np.where(has_since, rng.integers(1, 13, n_stores), np.nan),
            "competition_open_since_year": np.where(has_since, rng.integers(2000, 2015, n_stores), np.nan),
            "promo2": promo2,
            "promo2_since_week": np.where(promo2 == 1, rng.integers(1, 50, n_stores), np.nan),
            "promo2_since_year": np.where(promo2 == 1, rng.integers(2009, 2016, n_stores), np.nan),
            # numpy takes None as an object scalar here; its stubs' ArrayLike leaves None out
            "promo_interval": np.where(promo2 == 1, rng.choice(list(PROMO_INTERVALS), n_stores), None),  # type: ignore[call-overload]
        }
    )
    return frame


def generate(
    seed: int = 42,
    n_stores: int = 1115,
    start: str = "2013-01-01",
    end: str = "2015-06-13",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate ``(sales, stores)`` in the canonical format; the same arguments give the same frames.

    Args:
        seed: Random seed.
        n_stores: Number of stores (ids 1..n_stores).
        start: First date (inclusive), ``YYYY-MM-DD``.
        end: Last date (inclusive), ``YYYY-MM-DD``.

    Returns:
        The canonical sales frame (sorted by store, date) and the stores frame.
    """
    if n_stores < 1:
        raise ValueError("n_stores must be >= 1")
    dates = pd.date_range(start, end, freq="D")
    if len(dates) == 0:
        raise ValueError(f"empty date range {start}..{end}")
    rng = np.random.default_rng(seed)
    stores = _stores(n_stores, rng)
    holidays = _state_holidays(dates, rng)
    school = _school_holidays(dates, rng)
    state_of_store = rng.integers(0, N_STATES, n_stores)

    n_days = len(dates)
    dow = dates.dayofweek.to_numpy()  # 0=Mon
    doy = dates.dayofyear.to_numpy()
    week_index = ((dates - dates[0]).days.to_numpy() + dates[0].dayofweek) // 7
    promo_day = ((week_index % 2 == 0) & (dow < 5)).astype(np.int8)

    type_level = {"a": 1.0, "b": 1.6, "c": 1.0, "d": 1.05}
    level = np.exp(rng.normal(np.log(5600), 0.35, n_stores)) * np.array([type_level[t] for t in stores["store_type"]])
    level *= np.where(stores["assortment"].to_numpy() == "c", 1.08, 1.0)
    weekly = np.array([1.18, 1.02, 0.97, 0.96, 1.02, 0.88, 0.9])
    yearly = 1 + 0.06 * np.sin(2 * np.pi * (doy - 80) / 365.25) + 0.25 * np.exp(-((doy - 352) ** 2) / 60.0)
    promo_lift = 1 + rng.uniform(0.15, 0.35, n_stores)
    trend = 1 + rng.normal(0.0, 0.04, n_stores)[:, None] * (np.arange(n_days) / 365.25)[None, :]

    hol = holidays[state_of_store]  # (store, day)
    sch = school[state_of_store]
    sunday_open = rng.random(n_stores) < 0.03
    open_ = np.ones((n_stores, n_days), dtype=np.int8)
    open_[:, dow == 6] = 0
    open_[sunday_open, :] = np.where(dow == 6, 1, open_[sunday_open, :])
    open_[hol != "0"] = 0
    refurb = np.flatnonzero(rng.random(n_stores) < 0.06)
    for s in refurb:
        start_day = int(rng.integers(0, max(1, n_days - 60)))
        open_[s, start_day : start_day + int(rng.integers(7, 60))] = 0
    open_[rng.random((n_stores, n_days)) < 0.002] = 0

    promo = np.broadcast_to(promo_day, (n_stores, n_days)).copy()
    mean = (
        level[:, None] * weekly[dow][None, :] * yearly[None, :] * trend
        * np.where(promo == 1, promo_lift[:, None], 1.0) * np.where(sch == 1, 1.03, 1.0)
    )
    sales = np.rint(mean * np.exp(rng.normal(0, 0.12, (n_stores, n_days)))).astype(np.int64)
    customers = np.rint(sales / rng.normal(9.5, 0.6, n_stores)[:, None] * np.exp(rng.normal(0, 0.05, sales.shape)))
    sales = np.where(open_ == 1, sales, 0)
    customers = np.where(open_ == 1, customers, 0).astype(np.int64)

    frame = pd.DataFrame(
        {
            "store": np.repeat(stores["store"].to_numpy(), n_days),
            "day_of_week": np.tile(dow + 1, n_stores),
            "date": np.tile(dates.to_numpy(), n_stores),
            "sales": sales.ravel(),
            "customers": customers.ravel(),
            "open": open_.ravel(),
            "promo": np.where(open_ == 1, promo, 0).ravel(),
            "state_holiday": hol.ravel(),
            "school_holiday": sch.ravel(),
        }
    )
    frame = frame.astype(SALES_DTYPES)
    return frame, stores
