"""Live forecast accuracy: the stored forecasts scored against the actuals as they land, and the drift flag.

**Scoring** (:func:`score`). Every stored forecast of ``{table_forecasts}`` whose day now has actuals in
``{table_sales}`` is scored per model version, day and horizon bucket
(:data:`app.forecasting.metrics.HORIZON_BUCKETS`, through :func:`~app.forecasting.metrics.rmspe_by_bucket`).
The cutoff of a forecast is the day before the first day of its batch-forecast run (``forecast_run``), so the
horizon of a row is ``date - cutoff``; rows past the last bucket (day 49 on) are not scored. The scores are
upserted into ``{table_accuracy}`` (re-scoring a day overwrites it) with the version's backtest RMSPE, which
the caller looks up (the API reads the registry's ``backtest_rmspe`` tag, set by the champion gate) when the
scores are written.

**Drift** (:func:`drift_status`). A scored day of a version is *bad* when its RMSPE (all its buckets, over
the rows with positive sales) is above ``backtest_rmspe x (1 + accuracy_drift_margin)``. A version is in
drift when its newest ``accuracy_drift_days`` scored days are all bad. The drift that matters for retraining
is that of the *current* version: the one of the newest forecast run of the model name (the version the API
serves); an older version's drift stays visible but raises nothing.

Who calls it: the daily DAG (``sales_ingest_daily``, task ``score_accuracy``) right after the ingest, through
``POST /v1/accuracy/score`` (app/api/routes/accuracy.py), so the same path works locally and on AWS, where
the DAG bundle does not ship the ``app`` package; ``GET /v1/accuracy`` reads the scores and the flag.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Any

from app.forecasting.horizons import labels, sql_case

if TYPE_CHECKING:  # pragma: no cover
    from psycopg2.extensions import connection

    from app.config import Settings

#: ``(model_name) -> {version: backtest RMSPE}``: where :func:`score` gets each version's yardstick.
BacktestLookup = Callable[[str], dict[str, float]]


def score(
    settings: Settings,
    conn: connection,
    model_name: str | None = None,
    since: date | None = None,
    *,
    backtest: BacktestLookup,
) -> dict[str, Any]:
    """Score the stored forecasts of ``model_name`` (default ``settings.model_name``) whose days have actuals,
    upsert the scores into ``{table_accuracy}`` and return the drift status.

    One SQL statement: the cutoff of each batch-forecast run is the day before its first day; each row's
    horizon is mapped onto its bucket (:func:`app.forecasting.horizons.sql_case`); RMSPE is
    ``sqrt(avg(((sales - value) / sales)^2))`` over the rows with positive sales, as
    :func:`app.forecasting.metrics.rmspe`.

    Args:
        settings: Table names, drift settings.
        conn: An open connection; the caller commits (the API's pooled transaction, or :func:`app.db.transaction`).
        model_name: Registered model name of the forecasts.
        since: Only forecast days on or after this day (default: every day with actuals).
        backtest: Where the versions' backtest RMSPEs come from (the API passes the MLflow registry's
            ``backtest_rmspe`` tags, :meth:`app.api.mlflow_rest.MlflowRest.backtest_rmspes`).

    Returns:
        ``{"model_name", "scored_rows", "written", "first_date", "last_date", "versions", "status"}``; ``status``
        is :func:`drift_status`'s answer after the write.
    """
    model_name = model_name or settings.model_name
    f, s, a = settings.table_forecasts, settings.table_sales, settings.table_accuracy
    with conn.cursor() as cur:
        cur.execute(f"SELECT DISTINCT model_version FROM {f} WHERE model_name = %s", (model_name,))
        stored = sorted(str(r[0]) for r in cur.fetchall())
    known = backtest(model_name) if stored else {}
    sql = (
        f"WITH runs AS (SELECT model_version, forecast_run, min(date) - 1 AS cutoff FROM {f}"  # names from settings
        f"  WHERE model_name = %(m)s GROUP BY model_version, forecast_run),"
        f" rows AS (SELECT f.model_version, f.date, {sql_case('(f.date - r.cutoff)')} AS bucket, s.sales::float8 AS sales, f.value"
        f"  FROM {f} f JOIN runs r ON r.model_version = f.model_version AND r.forecast_run = f.forecast_run"
        f"  JOIN {s} s ON s.store = f.store AND s.date = f.date"
        f"  WHERE f.model_name = %(m)s AND (%(since)s::date IS NULL OR f.date >= %(since)s::date)),"
        f" bt AS (SELECT * FROM unnest(%(versions)s::text[], %(bts)s::float8[]) AS bt(model_version, backtest_rmspe)),"
        f" ins AS (INSERT INTO {a} (model_name, model_version, date, bucket, rows, rows_scored, rmspe, backtest_rmspe)"
        f"  SELECT %(m)s, r.model_version, r.date, r.bucket, count(*), count(*) FILTER (WHERE r.sales > 0),"
        f"   sqrt(avg(((r.sales - r.value) / r.sales) ^ 2) FILTER (WHERE r.sales > 0)), max(bt.backtest_rmspe)"
        f"  FROM rows r LEFT JOIN bt ON bt.model_version = r.model_version WHERE r.bucket IS NOT NULL"
        f"  GROUP BY r.model_version, r.date, r.bucket"
        f"  ON CONFLICT (model_name, model_version, date, bucket) DO UPDATE SET rows = EXCLUDED.rows,"
        f"   rows_scored = EXCLUDED.rows_scored, rmspe = EXCLUDED.rmspe, backtest_rmspe = EXCLUDED.backtest_rmspe, scored_at = now()"
        f"  RETURNING model_version, date, rows)"
        f" SELECT (SELECT count(*) FROM rows), (SELECT count(*) FROM ins), min(date), max(date),"
        f"  coalesce(array_agg(DISTINCT model_version), '{{}}') FROM ins"
    )
    with conn.cursor() as cur:
        cur.execute(sql, {"m": model_name, "since": since, "versions": list(known), "bts": list(known.values())})
        scored_rows, written, first, last, versions = cur.fetchone()
    return {
        "model_name": model_name,
        "scored_rows": int(scored_rows),
        "written": int(written),
        "first_date": None if first is None else str(first),
        "last_date": None if last is None else str(last),
        "versions": sorted(str(v) for v in versions),
        "status": drift_status(settings, conn, model_name),
    }


def current_version(settings: Settings, conn: connection, model_name: str) -> str | None:
    """The version of the newest batch-forecast run of ``model_name`` (what the API serves), or None."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT model_version FROM {settings.table_forecasts} WHERE model_name = %s"
            " ORDER BY forecast_run DESC, created_at DESC LIMIT 1",
            (model_name,),
        )
        row = cur.fetchone()
    return None if row is None else str(row[0])


