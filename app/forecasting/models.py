"""Forecasting models: a global LightGBM on known-future and store features, a neuralforecast model, local
per-store statsforecast models, and the baselines behind the same interface.

Each model is a small class with an ``alias``, ``fit(history, stores)`` and ``predict(future)``:

* ``history`` - long frame (``unique_id, ds, y`` + known-future inputs, see :mod:`features`), targets known.
* ``future`` - long frame of the days to forecast with their known-future inputs (``y`` ignored).
* ``predict`` returns ``future`` with a ``yhat`` column; closed days are 0.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from app.forecasting import features as F

log = logging.getLogger(__name__)

#: Days of history inputs kept with a fitted model so that "days since" features work for forecasts.
CONTEXT_DAYS = 3 * F.DISTANCE_CAP

DEFAULT_LGBM_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.08,
    "num_leaves": 127,
    "min_data_in_leaf": 40,
    "feature_fraction": 0.7,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 255,
    "verbose": -1,
}


def _design(dense: pd.DataFrame, static: pd.DataFrame, stores: pd.DataFrame, stats: F.StoreStats) -> pd.DataFrame:
    """Feature matrix for every row of a dense (gap-filled) frame."""
    ev = F.event_features(dense)
    st = static.reindex(dense["unique_id"].to_numpy()).reset_index(drop=True)
    st.index = dense.index
    dated = F.dated_store_features(dense, stores)
    te = F.apply_store_stats(dense, stats, ev["dow"].to_numpy().astype("int64"))
    base = dense[["unique_id", "open", "promo", "state_holiday", "school_holiday"]].rename(columns={"unique_id": "store"})
    return pd.concat([base, ev, st, dated, te], axis=1)


@dataclass
class LGBMForecaster:
    """Global LightGBM on log sales relative to the store level, trained on open days with sales > 0.

    Attributes:
        params: LightGBM parameters (merged over :data:`DEFAULT_LGBM_PARAMS`).
        num_boost_round: Boosting rounds.
        num_threads: Threads LightGBM may use.
        seed: Random seed.
    """

    params: dict[str, Any] = field(default_factory=dict)
    num_boost_round: int = 500
    num_threads: int = 2
    seed: int = 0
    alias: str = "lgbm"
    num_workers: int = 1  # > 1: data-parallel fit on Ray Train workers (distributed.DistributedLGBMForecaster)

    booster: Any = field(default=None, repr=False)
    stats: F.StoreStats | None = field(default=None, repr=False)
    static: pd.DataFrame | None = field(default=None, repr=False)
    stores: pd.DataFrame | None = field(default=None, repr=False)
    context: pd.DataFrame | None = field(default=None, repr=False)
    feature_names: list[str] = field(default_factory=list)
    fit_seconds: float = 0.0
    train_end: pd.Timestamp | None = None

    def fit(self, history: pd.DataFrame, stores: pd.DataFrame) -> LGBMForecaster:
        """Fit on ``history`` (long frame, targets known) and the stores frame."""
        import lightgbm as lgb

        if self.num_workers > 1:
            raise ValueError("num_workers > 1 is fitted by Ray Train workers: build the model with "
                             "app.forecasting.distributed.lgbm_forecaster")
        t0 = time.perf_counter()
        self.stores = stores.copy()
        self.static = F.store_static_features(stores)
        self.stats = F.fit_store_stats(history)
        self.train_end = history["ds"].max()
        dense = F.fill_gaps(history)
        X = _design(dense, self.static, stores, self.stats)
        rows = (dense["available"] == 1) & (dense["open"] == 1) & (dense["y"] > 0)
        X = X[rows.to_numpy()]
        y = np.log1p(dense.loc[rows, "y"].to_numpy()) - X["te_mean"].to_numpy()
        self.feature_names = list(X.columns)
        params = {**DEFAULT_LGBM_PARAMS, **self.params, "num_threads": self.num_threads, "seed": self.seed}
        ds = lgb.Dataset(X.to_numpy(dtype="float32"), label=y, feature_name=self.feature_names, free_raw_data=True)
        self.booster = lgb.train(params, ds, num_boost_round=self.num_boost_round)
        keep = dense["ds"] > self.train_end - pd.Timedelta(days=CONTEXT_DAYS)
        self.context = dense.loc[keep & (dense["available"] == 1), ["unique_id", "ds", *F.FUTURE_EXOG, "available"]].reset_index(drop=True)
        self.fit_seconds = time.perf_counter() - t0
        log.info("lgbm fitted on %d rows x %d features in %.1fs", len(X), X.shape[1], self.fit_seconds)
        return self

    def predict(self, future: pd.DataFrame) -> pd.DataFrame:
        """Forecast ``future`` rows (known-future inputs required); returns them with ``yhat``."""
        if self.booster is None or self.context is None or self.stats is None:  # fit sets them all
            raise RuntimeError("LGBMForecaster.predict called before fit")
        fut = future[["unique_id", "ds", *F.FUTURE_EXOG]].assign(available=np.int8(1))
        ctx = self.context[self.context["unique_id"].isin(fut["unique_id"].unique()) & (self.context["ds"] < fut["ds"].min())]
        both = pd.concat([ctx, fut], ignore_index=True)
        dense = F.fill_gaps(both)
        X = _design(dense, self.static, self.stores, self.stats)
        key = pd.MultiIndex.from_frame(dense[["unique_id", "ds"]])
        pos = key.get_indexer(pd.MultiIndex.from_frame(fut[["unique_id", "ds"]]))
        Xf = X.iloc[pos]
        rel = self.booster.predict(Xf[self.feature_names].to_numpy(dtype="float32"), num_threads=self.num_threads)
        level = Xf["te_mean"].to_numpy()
        yhat = np.expm1(rel + level)
        out = future.copy()
        out["yhat"] = np.nan_to_num(yhat, nan=0.0)
        return F.apply_closed(out)


NEURAL_FUTR_EXOG = ["open", "promo", "state_holiday", "school_holiday", "dow_sin", "dow_cos", "promo_day"]
NEURAL_STAT_EXOG = ["store_type", "assortment", "competition_distance", "promo2"]


@dataclass
class NeuralForecaster:
    """Global NHITS (neuralforecast) on log1p sales relative to the store's level, with known-future inputs,
    static store features and the availability mask (gap days are masked out of the loss and the inputs).

    The target is ``log1p(sales)`` minus a level fitted on the training history only
    (:func:`~app.forecasting.features.store_level`): the store's mean log sales plus its weekday and promo
    effects (what LightGBM also starts from), the store's effect on the state holidays it opens (a few stores open
    on holidays and sell very differently then: on the 2015-04-26 backtest those 172 of 45,000 rows took the
    RMSPE from 0.116 to 0.140) and the chain's week-of-year season (January after the Christmas peak). The
    network learns what the level misses rather than each store's scale, so its inputs need no scaler
    (``scaler_type="identity"``); closed and missing days are imputed with the level (0).

    Attributes:
        h: Horizon the network is trained for; forecasts may cover at most ``h`` days after the history.
        input_size: Days of history the network reads.
        max_steps: Training steps (each a batch of ``batch_size`` stores x ``windows_batch_size`` windows).
        num_threads: torch threads.
        seed: Random seed.
    """

    h: int = 48
    input_size: int = 96
    max_steps: int = 1000
    batch_size: int = 8
    windows_batch_size: int = 256
    learning_rate: float = 1e-3
    num_threads: int = 2
    seed: int = 1
    alias: str = "nhits"

    nf: Any = field(default=None, repr=False)
    static_df: pd.DataFrame | None = field(default=None, repr=False)
    history_df: pd.DataFrame | None = field(default=None, repr=False)
    bounds: pd.DataFrame | None = field(default=None, repr=False)
    stats: F.StoreStats | None = field(default=None, repr=False)
    fit_seconds: float = 0.0
    train_end: pd.Timestamp | None = None

    @staticmethod
    def _frame(long: pd.DataFrame, stats: F.StoreStats) -> pd.DataFrame:
        dense = F.fill_gaps(long)
        dow = dense["ds"].dt.dayofweek.to_numpy()
        ev = F.event_features(dense)
        out = dense[["unique_id", "ds", "open", "promo", "state_holiday", "school_holiday"]].copy()
        out["dow_sin"] = np.sin(2 * np.pi * dow / 7)
        out["dow_cos"] = np.cos(2 * np.pi * dow / 7)
        out["promo_day"] = ev["promo_day"].to_numpy() / 5.0
        # Only open days with sales are targets; closed and missing days are masked out and imputed with the
        # level (0 on this scale) so that the input windows stay on the scale of open days.
        ok = (dense["available"].to_numpy() == 1) & (dense["open"].to_numpy() == 1) & (dense["y"].fillna(0.0).to_numpy() > 0)
        logy = np.log1p(np.where(ok, dense["y"].fillna(0.0).to_numpy(), 0.0))
        out["y"] = np.where(ok, logy - F.store_level(dense, stats), 0.0)
        out["available_mask"] = ok.astype("float32")
        return out

    @staticmethod
    def static_frame(stores: pd.DataFrame, ids: Any) -> pd.DataFrame:
        """The static store features of the stores ``ids`` (missing competition distances: the median)."""
        static = F.store_static_features(stores).reset_index()
        static["competition_distance"] = static["competition_distance"].fillna(static["competition_distance"].median())
        return static[static["unique_id"].isin(ids)][["unique_id", *NEURAL_STAT_EXOG]]

    def nhits_kwargs(self) -> dict[str, Any]:
        """NHITS' keyword arguments besides ``h`` and ``loss`` (what the fit and a Tune trial both build it from)."""
        return {
            "input_size": int(self.input_size),
            "futr_exog_list": NEURAL_FUTR_EXOG,
            "stat_exog_list": NEURAL_STAT_EXOG,
            "scaler_type": "identity",  # the target is already relative to the store level
            "max_steps": int(self.max_steps),
            "batch_size": int(self.batch_size),
            "windows_batch_size": int(self.windows_batch_size),
            "learning_rate": float(self.learning_rate),
            "random_seed": self.seed,
            "alias": self.alias,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": False,
            "enable_checkpointing": False,
            "accelerator": "cpu",
        }

    def fit(self, history: pd.DataFrame, stores: pd.DataFrame) -> NeuralForecaster:
        """Fit on ``history`` (long frame, targets known) and the stores frame."""
        import torch
        from neuralforecast import NeuralForecast
        from neuralforecast.losses.pytorch import MAE
        from neuralforecast.models import NHITS

        t0 = time.perf_counter()
        torch.set_num_threads(self.num_threads)
        self.train_end = history["ds"].max()
        self.stats = F.fit_store_stats(history, events=True)
        df = self._frame(history, self.stats)
        self.static_df = self.static_frame(stores, df["unique_id"].unique())
        model = NHITS(h=self.h, loss=MAE(), **self.nhits_kwargs())
        self.nf = NeuralForecast(models=[model], freq="D")
        self.nf.fit(df=df, static_df=self.static_df)
        self.history_df = df[df["ds"] > self.train_end - pd.Timedelta(days=self.input_size + 2 * F.DISTANCE_CAP)].reset_index(drop=True)
        seen = df[df["available_mask"] == 1].groupby("unique_id")["y"]
        self.bounds = pd.DataFrame({"lo": seen.min(), "hi": seen.max() + np.log(1.3)})
        self.fit_seconds = time.perf_counter() - t0
        log.info("nhits fitted (%d steps) in %.1fs", self.max_steps, self.fit_seconds)
        return self

    def predict(self, future: pd.DataFrame) -> pd.DataFrame:
        """Forecast ``future`` rows: days ``train_end + 1 .. train_end + h`` (known-future inputs required)."""
        if (self.nf is None or self.train_end is None or self.history_df is None or self.static_df is None or self.bounds is None
                or self.stats is None):
            raise RuntimeError("NeuralForecaster.predict called before fit")  # fit sets them all
        first, last = future["ds"].min(), future["ds"].max()
        if first <= self.train_end or (last - self.train_end).days > self.h:
            raise ValueError(
                f"{self.alias} forecasts days {self.train_end.date()} + 1..{self.h}; got {first.date()}..{last.date()}"
            )
        end = self.train_end + pd.Timedelta(days=self.h)
        stores = future["unique_id"].unique()
        hist = self.history_df[self.history_df["unique_id"].isin(stores)]
        fut_long = future[["unique_id", "ds", *F.FUTURE_EXOG]].assign(available=np.int8(1), y=np.nan)
        both = pd.concat(
            [hist[["unique_id", "ds"]].assign(**{c: hist[c].to_numpy() for c in F.FUTURE_EXOG}, available=np.int8(1)), fut_long],
            ignore_index=True,
        )
        frame = self._frame(F.fill_gaps(both, end=end), self.stats)
        futr = frame[frame["ds"] > self.train_end].drop(columns=["y", "available_mask"])
        pred = self.nf.predict(df=hist, static_df=self.static_df[self.static_df["unique_id"].isin(stores)], futr_df=futr)
        pred = pred.reset_index() if "unique_id" not in pred.columns else pred
        out = future.drop(columns=["yhat"], errors="ignore").merge(
            pred[["unique_id", "ds", self.alias]].rename(columns={self.alias: "yhat"}), on=["unique_id", "ds"], how="left"
        )
        # Clip to the store's observed range around its level (+30 %): a few windows otherwise explode after long
        # closures.
        lo = self.bounds["lo"].reindex(out["unique_id"]).to_numpy()
        hi = self.bounds["hi"].reindex(out["unique_id"]).to_numpy()
        rel = np.clip(out["yhat"].fillna(0.0).to_numpy(), lo, hi)
        out["yhat"] = np.expm1(rel + F.store_level(out, self.stats))
        return F.apply_closed(out)


