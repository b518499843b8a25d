"""Baselines (hand-computed), the LightGBM model and the pyfunc wrapper on small hand-made data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.forecasting import baselines as B
from app.forecasting import features as F
from app.forecasting.backtest import cutoffs, interval_quantiles, split
from app.forecasting.evaluate import EvaluationError, score
from app.forecasting.models import LGBMForecaster
from app.forecasting.pyfunc import OUTPUT_COLUMNS, SalesForecaster


@pytest.fixture()
def tiny(make_sales, make_stores):
    long = F.to_long(make_sales(28, 2))
    cutoff = long["ds"].min() + pd.Timedelta(days=20)
    return split(long, cutoff, 7), make_stores(2)


def test_median_baseline_is_exact_on_a_deterministic_pattern(tiny) -> None:
    (hist, fut), _ = tiny
    pred = B.median_store_weekday_promo(hist, fut)
    assert np.allclose(pred["yhat"], pred["y"])


def test_seasonal_naive_copies_last_week(tiny) -> None:
    (hist, fut), _ = tiny
    pred = B.seasonal_naive(hist, fut).set_index(["unique_id", "ds"])
    monday = fut["ds"].min()
    # Last week's Monday had the promo (+300), this week's has not.
    assert pred.loc[(1, monday), "yhat"] == 1300.0 and pred.loc[(1, monday), "y"] == 1000.0
    sunday = monday + pd.Timedelta(days=6)
    assert pred.loc[(2, sunday), "yhat"] == 0.0  # closed


def test_backtest_cutoffs_and_split(make_sales) -> None:
    end = pd.Timestamp("2015-06-13")
    assert cutoffs(end, 48) == [pd.Timestamp("2015-04-26")]
    assert cutoffs(end, 7, 3) == [end - pd.Timedelta(days=d) for d in (21, 14, 7)]
    long = F.to_long(make_sales(28, 1))
    hist, fut = split(long, long["ds"].min() + pd.Timedelta(days=20), 7)
    assert hist["ds"].max() < fut["ds"].min() and len(fut) == 7


def _lgbm_setup(make_sales, make_stores, days: int = 140):
    long = F.to_long(make_sales(days, 3))
    cutoff = long["ds"].max() - pd.Timedelta(days=14)
    hist, fut = split(long, cutoff, 14)
    model = LGBMForecaster(num_boost_round=30, params={"min_data_in_leaf": 5}).fit(hist, make_stores(3))
    return long, hist, fut, model


def test_lgbm_fits_predicts_closed_zero_and_ignores_future_targets(make_sales, make_stores) -> None:
    _, hist, fut, model = _lgbm_setup(make_sales, make_stores)
    pred = model.predict(fut)
    assert len(pred) == len(fut)
    assert (pred.loc[pred["open"] == 0, "yhat"] == 0).all()
    assert (pred.loc[pred["open"] == 1, "yhat"] > 0).all()
    # Learns the pattern well enough on open days.
    open_ = pred[pred["y"] > 0]
    assert np.sqrt(np.mean(((open_["y"] - open_["yhat"]) / open_["y"]) ** 2)) < 0.15
    # Targets of the forecast rows are never read.
    pred2 = model.predict(fut.assign(y=np.nan))
    np.testing.assert_allclose(pred["yhat"], pred2["yhat"])
    with pytest.raises(RuntimeError, match="before fit"):
        LGBMForecaster().predict(fut)


def test_backtest_reports_models_and_baselines(make_sales, make_stores) -> None:
    from app.forecasting.executor import LocalExecutor, Progress
    from app.forecasting.pipeline import run_backtest
    from app.forecasting.plan import Candidate, baselines, plan_backtest

    long, stores = F.to_long(make_sales(140, 3)), make_stores(3)
    lgbm = Candidate("lgbm", "lgbm", {"num_boost_round": 20, "params": {"min_data_in_leaf": 5}})
    ses = Candidate("ses", "stats", {"model": "ses", "h": 7, "alias": "ses"}, per_store=True)
    tasks = plan_backtest([lgbm, ses, *baselines()], long["ds"].max(), [1, 2, 3], horizon=7, n_windows=2, shard_size=2)
    assert len(tasks) == 2 * (1 + 2 + 2)  # two origins x (lgbm, ses in two shards, two baselines)
    # longest first: both origins' global fits, then the per-store shards, then the baselines
    assert [t.candidate.name for t in tasks[:2]] == ["lgbm", "lgbm"] and len({t.cutoff for t in tasks[:2]}) == 2
    assert {t.candidate.name for t in tasks[2:6]} == {"ses"} and {t.candidate.kind for t in tasks[6:]} == {"baseline"}
    events: list[dict] = []
    res, failures = run_backtest(LocalExecutor(), (long, stores), tasks, 7, Progress(events.append), "backtest")
    assert failures == [] and events[-1] == {**events[-1], "stage": "backtest", "done": 10, "total": 10, "failed": 0}
    assert set(res.metrics) == {"lgbm", "ses", "seasonal_naive", "median_dow_promo"}
    assert res.forecasts["cutoff"].nunique() == 2
    # every model forecast every scored row of both windows exactly once (the shards do not overlap)
    assert res.forecasts.groupby("model").size().nunique() == 1
    assert not res.forecasts.duplicated(["model", "unique_id", "ds"]).any()
    table = res.table()
    assert list(table["rmspe"]) == sorted(table["rmspe"])
    iv = interval_quantiles(res.forecasts, "lgbm")
    assert (iv["lo"] <= 1).all() and (iv["hi"] >= 1).all()


def test_pyfunc_wrapper_and_evaluate_errors(make_sales, make_stores) -> None:
    long, hist, fut, model = _lgbm_setup(make_sales, make_stores)
    iv = pd.DataFrame({"lo": [0.9, 0.8, 0.9], "hi": [1.1, 1.2, 1.1]}, index=[1, 2, 3])
    wrapper = SalesForecaster(model, iv, hist["ds"].max(), [1, 2, 3])
    sales = make_sales(140, 3)
    actuals = sales[sales["date"] > hist["ds"].max()]
    out = wrapper.predict(None, actuals)
    assert list(out.columns) == list(OUTPUT_COLUMNS) == ["store", "date", "value", "lower", "upper"]  # the contract the API reads
    assert (out["lower"] <= out["value"]).all() and (out["value"] <= out["upper"]).all()
    assert (out.loc[actuals.sort_values(["store", "date"])["open"].to_numpy() == 0, "value"] == 0).all()
    result = score(wrapper, actuals)
    assert result["rows"] == len(actuals) and result["stores"] == 3 and result["horizon_days"] == 14
    assert 0 <= result["rmspe"] < 0.15
    with pytest.raises(EvaluationError, match=r"unknown to the model, e.g. \[9\]"):
        score(wrapper, actuals.assign(store=9))
    with pytest.raises(EvaluationError, match="overlapping the training data"):
        score(wrapper, sales[sales["date"] > hist["ds"].max() - pd.Timedelta(days=3)])
    with pytest.raises(ValueError, match="lacks column.*promo"):
        wrapper.predict(None, actuals.drop(columns=["promo"]))


def test_evaluate_names_missing_column(tmp_path, make_sales) -> None:
    from app.config import Settings
    from app.forecasting.evaluate import evaluate

    path = tmp_path / "actuals.csv"
    make_sales(7, 1).rename(columns={"store": "Store", "date": "Date"})[["Store", "Date"]].to_csv(path, index=False)
    with pytest.raises(EvaluationError, match="missing column.*Sales"):
        evaluate(Settings(), path)
    with pytest.raises(EvaluationError, match="does not exist"):
        evaluate(Settings(), tmp_path / "nope.csv")