def judge(days: list[dict[str, Any]], backtest_rmspe: float | None, margin: float, window: int) -> dict[str, Any]:
    """The drift verdict of one version from its scored days (oldest first, ``{"date", "rmspe", ...}``).

    Returns:
        ``{"drift", "threshold", "bad_days", "window", "reason"}``: ``drift`` when the newest ``window`` days
        are all above ``backtest_rmspe x (1 + margin)``.
    """
    if backtest_rmspe is None:
        return {"drift": False, "threshold": None, "bad_days": 0, "window": window, "reason": "no backtest RMSPE known for this version"}
    threshold = backtest_rmspe * (1 + margin)
    newest = days[-window:]
    bad = [d for d in newest if d["rmspe"] > threshold]
    # the bad streak ending with the newest day
    streak = 0
    for d in reversed(days):
        if d["rmspe"] <= threshold:
            break
        streak += 1
    drift = len(newest) == window and len(bad) == window
    if len(days) < window:
        reason = f"{len(days)} scored day(s), fewer than the {window} needed"
    elif drift:
        reason = (f"live RMSPE above {threshold:.4f} (backtest {backtest_rmspe:.4f} x {1 + margin:.2f}) on the last {streak} scored"
                  f" day(s) in a row (drift needs {window}), newest {newest[-1]['date']}")
    else:
        reason = f"{len(bad)} of the last {window} scored day(s) above {threshold:.4f} (backtest {backtest_rmspe:.4f} x {1 + margin:.2f})"
    return {"drift": drift, "threshold": threshold, "bad_days": streak, "window": window, "reason": reason}


