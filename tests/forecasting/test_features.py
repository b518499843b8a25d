"""Feature preparation on the chain (the real shared data, else its synthetic stand-in: ``conftest.chain``) and on
hand-made frames: gaps, closed days, no leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.forecasting import features as F
from app.forecasting.batch import project_future_inputs


def test_long_format_on_the_chain(chain, chain_long: pd.DataFrame) -> None:  # conftest.Chain
    real_long = chain_long
    assert len(real_long) == chain.rows
    assert real_long["unique_id"].nunique() == chain.n_stores
    assert list(real_long.columns[:3]) == ["unique_id", "ds", "y"]
    assert set(real_long["state_holiday"].unique()) <= {0, 1, 2, 3}
    assert not real_long.duplicated(["unique_id", "ds"]).any()
    # Closed days have zero sales in the source.
    assert (real_long.loc[real_long["open"] == 0, "y"] == 0).all()


def test_fill_gaps_marks_inserted_days(chain, chain_long: pd.DataFrame) -> None:
    real_long = chain_long
    dense = F.fill_gaps(real_long)
    days = (real_long["ds"].max() - real_long["ds"].min()).days + 1
    assert len(dense) == chain.n_stores * days
    assert int(dense["available"].sum()) == chain.rows
    inserted = dense[dense["available"] == 0]
    # Kaggle: 180 stores lack 2014-07-01..2014-12-31 (184 days), one store lacks one day (synthetic: 2 and 1).
    assert inserted.groupby("unique_id").size().value_counts().to_dict() == chain.gaps
    gap = inserted[inserted["unique_id"] == inserted["unique_id"].iloc[0]]
    assert gap["ds"].min() >= pd.Timestamp("2014-07-01") or len(gap) == 1
    assert inserted["y"].isna().all()
    assert (inserted[list(F.FUTURE_EXOG)] == 0).all().all()
    # Rows that existed are unchanged.
    merged = dense[dense["available"] == 1].reset_index(drop=True)
    pd.testing.assert_series_equal(merged["y"], real_long["y"].reset_index(drop=True), check_names=False)


def test_fill_gaps_rejects_duplicates(make_sales) -> None:
    long = F.to_long(make_sales(7, 1))
    with pytest.raises(ValueError, match="duplicate"):
        F.fill_gaps(pd.concat([long, long.head(1)]))


def test_event_distances_by_hand(make_sales) -> None:
    sales = make_sales(21, 1)  # starts on a Monday; promo Mon-Fri of week 1 and week 3
    ev = F.event_features(F.fill_gaps(F.to_long(sales)))
    assert ev["promo_day"].tolist()[:7] == [1, 2, 3, 4, 5, 0, 0]
    assert ev["promo_since"].tolist()[4:8] == [0, 1, 2, 3]
    # Next promo starts on day 14 (Monday of week 3): day 7 is 7 days before it.
    assert ev["promo_until"].iloc[7] == 7
    # Sundays (day 6, 13) are closed: day 5 is one day before a closure, day 7 one day after.
    assert ev["closed_until"].iloc[5] == 1 and ev["closed_since"].iloc[7] == 1
    assert ev["open_next"].iloc[5] == 0 and ev["open_prev"].iloc[7] == 0
    assert ev["dow"].tolist()[:7] == [1, 2, 3, 4, 5, 6, 7]


def test_store_stats_and_features_do_not_leak_future_targets(chain_long: pd.DataFrame) -> None:
    real_long = chain_long
    cutoff = real_long["ds"].max() - pd.Timedelta(days=48)
    hist = real_long[real_long["ds"] <= cutoff]
    stats = F.fit_store_stats(hist)
    assert stats.cutoff == cutoff
    # Scrambling every target after the cutoff changes nothing the model sees.
    scrambled = real_long.copy()
    future = scrambled["ds"] > cutoff
    scrambled.loc[future, "y"] = np.random.default_rng(0).integers(0, 50_000, int(future.sum()))
    stats2 = F.fit_store_stats(scrambled[scrambled["ds"] <= cutoff])
    pd.testing.assert_frame_equal(stats.store, stats2.store)
    sub = real_long[real_long["unique_id"].isin([1, 2, 3])]
    sub2 = scrambled[scrambled["unique_id"].isin([1, 2, 3])]
    ev1 = F.event_features(F.fill_gaps(sub))
    ev2 = F.event_features(F.fill_gaps(sub2))
    pd.testing.assert_frame_equal(ev1, ev2)


def test_static_and_dated_store_features(chain) -> None:
    stores = chain.stores
    static = F.store_static_features(stores)
    assert len(static) == chain.n_stores and static.index.is_unique
    assert set(static["store_type"].unique()) == {0, 1, 2, 3}
    frame = pd.DataFrame({"unique_id": [2, 2, 1], "ds": pd.to_datetime(["2015-04-01", "2015-05-01", "2015-04-01"])})
    dated = F.dated_store_features(frame, stores)
    # Store 2: Promo2 since week 13 of 2010, interval Jan,Apr,Jul,Oct; competition since 11/2007.
    assert dated["promo2_active"].tolist() == [1, 1, 0]
    assert dated["promo2_month"].tolist() == [1, 0, 0]
    assert dated["competition_months"].iloc[0] == (2015 - 2007) * 12 + (4 - 11)


def test_apply_closed_forces_zero() -> None:
    frame = pd.DataFrame({"open": [1, 0, 1], "yhat": [10.0, 20.0, -5.0]})
    assert F.apply_closed(frame)["yhat"].tolist() == [10.0, 0.0, 0.0]


def test_state_holiday_encoding_error_names_value() -> None:
    with pytest.raises(ValueError, match="state_holiday has value"):
        F.encode_state_holiday(pd.Series(["0", "x"]))


def test_projected_inputs_follow_promo_cycle_and_closures(make_sales) -> None:
    sales = make_sales(28, 2)
    last = sales["date"].max()
    fut = project_future_inputs(sales, 20)
    assert fut["date"].min() == last + pd.Timedelta(days=1)
    assert len(fut) == 2 * 20
    hist1 = sales[sales["store"] == 1].set_index("date")
    for row in fut[fut["store"] == 1].itertuples():
        back = row.date - pd.Timedelta(days=14)
        while back > last:
            back -= pd.Timedelta(days=14)
        assert row.promo == hist1.loc[back, "promo"]
        assert row.open == int(row.date.dayofweek != 6)


def test_last_days_of_a_frame_see_the_projected_week(make_sales) -> None:
    """The forward-looking features of a frame's last days use the projected next days (weekly closure, promo
    cycle), so a 7-day forecast window gets the features the same days have inside a longer window."""
    sales = make_sales(34, 1)  # Monday..Saturday of week 5; closed on Sundays, promo Mon-Fri every other week
    long_ev = F.event_features(F.fill_gaps(F.to_long(sales)))
    short = sales[sales["date"] <= sales["date"].iloc[19]]  # ends on a Saturday, the Sunday after is closed
    short_ev = F.event_features(F.fill_gaps(F.to_long(short)))
    assert short_ev["closed_until"].iloc[-1] == 1 and short_ev["closed_in_week"].iloc[-1] == 1
    assert short_ev["promo_until"].iloc[-1] == 9  # the next promo week starts on day 28
    pd.testing.assert_frame_equal(short_ev, long_ev.iloc[:20])
    # Padding is for the features only: no day is added to the frame.
    assert len(short_ev) == 20 and short_ev.index.equals(F.fill_gaps(F.to_long(short)).index)


def test_pad_panel_projects_openings_and_promo_cycle(make_sales) -> None:
    sales = make_sales(28, 2)
    dense = F.fill_gaps(F.to_long(sales))
    padded = F.pad_panel(dense, 15)
    assert len(padded) == 2 * (28 + 15)
    extra = padded[padded["ds"] > dense["ds"].max()]
    truth = F.fill_gaps(F.to_long(make_sales(28 + 15, 2)))
    truth = truth[truth["ds"] > dense["ds"].max()]
    for col in ("unique_id", "ds", "open", "promo"):
        assert extra[col].tolist() == truth[col].tolist(), col
    assert (extra["state_holiday"] == 0).all() and (extra["available"] == 1).all()


def test_lgbm_forecast_at_every_horizon_uses_nothing_after_the_cutoff(chain, chain_long: pd.DataFrame) -> None:
    """Perturbing every sale after the cutoff (the forecast window included) changes no forecast of a 7-day
    and of a 48-day backtest window."""
    from app.forecasting.plan import Candidate, Task, run_task

    stores = chain.stores
    ids = [1, 2, 3, 4]
    long = chain_long[chain_long["unique_id"].isin(ids)]
    st = stores[stores["store"].isin(ids)]
    cutoff = long["ds"].max() - pd.Timedelta(days=48)
    scrambled = long.copy()
    after = scrambled["ds"] > cutoff
    scrambled.loc[after, "y"] = np.random.default_rng(1).integers(1, 50_000, int(after.sum())).astype("float64")
    cand = Candidate("lgbm", "lgbm", {"num_boost_round": 20, "num_threads": 1})
    for h in (7, 48):
        a = run_task(long, st, Task("backtest", cand, h, cutoff))["forecasts"]
        b = run_task(scrambled, st, Task("backtest", cand, h, cutoff))["forecasts"]
        assert len(a) == len(b) > 0
        np.testing.assert_array_equal(a["yhat"].to_numpy(), b["yhat"].to_numpy())
        assert not np.array_equal(a["y"].to_numpy(), b["y"].to_numpy())


def test_nhits_level_and_forecast_use_nothing_after_the_cutoff(chain, chain_long: pd.DataFrame) -> None:
    """The neural candidate's target is log sales relative to a level fitted on the history only: perturbing every
    sale after the cutoff changes neither the level nor any forecast of the 48-day window."""
    from app.forecasting.models import NeuralForecaster
    from app.forecasting.plan import Candidate, Task, run_task

    ids = [1, 2, 3, 4]
    long = chain_long[chain_long["unique_id"].isin(ids)]
    st = chain.stores[chain.stores["store"].isin(ids)]
    cutoff = long["ds"].max() - pd.Timedelta(days=48)
    scrambled = long.copy()
    after = scrambled["ds"] > cutoff
    scrambled.loc[after, "y"] = np.random.default_rng(2).integers(1, 50_000, int(after.sum())).astype("float64")
    hist = long[long["ds"] <= cutoff]
    stats = F.fit_store_stats(hist, events=True)
    frame = NeuralForecaster._frame(hist, stats)
    target = frame["available_mask"] == 1
    # On open days the target plus the level is log1p(sales); the other days sit at the level (0).
    dense = F.fill_gaps(hist)
    np.testing.assert_allclose((frame["y"] + F.store_level(dense, stats))[target], np.log1p(dense["y"][target]))
    assert (frame.loc[~target, "y"] == 0).all() and abs(frame.loc[target, "y"].mean()) < 0.05
    cand = Candidate("nhits", "nhits", {"h": 48, "max_steps": 3, "num_threads": 1})
    a = run_task(long, st, Task("backtest", cand, 48, cutoff))["forecasts"]
    b = run_task(scrambled, st, Task("backtest", cand, 48, cutoff))["forecasts"]
    assert len(a) == len(b) == 4 * 48
    np.testing.assert_allclose(a["yhat"].to_numpy(), b["yhat"].to_numpy(), rtol=1e-6)
    assert (a.loc[a["open"] == 0, "yhat"] == 0).all() and (a.loc[a["open"] == 1, "yhat"] > 0).all()


def test_store_holiday_effect_is_measured_against_the_usual_level() -> None:
    """A store that sells 3x on the state holidays it opens gets an effect near log(3); a store that never opened
    on one gets the chain's; rows that are no holiday get none."""

    days = pd.date_range("2015-01-05", periods=140, freq="D")
    frame = pd.DataFrame([(u, d) for u in (1, 2) for d in days], columns=["unique_id", "ds"])
    frame["open"], frame["promo"], frame["school_holiday"] = 1, 0, 0
    holiday = frame["ds"].isin(days[[30, 72]])  # two Wednesdays
    frame["state_holiday"] = np.where(holiday & (frame["unique_id"] == 1), 1, 0)
    frame["y"] = np.where(frame["state_holiday"] == 1, 3000.0, 1000.0)
    stats = F.fit_store_stats(frame, events=True)
    assert list(stats.store_holiday.index) == [1]
    assert np.log(3) * 0.85 < stats.store_holiday[1] < np.log(3) and stats.holiday_all == pytest.approx(stats.store_holiday[1])
    rows = frame[frame["ds"] == days[30]].assign(state_holiday=1)
    level = F.store_level(rows, stats)
    plain = F.store_level(rows.assign(state_holiday=0), stats)
    np.testing.assert_allclose(level - plain, [stats.store_holiday[1], stats.holiday_all])
    assert F.fit_store_stats(frame.assign(state_holiday=0), events=True).store_holiday.empty
    lgbm_stats = F.fit_store_stats(frame)  # what LightGBM fits: no pass for the events
    assert lgbm_stats.store_holiday.empty and lgbm_stats.season.empty


