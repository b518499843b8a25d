"""Live accuracy on real data: stored forecasts scored against later actuals; a stale version raises drift.

See live_accuracy_support for the two versions (a fresh and a deliberately stale median baseline on 30 real
stores, forecasts of 2015-04-26 .. 2015-06-12 stored in the test's own forecasts table).
"""

from __future__ import annotations

from datetime import date

import live_accuracy_support as support
import pytest

from app.forecasting import live_accuracy as L
from app.forecasting import metrics as M

pytestmark = pytest.mark.integration


@pytest.fixture()
def scenario(stack, real_data):
    settings = support.isolated(stack)
    try:
        yield settings, support.build(settings, real_data[0])
    finally:
        support.cleanup(settings)


def _score(settings, **kwargs):
    """``live_accuracy.score`` as the API route calls it: backtest RMSPEs from the registry's tags unless given."""
    from app.api.mlflow_rest import MlflowRest
    from app.db import transaction

    rest = MlflowRest(settings)
    try:
        with transaction(settings) as conn:
            return L.score(settings, conn, **{"backtest": rest.backtest_rmspes, **kwargs})
    finally:
        rest.close()


def test_stale_version_drifts_fresh_one_does_not_and_scores_match_the_metrics(scenario) -> None:
    settings, versions = scenario
    fresh, stale = versions["fresh"], versions["stale"]
    out = _score(settings)  # backtest RMSPEs read from the registry tags
    n_rows = len(fresh["frame"]) + len(stale["frame"])
    assert out["scored_rows"] == n_rows
    assert out["versions"] == sorted([fresh["version"], stale["version"]])
    assert (out["first_date"], out["last_date"]) == ("2015-04-26", "2015-06-12")
    status = out["status"]
    by_version = {v["model_version"]: v for v in status["versions"]}
    # the same numbers as the pandas metric on the same forecasts, per horizon bucket
    for case in (fresh, stale):
        v = by_version[case["version"]]
        assert v["backtest_rmspe"] == pytest.approx(case["backtest_rmspe"])
        expected = M.rmspe_by_bucket(case["frame"])
        assert list(v["buckets"]) == ["1-7", "8-14", "15-28", "29-48"]
        assert v["buckets"] == pytest.approx(expected, rel=1e-9)
    # the stale version is well above its backtest on its newest days; the fresh one is not
    s, f = by_version[stale["version"]], by_version[fresh["version"]]
    assert s["drift"] is True and s["bad_days"] >= 5, s["reason"]
    assert s["threshold"] == pytest.approx(stale["backtest_rmspe"] * 1.2)
    assert all(d["rmspe"] > s["threshold"] for d in s["days"][-5:])
    assert f["drift"] is False and f["bad_days"] < 5, f["reason"]
    # the stale version is the current one (newest forecast run): the flag is raised
    assert status["current_version"] == stale["version"]
    assert status["drift"] is True and f"version {stale['version']}: live RMSPE above" in status["reason"]


def test_scoring_is_idempotent_and_since_limits_the_days(scenario) -> None:
    from app.db import transaction

    settings, versions = scenario
    first = _score(settings)
    again = _score(settings)
    assert again["written"] == first["written"] > 0
    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*), count(DISTINCT date), count(DISTINCT bucket) FROM {settings.table_accuracy}")
        rows, days, buckets = cur.fetchone()
    assert (rows, days, buckets) == (first["written"], 48, 4)  # one bucket per (version, day): one run each
    assert rows == 2 * 48
    late = _score(settings, since=date(2015, 5, 30))
    assert late["first_date"] == "2015-05-30" and late["written"] == 2 * 14


def test_fresh_version_current_no_drift_and_unknown_backtest_never_flags(scenario) -> None:
    settings, versions = scenario
    fresh = versions["fresh"]
    from app.db import transaction

    # no backtest number for either version: nothing can be judged
    out = _score(settings, backtest=lambda name: {})
    assert out["status"]["drift"] is False
    assert all(v["backtest_rmspe"] is None and "no backtest RMSPE" in v["reason"] for v in out["status"]["versions"])
    # the fresh version forecasts again (newest run): it is the current one, and it does not drift
    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute(f"UPDATE {settings.table_forecasts} SET forecast_run = forecast_run + 100 WHERE model_version = %s", (fresh["version"],))
    status = _score(settings)["status"]
    assert status["current_version"] == fresh["version"]
    assert status["drift"] is False and status["reason"].startswith(f"version {fresh['version']}: ")


def test_model_without_forecasts_scores_nothing(stack) -> None:
    settings = support.isolated(stack)
    try:
        out = _score(settings, backtest=lambda name: pytest.fail("no versions to look up"))
        assert (out["scored_rows"], out["written"], out["versions"]) == (0, 0, [])
        assert out["status"]["drift"] is False
        assert out["status"]["reason"] == f"no stored forecasts of {settings.model_name!r}"
    finally:
        support.cleanup(settings)