@dataclass
class BaselineModel:
    """A baseline of :mod:`baselines` (``seasonal_naive``, ``median_dow_promo``) behind ``fit``/``predict``."""

    alias: str = "median_dow_promo"
    history: pd.DataFrame | None = field(default=None, repr=False)

    def fit(self, history: pd.DataFrame, stores: pd.DataFrame) -> BaselineModel:
        from app.forecasting.baselines import BASELINES

        if self.alias not in BASELINES:
            raise ValueError(f"unknown baseline {self.alias!r}; known: {', '.join(BASELINES)}")
        self.history = history
        return self

    def predict(self, future: pd.DataFrame) -> pd.DataFrame:
        from app.forecasting.baselines import BASELINES

        if self.history is None:
            raise RuntimeError(f"{self.alias}.predict called before fit")
        return BASELINES[self.alias](self.history, future)


@dataclass
class StatsForecaster:
    """Local per-store models (statsforecast) on log sales of open days, with a per-store promo effect.

    Each store's daily log1p sales (open days with sales; other days imputed with the store's weekday median)
    get their own ``SeasonalExponentialSmoothingOptimized`` (weekly season) or ``AutoETS`` fit; promotions,
    which these models cannot see, enter as the store's median log-lift of promo over non-promo open days of
    the last ``promo_days`` days. Stores are independent, so the family is fitted in shards of stores across
    the cluster (see :mod:`app.forecasting.plan`).

    Attributes:
        model: ``ses`` (seasonal exponential smoothing, fast) or ``ets`` (AutoETS additive, slower).
        h: Days after the history that ``predict`` may forecast.
        season_length: Season of the daily series.
        promo_days: Days of history the promo lift is measured on.
    """

    model: str = "ses"
    h: int = 48
    season_length: int = 7
    promo_days: int = 365
    alias: str = "ses"

    train_end: pd.Timestamp | None = None
    forecast_: pd.DataFrame | None = field(default=None, repr=False)  # unique_id, ds, base (log)
    lift: pd.Series | None = field(default=None, repr=False)
    base_shift: pd.Series | None = field(default=None, repr=False)
    fit_seconds: float = 0.0

    def _models(self) -> list[Any]:
        from statsforecast.models import AutoETS, SeasonalExponentialSmoothingOptimized

        if self.model == "ses":
            return [SeasonalExponentialSmoothingOptimized(season_length=self.season_length, alias="base")]
        if self.model == "ets":
            return [AutoETS(season_length=self.season_length, model="ANA", alias="base")]
        raise ValueError(f"unknown statsforecast model {self.model!r} (ses or ets)")

    def fit(self, history: pd.DataFrame, stores: pd.DataFrame) -> StatsForecaster:
        """Fit every store of ``history``; its forecasts of the ``h`` days after it are computed here."""
        from statsforecast import StatsForecast

        t0 = time.perf_counter()
        self.train_end = history["ds"].max()
        dense = F.fill_gaps(history)
        ok = (dense["available"] == 1) & (dense["open"] == 1) & (dense["y"].fillna(0.0) > 0)
        logy = pd.Series(np.where(ok, np.log1p(dense["y"].fillna(0.0)), np.nan), index=dense.index)
        dow = dense["ds"].dt.dayofweek
        fill = logy.groupby([dense["unique_id"], dow]).transform("median")
        fill = fill.fillna(logy.groupby(dense["unique_id"]).transform("median"))
        df = pd.DataFrame({"unique_id": dense["unique_id"].to_numpy(), "ds": dense["ds"].to_numpy(), "y": logy.fillna(fill).fillna(0.0).to_numpy()})
        sf = StatsForecast(models=self._models(), freq="D", n_jobs=1)
        fc = sf.forecast(df=df, h=int(self.h))
        fc = fc.reset_index() if "unique_id" not in fc.columns else fc
        self.forecast_ = fc[["unique_id", "ds", "base"]].astype({"unique_id": dense["unique_id"].dtype})
        recent = dense[ok & (dense["ds"] > self.train_end - pd.Timedelta(days=self.promo_days))]
        rl = np.log1p(recent["y"])
        med = rl.groupby([recent["unique_id"], recent["promo"]]).median().unstack()
        self.lift = (med.get(1) - med.get(0)).fillna(0.0) if 1 in med.columns and 0 in med.columns else pd.Series(dtype="float64")
        # The smoothed base level mixes promo and non-promo days: centre it on non-promo days.
        share = recent.groupby("unique_id")["promo"].mean()
        self.base_shift = -(self.lift * share.reindex(self.lift.index).fillna(0.0))
        self.fit_seconds = time.perf_counter() - t0
        return self

    def predict(self, future: pd.DataFrame) -> pd.DataFrame:
        if self.forecast_ is None or self.train_end is None or self.lift is None or self.base_shift is None:  # fit sets them all
            raise RuntimeError(f"{self.alias}.predict called before fit")
        last = future["ds"].max()
        if future["ds"].min() <= self.train_end or (last - self.train_end).days > self.h:
            raise ValueError(f"{self.alias} forecasts days {self.train_end.date()} + 1..{self.h}; got {future['ds'].min().date()}..{last.date()}")
        out = future.drop(columns=["yhat"], errors="ignore").merge(self.forecast_, on=["unique_id", "ds"], how="left")
        lift = self.lift.reindex(out["unique_id"]).fillna(0.0).to_numpy() * out["promo"].to_numpy()
        shift = self.base_shift.reindex(out["unique_id"]).fillna(0.0).to_numpy()
        out["yhat"] = np.expm1(out["base"].fillna(0.0).to_numpy() + shift + lift)
        return F.apply_closed(out.drop(columns=["base"]))


@dataclass
class ShardedModel:
    """Models of disjoint store shards (a per-store family fitted shard by shard) behind one ``predict``."""

    parts: list[tuple[list[int], Any]]  # (store ids, fitted model)
    alias: str = "sharded"

    @property
    def train_end(self) -> pd.Timestamp:
        return max(m.train_end for _, m in self.parts)

    def predict(self, future: pd.DataFrame) -> pd.DataFrame:
        outs = []
        for ids, model in self.parts:
            rows = future[future["unique_id"].isin(ids)]
            if not rows.empty:
                outs.append(model.predict(rows))
        known = {s for ids, _ in self.parts for s in ids}
        unknown = sorted(set(future["unique_id"].unique()) - known)
        if unknown:
            raise ValueError(f"{self.alias} has no model for store(s) {unknown[:10]}")
        pred = pd.concat(outs, ignore_index=True)[["unique_id", "ds", "yhat"]]
        return future.drop(columns=["yhat"], errors="ignore").merge(pred, on=["unique_id", "ds"], how="left")