def drift_status(settings: Settings, conn: connection, model_name: str | None = None, days: int = 60) -> dict[str, Any]:
    """Each scored version's recent daily live RMSPE against its backtest, and the drift flag.

    Args:
        settings: Table names, ``accuracy_drift_margin``, ``accuracy_drift_days``.
        conn: An open connection.
        model_name: Registered model name (default ``settings.model_name``).
        days: How many of each version's newest scored days to return and pool per bucket (at least the
            drift window).

    Returns:
        ``{"model_name", "margin", "window", "current_version", "drift", "reason", "versions": [{"model_version",
        "backtest_rmspe", "drift", "threshold", "bad_days", "window", "reason", "days": [{"date", "rmspe",
        "rows_scored"}], "buckets": {bucket: rmspe over those days}}]}``; the top-level ``drift`` is the
        current version's.
    """
    model_name = model_name or settings.model_name
    a = settings.table_accuracy
    window = settings.accuracy_drift_days
    keep = max(days, window)
    with conn.cursor() as cur:
        # the newest `keep` scored days of each version, pooled over their buckets
        cur.execute(
            f"WITH d AS (SELECT model_version, date, sqrt(sum(rmspe * rmspe * rows_scored) / sum(rows_scored)) AS rmspe,"
            f"  sum(rows_scored)::int AS n, max(backtest_rmspe) AS bt,"
            f"  row_number() OVER (PARTITION BY model_version ORDER BY date DESC) AS k"
            f"  FROM {a} WHERE model_name = %s AND rows_scored > 0 AND rmspe IS NOT NULL GROUP BY model_version, date)"
            " SELECT model_version, date, rmspe, n, bt FROM d WHERE k <= %s ORDER BY model_version, date",
            (model_name, keep),
        )
        daily = cur.fetchall()
        cur.execute(
            f"WITH d AS (SELECT model_version, date, dense_rank() OVER (PARTITION BY model_version ORDER BY date DESC) AS k"
            f"  FROM {a} WHERE model_name = %s AND rows_scored > 0 AND rmspe IS NOT NULL GROUP BY model_version, date)"
            f" SELECT a.model_version, a.bucket, sqrt(sum(a.rmspe * a.rmspe * a.rows_scored) / sum(a.rows_scored))"
            f" FROM {a} a JOIN d ON d.model_version = a.model_version AND d.date = a.date AND d.k <= %s"
            " WHERE a.model_name = %s AND a.rows_scored > 0 AND a.rmspe IS NOT NULL GROUP BY a.model_version, a.bucket",
            (model_name, keep, model_name),
        )
        buckets: dict[str, dict[str, float]] = {}
        for version, bucket, value in cur.fetchall():
            buckets.setdefault(str(version), {})[bucket] = float(value)
    grouped: dict[str, list[tuple[Any, ...]]] = {}
    for row in daily:
        grouped.setdefault(str(row[0]), []).append(row)
    versions = []
    for version, rows in grouped.items():
        series = [{"date": str(r[1]), "rmspe": float(r[2]), "rows_scored": int(r[3])} for r in rows]
        bt = next((float(r[4]) for r in reversed(rows) if r[4] is not None), None)
        verdict = judge(series, bt, settings.accuracy_drift_margin, window)
        mine = buckets.get(version, {})
        versions.append({"model_version": version, "backtest_rmspe": bt, **verdict, "days": series,
                         "buckets": {b: mine[b] for b in labels() if b in mine}})
    current = current_version(settings, conn, model_name)
    mine_v = next((v for v in versions if v["model_version"] == current), None)
    if current is None:
        reason = f"no stored forecasts of {model_name!r}"
    elif mine_v is None:
        reason = f"no scored day of the current version {current} yet"
    else:
        reason = f"version {current}: {mine_v['reason']}"
    return {
        "model_name": model_name,
        "margin": settings.accuracy_drift_margin,
        "window": window,
        "current_version": current,
        "drift": bool(mine_v and mine_v["drift"]),
        "reason": reason,
        "versions": versions,
    }