def test_season_is_the_chains_week_of_year_effect() -> None:
    """Sales 20 % lower in ISO weeks 5-8 of both years: the season of week 6 sits log(0.8) below week 20's, the
    level of a week-6 day is that much lower, and weeks the history never saw have no effect."""

    days = pd.date_range("2013-01-07", "2014-10-31", freq="D")
    frame = pd.DataFrame([(u, d) for u in (1, 2) for d in days], columns=["unique_id", "ds"])
    frame["open"], frame["promo"], frame["state_holiday"], frame["school_holiday"] = 1, 0, 0, 0
    week = frame["ds"].dt.isocalendar().week.to_numpy()
    frame["y"] = np.where((week >= 5) & (week <= 8), 800.0, 1000.0)
    stats = F.fit_store_stats(frame, events=True)
    assert stats.season[6] - stats.season[20] == pytest.approx(np.log1p(800) - np.log1p(1000), abs=1e-9)
    rows = frame[frame["ds"].isin([pd.Timestamp("2014-02-05"), pd.Timestamp("2014-05-14")])]  # weeks 6 and 20
    level = F.store_level(rows, stats)
    week_of = rows["ds"].dt.isocalendar().week.to_numpy()
    np.testing.assert_allclose(level[week_of == 6] - level[week_of == 20], stats.season[6] - stats.season[20], rtol=1e-9)
    assert 53 not in stats.season.index  # neither 2013 nor 2014 has an ISO week 53
    late = rows.assign(ds=pd.Timestamp("2015-12-30"))  # ISO week 53 of 2015
    np.testing.assert_allclose(F.store_level(late, stats) - F.store_level(rows.assign(ds=pd.Timestamp("2014-05-14")), stats)
                               + stats.season[20], 0.0, atol=1e-9)
