"""Feature preparation: long format, explicit gap filling, availability mask, known-future inputs.

Conventions (Nixtla long format):

* ``unique_id`` - store id (int), ``ds`` - day (datetime64[ns]), ``y`` - sales (float, NaN where unknown).
* ``available`` - 1 where the source had a row for (store, day), 0 where :func:`fill_gaps` inserted one.
  Inserted rows carry ``y = NaN`` and neutral inputs (closed, no promo, no holiday); models must ignore
  them as targets (the availability mask of neuralforecast, ``available == 0`` rows dropped for LightGBM).
* Known-future inputs (:data:`FUTURE_EXOG`): ``open``, ``promo``, ``state_holiday``, ``school_holiday``
  and the calendar. They are known for forecast days too, so every feature computed from them (distances
  to the next/previous promo, holiday or closure) may look forward in time without leaking targets.
* Target-derived store statistics (:func:`fit_store_stats`) only ever see rows up to the training cutoff.
* Closed days are forecast as 0 (:func:`apply_closed`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

FUTURE_EXOG = ("open", "promo", "state_holiday", "school_holiday")
STATE_HOLIDAY_CODES = {"0": 0, "a": 1, "b": 2, "c": 3}
MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sept", "Oct", "Nov", "Dec")
#: Distances to events are clipped to this many days (beyond it the exact value carries no signal).
DISTANCE_CAP = 15


def to_long(sales: pd.DataFrame) -> pd.DataFrame:
    """Canonical sales frame -> long format (``unique_id, ds, y`` + known-future inputs).

    Args:
        sales: Canonical sales frame (``store, date, sales, open, promo, state_holiday, school_holiday``);
            ``sales`` may be absent (future rows), giving ``y = NaN``.

    Returns:
        Frame sorted by (unique_id, ds) with ``state_holiday`` encoded as int 0..3 and ``available = 1``.
    """
    missing = [c for c in ("store", "date", *FUTURE_EXOG) if c not in sales.columns]
    if missing:
        raise ValueError(f"sales frame lacks column(s): {', '.join(missing)}")
    out = pd.DataFrame(
        {
            "unique_id": sales["store"].astype("int32").to_numpy(),
            "ds": pd.to_datetime(sales["date"]).dt.normalize().to_numpy(),
            "y": sales["sales"].astype("float64").to_numpy() if "sales" in sales.columns else np.nan,
            "open": sales["open"].astype("int8").to_numpy(),
            "promo": sales["promo"].astype("int8").to_numpy(),
            "state_holiday": encode_state_holiday(sales["state_holiday"]),
            "school_holiday": sales["school_holiday"].astype("int8").to_numpy(),
        }
    )
    out["available"] = np.int8(1)
    return out.sort_values(["unique_id", "ds"], ignore_index=True)


def encode_state_holiday(values: pd.Series) -> np.ndarray:
    """Map StateHoliday ('0', 'a', 'b', 'c'; also int 0) to 0..3 with a clear error for anything else."""
    as_str = values.astype(str).str.strip()
    codes = as_str.map(STATE_HOLIDAY_CODES)
    if codes.isna().any():
        bad = sorted(as_str[codes.isna()].unique().tolist())[:5]
        raise ValueError(f"state_holiday has value(s) {bad}; expected one of {list(STATE_HOLIDAY_CODES)}")
    return codes.astype("int8").to_numpy()


def fill_gaps(long: pd.DataFrame, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None) -> pd.DataFrame:
    """Reindex every store onto one daily calendar, marking inserted rows ``available = 0``.

    Every store gets every day from ``start`` (default: first day in ``long``) to ``end`` (default: last
    day), so the result is a dense (stores x days) panel in (unique_id, ds) order. Inserted rows have
    ``y = NaN``, ``open = promo = school_holiday = state_holiday = 0``.

    Args:
        long: Long frame from :func:`to_long` (may mix history and future rows).
        start: First day of the calendar.
        end: Last day of the calendar.

    Returns:
        The dense frame, with the original columns and ``available``.
    """
    start = pd.Timestamp(start) if start is not None else long["ds"].min()
    end = pd.Timestamp(end) if end is not None else long["ds"].max()
    days = pd.date_range(start, end, freq="D")
    stores = np.sort(long["unique_id"].unique())
    grid = pd.MultiIndex.from_product([stores, days], names=["unique_id", "ds"])
    body = long[(long["ds"] >= start) & (long["ds"] <= end)]
    if body.duplicated(["unique_id", "ds"]).any():
        raise ValueError("duplicate (unique_id, ds) rows; each store may have one row per day")
    dense = body.set_index(["unique_id", "ds"]).reindex(grid).reset_index()
    dense["available"] = dense["available"].fillna(0).astype("int8")
    for col in FUTURE_EXOG:
        dense[col] = dense[col].fillna(0).astype("int8")
    return dense


def _panel(values: np.ndarray, n_stores: int) -> np.ndarray:
    return values.reshape(n_stores, -1)


def _days_since(event: np.ndarray) -> np.ndarray:
    """Per row of a (stores x days) boolean panel: days since the last event (0 on the event), capped."""
    n_days = event.shape[1]
    idx = np.where(event, np.arange(n_days)[None, :], -10_000)
    last = np.maximum.accumulate(idx, axis=1)
    return np.minimum(np.arange(n_days)[None, :] - last, DISTANCE_CAP).astype("float32")


def _days_until(event: np.ndarray) -> np.ndarray:
    return _days_since(event[:, ::-1])[:, ::-1]


def _run_position(flag: np.ndarray) -> np.ndarray:
    """Day index inside the current run of ``flag == 1`` (1-based), 0 outside runs."""
    start = flag & ~np.concatenate([np.zeros((flag.shape[0], 1), bool), flag[:, :-1]], axis=1)
    since_start = _days_since(start)
    return np.where(flag, since_start + 1, 0).astype("float32")


def pad_panel(dense: pd.DataFrame, days: int = DISTANCE_CAP) -> pd.DataFrame:
    """``dense`` (a panel from :func:`fill_gaps`) followed, per store, by ``days`` projected days.

    The features looking forward (``*_until``, ``*_in_week``) of the last days of a frame would otherwise see
    no event after it: the Saturday of a 7-day forecast would look like the day of a store that never closes
    on Sundays. Projected days repeat the last week's openings (a state-holiday closure counts as open) and
    the last 14 days' promo cycle (as :func:`app.forecasting.batch.project_future_inputs` does), with no
    holidays; they are marked ``available = 1``, have ``y = NaN`` and are only meant for feature computation.

    Returns:
        The padded panel (stores x (days of ``dense`` + ``days``)), in (unique_id, ds) order.
    """
    n_stores = dense["unique_id"].nunique()
    n_days = len(dense) // n_stores
    if days <= 0 or n_days < 7:
        return dense
    k = np.arange(1, days + 1)
    src7 = n_days - 1 + k - 7 * ((k + 6) // 7)
    src14 = n_days - 1 + k - 14 * ((k + 13) // 14) if n_days >= 14 else src7
    open_ = _panel(dense["open"].to_numpy(), n_stores)
    state = _panel(dense["state_holiday"].to_numpy(), n_stores)
    promo = _panel(dense["promo"].to_numpy(), n_stores)
    pad_open = np.where(state[:, src7] > 0, 1, open_[:, src7]).astype("int8")
    last = dense["ds"].iloc[n_days - 1]
    pad = pd.DataFrame(
        {
            "unique_id": np.repeat(_panel(dense["unique_id"].to_numpy(), n_stores)[:, 0], days),
            "ds": np.tile(pd.date_range(last + pd.Timedelta(days=1), periods=days, freq="D").to_numpy(), n_stores),
            "open": pad_open.reshape(-1),
            "promo": (promo[:, src14] * pad_open).astype("int8").reshape(-1),
            "state_holiday": np.int8(0),
            "school_holiday": np.int8(0),
            "available": np.int8(1),
        }
    )
    both = pd.concat([dense[list(pad.columns)], pad], ignore_index=True)
    order = np.argsort(both["unique_id"].to_numpy(), kind="stable")
    return both.iloc[order].reset_index(drop=True)


def event_features(dense: pd.DataFrame, pad_days: int = DISTANCE_CAP) -> pd.DataFrame:
    """Calendar and event-distance features of a dense frame from :func:`fill_gaps`.

    All inputs are known-future (open, promo, holidays, calendar), so the features may use later days. The
    days after the frame are projected (:func:`pad_panel`, ``pad_days``) so that the last days' forward-looking
    features see the usual weekly closures and promo cycle instead of "nothing ever again".

    Returns:
        Frame aligned with ``dense`` (same index) holding only the new feature columns.
    """
    n_stores = dense["unique_id"].nunique()
    if len(dense) % n_stores:
        raise ValueError("event_features needs the dense panel produced by fill_gaps")
    if pad_days > 0:
        n_days = len(dense) // n_stores
        padded = pad_panel(dense, pad_days)
        if len(padded) == len(dense):
            return event_features(dense, 0)
        keep = (np.arange(len(padded)) % (n_days + pad_days)) < n_days
        out = event_features(padded, 0)[keep]
        out.index = dense.index
        return out
    ds = dense["ds"]
    avail = _panel(dense["available"].to_numpy() == 1, n_stores)
    open_ = _panel(dense["open"].to_numpy() == 1, n_stores)
    promo = _panel(dense["promo"].to_numpy() == 1, n_stores)
    state = _panel(dense["state_holiday"].to_numpy() > 0, n_stores)
    school = _panel(dense["school_holiday"].to_numpy() == 1, n_stores)
    closed = avail & ~open_
    dow = ds.dt.dayofweek.to_numpy()
    # A closure on a weekday that is not a state holiday (refurbishment, strikes, ...).
    unusual_closed = closed & ~state & (_panel(dow, n_stores) != 6)
    feats = {
        "dow": dow.astype("int8") + 1,
        "day": ds.dt.day.to_numpy().astype("int8"),
        "month": ds.dt.month.to_numpy().astype("int8"),
        "year": ds.dt.year.to_numpy().astype("int16"),
        "week_of_year": ds.dt.isocalendar().week.to_numpy().astype("int8"),
        "day_of_year": ds.dt.dayofyear.to_numpy().astype("int16"),
        "days_in_month_left": (ds.dt.days_in_month - ds.dt.day).to_numpy().astype("int8"),
        "promo_since": _days_since(promo),
        "promo_until": _days_until(promo),
        "promo_day": _run_position(promo),
        "state_hol_since": _days_since(state),
        "state_hol_until": _days_until(state),
        "school_hol_since": _days_since(school),
        "school_hol_until": _days_until(school),
        "closed_since": _days_since(closed),
        "closed_until": _days_until(closed),
        "unusual_closed_since": _days_since(unusual_closed),
        "unusual_closed_until": _days_until(unusual_closed),
    }
    shifted = {
        "open_prev": np.concatenate([np.ones((n_stores, 1), bool), open_[:, :-1]], axis=1),
        "open_next": np.concatenate([open_[:, 1:], np.ones((n_stores, 1), bool)], axis=1),
        "promo_prev": np.concatenate([np.zeros((n_stores, 1), bool), promo[:, :-1]], axis=1),
        "promo_next": np.concatenate([promo[:, 1:], np.zeros((n_stores, 1), bool)], axis=1),
    }
    out = pd.DataFrame(index=dense.index)
    for name, values in feats.items():
        out[name] = values.reshape(-1) if values.ndim == 2 else values
    for name, values in shifted.items():
        out[name] = values.reshape(-1).astype("int8")
    # Holidays in the same ISO week (a week with a holiday shifts demand to the other days).
    week_key = (ds.dt.isocalendar().year.to_numpy().astype("int64") * 100 + out["week_of_year"].to_numpy())
    grp = pd.DataFrame({"u": dense["unique_id"].to_numpy(), "w": week_key, "s": state.reshape(-1), "c": closed.reshape(-1)})
    out["state_hol_in_week"] = grp.groupby(["u", "w"])["s"].transform("sum").to_numpy().astype("int8")
    out["closed_in_week"] = grp.groupby(["u", "w"])["c"].transform("sum").to_numpy().astype("int8")
    return out


def store_static_features(stores: pd.DataFrame) -> pd.DataFrame:
    """Static store features (categoricals as integer codes), indexed by store id."""
    required = ("store", "store_type", "assortment", "competition_distance", "promo2")
    missing = [c for c in required if c not in stores.columns]
    if missing:
        raise ValueError(f"stores frame lacks column(s): {', '.join(missing)}")
    out = pd.DataFrame(index=stores["store"].astype("int32").to_numpy())
    out.index.name = "unique_id"
    out["store_type"] = stores["store_type"].map({"a": 0, "b": 1, "c": 2, "d": 3}).to_numpy().astype("int8")
    out["assortment"] = stores["assortment"].map({"a": 0, "b": 1, "c": 2}).to_numpy().astype("int8")
    out["competition_distance"] = np.log1p(stores["competition_distance"].astype("float64").to_numpy())
    out["promo2"] = stores["promo2"].astype("int8").to_numpy()
    return out


def dated_store_features(frame: pd.DataFrame, stores: pd.DataFrame) -> pd.DataFrame:
    """Store features that depend on the day: competition age in months, Promo2 active and in its month."""
    st = stores.set_index(stores["store"].astype("int32"))
    uid = frame["unique_id"].to_numpy()
    ds = frame["ds"]
    year = ds.dt.year.to_numpy()
    month = ds.dt.month.to_numpy()
    week = ds.dt.isocalendar().week.to_numpy().astype("int64")

    def col(name: str) -> np.ndarray:
        return st[name].reindex(uid).to_numpy(dtype="float64") if name in st.columns else np.full(len(uid), np.nan)

    comp_months = (year - col("competition_open_since_year")) * 12 + (month - col("competition_open_since_month"))
    p2_since = col("promo2_since_year") * 100 + col("promo2_since_week")
    p2_active = (col("promo2") == 1) & ((year * 100 + week) >= np.nan_to_num(p2_since, nan=np.inf))
    intervals = st["promo_interval"].reindex(uid).fillna("").to_numpy() if "promo_interval" in st.columns else np.full(len(uid), "")
    month_abbr = np.asarray(MONTH_ABBR)[month - 1]
    in_month = np.fromiter((m in iv.split(",") for m, iv in zip(month_abbr, intervals, strict=True)), bool, len(uid))
    return pd.DataFrame(
        {
            "competition_months": np.clip(comp_months, -1, 240).astype("float32"),
            "promo2_active": p2_active.astype("int8"),
            "promo2_month": (p2_active & in_month).astype("int8"),
        },
        index=frame.index,
    )


@dataclass
class StoreStats:
    """Target-derived store statistics, computed strictly from history up to ``cutoff``."""

    cutoff: pd.Timestamp
    store: pd.DataFrame  # index unique_id
    store_dow: pd.DataFrame  # index (unique_id, dow)
    store_promo: pd.DataFrame  # index (unique_id, promo)
    #: Only with ``fit_store_stats(..., events=True)``: mean log sales of open state-holiday days relative to
    #: mean + weekday + promo effect, per store (index unique_id; stores that never opened on one are absent)
    #: and over all stores (NaN when none ever did).
    store_holiday: pd.Series = field(default_factory=lambda: pd.Series(dtype="float64"))
    holiday_all: float = float("nan")
    #: The chain's mean log sales in each ISO week of the year relative to the stores' usual level (index 1..53;
    #: weeks the history never saw are absent), smoothed over the neighbouring weeks.
    season: pd.Series = field(default_factory=lambda: pd.Series(dtype="float64"))


def fit_store_stats(history: pd.DataFrame, recent_days: int = 91, events: bool = False) -> StoreStats:
    """Store-level target encodings from open days with positive sales (log scale).

    Args:
        history: Long frame of past rows (``y`` known); rows after its last day are never used.
        recent_days: Window (days before the cutoff) of the recent-level feature.
        events: Also fit the state-holiday and season effects (the neural candidate's level; LightGBM has its
            own holiday and calendar features and skips this pass over every row).

    Returns:
        :class:`StoreStats` with per-store mean/std log sales and customers, recent level shift, and
        means by (store, weekday) and (store, promo).
    """
    cutoff = history["ds"].max()
    pos = history[(history["y"] > 0) & (history["open"] == 1)]
    logy = np.log1p(pos["y"])
    g = logy.groupby(pos["unique_id"])
    store = pd.DataFrame({"te_mean": g.mean(), "te_std": g.std().fillna(0.0), "te_count": g.size().astype("float64")})
    recent = pos["ds"] > cutoff - pd.Timedelta(days=recent_days)
    store["te_recent"] = logy[recent].groupby(pos.loc[recent, "unique_id"]).mean().reindex(store.index) - store["te_mean"]
    year_ago = (pos["ds"] > cutoff - pd.Timedelta(days=365 + recent_days)) & (pos["ds"] <= cutoff - pd.Timedelta(days=365))
    store["te_recent_yoy"] = store["te_recent"] + store["te_mean"] - logy[year_ago].groupby(pos.loc[year_ago, "unique_id"]).mean().reindex(store.index)
    if "customers" in pos.columns:
        store["te_customers"] = np.log1p(pos["customers"]).groupby(pos["unique_id"]).mean()
    dow = pos["ds"].dt.dayofweek + 1
    store_dow = logy.groupby([pos["unique_id"], dow.rename("dow")]).mean().to_frame("te_dow")
    store_dow["te_dow"] -= store["te_mean"].reindex(store_dow.index.get_level_values(0)).to_numpy()
    store_promo = logy.groupby([pos["unique_id"], pos["promo"].rename("promo")]).mean().to_frame("te_promo")
    store_promo["te_promo"] -= store["te_mean"].reindex(store_promo.index.get_level_values(0)).to_numpy()
    stats = StoreStats(cutoff=cutoff, store=store, store_dow=store_dow, store_promo=store_promo)
    if events:
        _fit_events(stats, pos, logy.to_numpy())
    return stats


def _fit_events(stats: StoreStats, pos: pd.DataFrame, logy: np.ndarray) -> None:
    """Fill :attr:`StoreStats.store_holiday`, ``holiday_all`` and ``season`` from the open days ``pos``.

    Stores open on a state holiday sell very differently from their usual weekday (tourist spots far more, others
    far less), and the chain's sales follow the year (January after the Christmas peak): both are measured on
    what the usual level (mean + weekday + promo effect) misses, the season on days that are no holiday and
    smoothed over +-1 week."""
    rel = logy - usual_level(pos, stats)
    holiday = pos["state_holiday"].to_numpy() > 0
    by_store = pd.Series(rel[holiday], index=pd.Index(pos["unique_id"].to_numpy()[holiday], name="unique_id"))
    stats.store_holiday = by_store.groupby(level=0).mean().rename("te_holiday")
    stats.holiday_all = float(by_store.mean()) if len(by_store) else float("nan")
    week = pos["ds"].dt.isocalendar().week.to_numpy().astype("int64")
    weekly = pd.Series(rel[~holiday]).groupby(week[~holiday]).mean()
    if weekly.empty:
        return
    full = weekly.reindex(range(1, 54))
    ring = pd.concat([full.iloc[-1:], full, full.iloc[:1]])  # the year wraps around
    smooth = ring.rolling(3, center=True, min_periods=1).mean().iloc[1:-1]
    stats.season = smooth[full.notna().to_numpy()].rename("te_season")


def usual_level(frame: pd.DataFrame, stats: StoreStats) -> np.ndarray:
    """The store's usual log level on each row: mean log1p sales + weekday + promo effect (0 for a cell never
    seen; stores never seen get the mean of the others)."""
    te = apply_store_stats(frame, stats, frame["ds"].dt.dayofweek.to_numpy() + 1)
    base = te["te_mean"].fillna(stats.store["te_mean"].mean())
    return (base + te["te_dow"].fillna(0.0) + te["te_promo"].fillna(0.0)).to_numpy()


def store_level(frame: pd.DataFrame, stats: StoreStats) -> np.ndarray:
    """:func:`usual_level` + the chain's season + on state holidays the store's holiday effect (the chain's where
    the store never opened on one); needs ``fit_store_stats(..., events=True)`` for the last two."""
    holiday = stats.store_holiday.reindex(frame["unique_id"].to_numpy()).fillna(stats.holiday_all).fillna(0.0).to_numpy()
    week = frame["ds"].dt.isocalendar().week.to_numpy().astype("int64")
    season = stats.season.reindex(week).fillna(0.0).to_numpy()
    return usual_level(frame, stats) + season + np.where(frame["state_holiday"].to_numpy() > 0, holiday, 0.0)


def apply_store_stats(frame: pd.DataFrame, stats: StoreStats, dow: np.ndarray) -> pd.DataFrame:
    """Look up :class:`StoreStats` for each row (NaN for unseen stores/cells)."""
    uid = frame["unique_id"].to_numpy()
    out = stats.store.reindex(uid).reset_index(drop=True)
    out.index = frame.index
    out["te_dow"] = stats.store_dow["te_dow"].reindex(pd.MultiIndex.from_arrays([uid, dow])).to_numpy()
    out["te_promo"] = stats.store_promo["te_promo"].reindex(
        pd.MultiIndex.from_arrays([uid, frame["promo"].to_numpy().astype("int64")])
    ).to_numpy()
    return out


def apply_closed(frame: pd.DataFrame, col: str = "yhat") -> pd.DataFrame:
    """Force the forecast of closed days (``open == 0``) to 0 and clip negatives."""
    values = frame[col].to_numpy(dtype="float64").copy()
    values[frame["open"].to_numpy() == 0] = 0.0
    frame[col] = np.clip(values, 0.0, None)
    return frame
