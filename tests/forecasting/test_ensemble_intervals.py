"""The ensemble candidate (weights fitted on backtest origins other than the scored one) and the interval
coverage / pinball computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.forecasting import ensemble as E
from app.forecasting.backtest import BacktestResult
from app.forecasting.intervals import coverage_and_pinball, evaluate_intervals
from app.forecasting.pipeline import ensemble_stage
from app.forecasting.plan import Candidate


def _rows(model: str, cutoff: str, y: np.ndarray, yhat: np.ndarray, store: int = 1) -> pd.DataFrame:
    c = pd.Timestamp(cutoff)
    return pd.DataFrame(
        {"unique_id": store, "ds": pd.date_range(c + pd.Timedelta(days=1), periods=len(y), freq="D"), "y": y, "open": 1,
         "yhat": yhat, "cutoff": c, "model": model}
    )


def test_fit_weights_finds_the_blend_that_cancels_errors() -> None:
    y = np.linspace(100, 200, 30)
    f = pd.concat([_rows("a", "2015-01-01", y, 0.8 * y), _rows("b", "2015-01-01", y, 1.2 * y)])
    w = E.fit_weights(f, ["a", "b"])
    assert w["a"] == pytest.approx(0.5, abs=1e-4) and w["b"] == pytest.approx(0.5, abs=1e-4)
    # An exact member takes all the weight; the other is left out (weight 0).
    f = pd.concat([_rows("a", "2015-01-01", y, y), _rows("b", "2015-01-01", y, 1.3 * y)])
    assert E.fit_weights(f, ["a", "b"]) == {"a": 1.0, "b": 0.0}


def test_fit_weights_errors() -> None:
    y = np.full(5, 100.0)
    f = _rows("a", "2015-01-01", y, y)
    with pytest.raises(ValueError, match="at least 2 members"):
        E.fit_weights(f, ["a"])
    with pytest.raises(ValueError, match=r"member\(s\) \['b'\]"):
        E.fit_weights(f, ["a", "b"])


def test_scored_window_never_fits_its_own_weights() -> None:
    y = np.linspace(100, 200, 20)
    fit_origin = pd.concat([_rows("a", "2015-01-01", y, y), _rows("b", "2015-01-01", y, 1.5 * y)])
    # On the scored origin b is exact and a is bad: weights fitted there would pick b.
    scored = pd.concat([_rows("a", "2015-02-01", y, 0.5 * y), _rows("b", "2015-02-01", y, y)])
    forecasts = pd.concat([fit_origin, scored], ignore_index=True)
    weights, rows = E.backtest_ensemble(forecasts, ["a", "b"], [pd.Timestamp("2015-02-01")])
    assert weights == {"a": 1.0, "b": 0.0}
    assert set(rows["cutoff"]) == {pd.Timestamp("2015-02-01")} and set(rows["model"]) == {"ensemble"}
    np.testing.assert_allclose(rows["yhat"].to_numpy(), 0.5 * y)
    # Changing the scored window's actuals and forecasts changes nothing in the weights.
    other = forecasts.copy()
    in_scored = other["cutoff"] == pd.Timestamp("2015-02-01")
    other.loc[in_scored, "y"] *= 3.0
    other.loc[in_scored, "yhat"] = 1.0
    assert E.backtest_ensemble(other, ["a", "b"], [pd.Timestamp("2015-02-01")])[0] == weights
    with pytest.raises(ValueError, match="origins other than the scored"):
        E.backtest_ensemble(scored, ["a", "b"], [pd.Timestamp("2015-02-01")])


def test_ensemble_stage_adds_a_candidate_scored_on_the_last_origin() -> None:
    y = np.linspace(100, 200, 20)
    parts = [
        _rows("lgbm", "2015-01-01", y, 0.9 * y), _rows("ses", "2015-01-01", y, 1.1 * y),
        _rows("lgbm", "2015-02-01", y, 0.9 * y), _rows("ses", "2015-02-01", y, 1.2 * y),
        _rows("median_dow_promo", "2015-02-01", y, 1.3 * y),
    ]
    bt_all = BacktestResult.from_parts(20, parts, {"lgbm": 10.0, "ses": 2.0})
    members = [Candidate("lgbm", "lgbm"), Candidate("ses", "stats", {"model": "ses"}, per_store=True)]
    bt, cand, all_rows, weights = ensemble_stage(bt_all, members)
    assert set(bt.forecasts["cutoff"]) == {pd.Timestamp("2015-02-01")}
    assert weights == pytest.approx({"lgbm": 0.5, "ses": 0.5}, abs=1e-4)
    assert cand.kind == "ensemble" and [m.name for m, _ in cand.params["members"]] == ["lgbm", "ses"]
    # Scored on the last origin with the first origin's weights: 0.5 * 0.9 + 0.5 * 1.2 = 1.05.
    assert bt.metrics["ensemble"]["rmspe"] == pytest.approx(0.05, abs=1e-4)
    assert bt.metrics["lgbm"]["rmspe"] == pytest.approx(0.1, abs=1e-9)
    assert bt.fit_seconds["ensemble"] == 12.0
    assert set(all_rows.loc[all_rows["model"] == "ensemble", "cutoff"]) == {pd.Timestamp("2015-01-01"), pd.Timestamp("2015-02-01")}
    # One origin only: no ensemble (nothing to fit the weights on but the scored window).
    bt1, cand1, _, _ = ensemble_stage(bt_all.only_origins([pd.Timestamp("2015-02-01")]), members)
    assert cand1 is None and "ensemble" not in bt1.metrics


def test_ensemble_forecaster_blends_its_fitted_members(make_sales, make_stores) -> None:
    from app.forecasting.features import to_long

    long = to_long(make_sales(42, 2))
    hist, fut = long[long["ds"] <= long["ds"].iloc[27]], long[long["ds"] > long["ds"].iloc[27]]
    a, b = Candidate("seasonal_naive", "baseline"), Candidate("median_dow_promo", "baseline")
    ens = Candidate("ensemble", "ensemble", {"members": [(a, 0.25), (b, 0.75)]}).build().fit(hist, make_stores(2))
    got = ens.predict(fut)["yhat"].to_numpy()
    want = 0.25 * a.build().fit(hist, None).predict(fut)["yhat"].to_numpy() + 0.75 * b.build().fit(hist, None).predict(fut)["yhat"].to_numpy()
    np.testing.assert_allclose(got, want)
    assert (got[fut["open"].to_numpy() == 0] == 0).all()


def test_coverage_and_pinball_by_hand() -> None:
    frame = pd.DataFrame(
        {"unique_id": 1, "ds": pd.date_range("2015-01-01", periods=5), "y": [100.0, 100.0, 100.0, 100.0, 0.0],
         "lo": [90.0, 90.0, 110.0, 50.0, 0.0], "hi": [110.0, 95.0, 120.0, 150.0, 0.0]}
    )
    out = coverage_and_pinball(frame, 0.8)
    assert out["rows"] == 4  # the zero-sales day is not scored
    assert out["coverage"] == pytest.approx(0.5)
    y, lo, hi = np.full(4, 100.0), np.array([90.0, 90.0, 110.0, 50.0]), np.array([110.0, 95.0, 120.0, 150.0])

    def pin(q: float, f: np.ndarray) -> float:
        d = y - f
        return float(np.mean(np.maximum(q * d, (q - 1) * d)))

    assert out["pinball"] == pytest.approx((pin(0.1, lo) + pin(0.9, hi)) / 2)
    assert out["pinball_rel"] == pytest.approx(out["pinball"] / 100.0)
    with pytest.raises(ValueError, match="lo > hi"):
        coverage_and_pinball(frame.assign(lo=200.0), 0.8)


def test_interval_coverage_is_measured_out_of_sample() -> None:
    """Each origin is scored with factors calibrated on the other: a calm origin's narrow band misses every
    actual of a volatile one, the volatile origin's wide band holds every calm actual -> coverage 0.5 exactly
    (calibrated in-sample it would be about the nominal level)."""
    n = 40
    calm = np.where(np.arange(n) % 2 == 0, 99.0, 101.0)
    wild = np.where(np.arange(n) % 2 == 0, 60.0, 140.0)
    f = pd.concat([_rows("m", "2015-01-01", calm, np.full(n, 100.0)), _rows("m", "2015-03-01", wild, np.full(n, 100.0))])
    out = evaluate_intervals(f, "m")
    assert out["coverage_80"] == pytest.approx(0.5) and out["coverage_95"] == pytest.approx(0.5)
    assert out["pinball_95"] > 0
    with pytest.raises(ValueError, match="at least 2 backtest origins"):
        evaluate_intervals(f[f["cutoff"] == pd.Timestamp("2015-01-01")], "m")


def test_training_stages_score_the_ensemble_and_measure_interval_coverage(real_data, tmp_path) -> None:
    """Through the pipeline (offline dataset of 3 real stores): every candidate and baseline is backtested on
    the scored origin and one calibration origin; the ensemble is a candidate scored on the last origin only,
    the champion is the best candidate of all (ensemble included), the intervals' coverage is measured."""
    from app.config import Settings
    from app.forecasting.executor import Progress
    from app.forecasting.pipeline import TrainConfig, run_stages, summarize

    sales, stores = real_data
    (tmp_path / "data").mkdir()
    sales[sales["store"].isin([1, 2, 3])].to_parquet(tmp_path / "data" / "sales.parquet")
    stores.to_parquet(tmp_path / "data" / "stores.parquet")
    settings = Settings().model_copy(update={"state_dir": tmp_path})
    config = TrainConfig(lgbm_rounds=30, neural=False, short_windows=0, source="dataset", log_mlflow=False, register=False, threads=1)
    result = run_stages(settings, config, progress=Progress(lambda event: None))
    bt = result.backtest
    end = result.data.long["ds"].max()
    assert set(bt.forecasts["cutoff"]) == {end - pd.Timedelta(days=48)}
    assert {"lgbm", "ses", "seasonal_naive", "median_dow_promo"} <= set(bt.metrics)
    cands = {m: v["rmspe"] for m, v in bt.metrics.items() if m not in ("seasonal_naive", "median_dow_promo")}
    assert result.best == min(cands, key=cands.get)
    if "ensemble" in bt.metrics:
        assert set(result.ensemble_weights) == {"lgbm", "ses"} and sum(result.ensemble_weights.values()) == pytest.approx(1.0)
    assert result.champion is not None and result.champion.name == result.best
    for level in (80, 95):
        assert 0.0 <= result.interval_metrics[f"coverage_{level}"] <= 1.0 and result.interval_metrics[f"pinball_{level}"] > 0
    summary = summarize(result)
    assert summary["intervals"] == result.interval_metrics and len(result.forecast) == 3 * 48
