"""Data-quality checks run by the DAGs against the sales database (DB-API connection)."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _ident(name: str, setting: str) -> str:
    if not _IDENT.fullmatch(name):
        raise AirflowFailException(f"{setting}={name!r} is not a plain lower-case SQL identifier")
    return name


def ingest_report(conn: Any, table_sales: str, table_dead_letter: str, since: datetime) -> dict[str, Any]:
    """What arrived since ``since``: sales rows upserted per day and dead letters per reason."""
    sales = _ident(table_sales, "table_sales")
    dead = _ident(table_dead_letter, "table_dead_letter")
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT date, count(*) FROM {sales} WHERE ingested_at >= %s GROUP BY date ORDER BY date", (since,)
        )
        per_day = {d.isoformat(): int(n) for d, n in cur.fetchall()}
        cur.execute(
            f"SELECT reason, count(*) FROM {dead} WHERE rejected_at >= %s GROUP BY reason ORDER BY count(*) DESC",
            (since,),
        )
        reasons = {str(r): int(n) for r, n in cur.fetchall()}
    return {
        "since": since.isoformat(),
        "rows": sum(per_day.values()),
        "days": len(per_day),
        "rows_per_day": per_day,
        "dead_letters": sum(reasons.values()),
        "dead_letter_reasons": reasons,
    }


def check_ingest(report: dict[str, Any], max_dead_letters: int, min_rows: int, table_dead_letter: str) -> None:
    """Fail (no retries) when too many records were dead-lettered or too few rows arrived."""
    problems = []
    if report["dead_letters"] > max_dead_letters:
        top = ", ".join(f"{reason} ({n})" for reason, n in list(report["dead_letter_reasons"].items())[:5])
        problems.append(
            f"{report['dead_letters']} records were dead-lettered since {report['since']}, over the threshold of "
            f"{max_dead_letters} (SFMLOPS_DAG_MAX_DEAD_LETTERS / Variable sfmlops_max_dead_letters); "
            f"top reasons: {top}; see table {table_dead_letter}"
        )
    if report["rows"] < min_rows:
        problems.append(
            f"only {report['rows']} sales rows were upserted since {report['since']}, fewer than the minimum of "
            f"{min_rows} (SFMLOPS_DAG_MIN_ROWS / Variable sfmlops_min_rows)"
        )
    if problems:
        raise AirflowFailException("data quality check failed: " + "; ".join(problems))


def forecast_report(
    conn: Any,
    tables: dict[str, str],
    days: int,
    model_version: str | None = None,
    model_name: str | None = None,
    stores: list[int] | None = None,
) -> dict[str, Any]:
    """Coverage of a batch forecast: the expected stores with fewer than ``days`` future days.

    Args:
        conn: DB-API connection to the sales database.
        tables: ``table_sales`` and ``table_forecasts`` names.
        days: Forecast days every expected store must have.
        model_version: The version the batch forecast wrote (as it reported it); default: the version of
            the newest forecast row (of ``model_name`` when given).
        model_name: The registered model the forecast came from (as reported); default: the newest row's.
        stores: The expected stores (those trained and forecast); default: every store in the sales table.

    "Future" means after the last sales day of the expected stores (the day the batch forecast starts from).
    """
    sales = _ident(tables["table_sales"], "table_sales")
    fc = _ident(tables["table_forecasts"], "table_forecasts")
    with conn.cursor() as cur:
        if stores:
            cur.execute(f"SELECT max(date) FROM {sales} WHERE store = ANY(%s)", (list(stores),))
            last_day = cur.fetchone()[0]
            expected = sorted(int(s) for s in stores)
            scope = f"stores {expected[:20]}{'...' if len(expected) > 20 else ''}"
        else:
            cur.execute(f"SELECT max(date) FROM {sales}")
            last_day = cur.fetchone()[0]
            cur.execute(f"SELECT DISTINCT store FROM {sales} ORDER BY store")
            expected = [int(r[0]) for r in cur.fetchall()]
            scope = f"every store in {sales}"
        if last_day is None:
            raise AirflowFailException(f"table {sales} has no rows for {scope}: nothing to forecast from")
        if model_version is None or model_name is None:
            where, args = ("WHERE model_name = %s", (model_name,)) if model_name else ("", ())
            cur.execute(f"SELECT model_name, model_version FROM {fc} {where} ORDER BY created_at DESC LIMIT 1", args)
            row = cur.fetchone()
            if row is None:
                raise AirflowFailException(f"table {fc} has no forecasts{' of ' + model_name if model_name else ''} after the batch forecast ran")
            model_name, model_version = row
        cur.execute(
            f"""SELECT s.store, count(f.date) FROM unnest(%s::int[]) AS s(store)
                LEFT JOIN {fc} f ON f.store = s.store AND f.model_version = %s AND f.model_name = %s
                     AND f.date > %s AND f.date <= %s::date + %s
                GROUP BY s.store HAVING count(f.date) < %s ORDER BY s.store""",
            (expected, str(model_version), model_name, last_day, last_day, days, days),
        )
        short = {int(s): int(n) for s, n in cur.fetchall()}
    return {
        "model_name": model_name,
        "model_version": str(model_version),
        "last_sales_day": last_day.isoformat() if isinstance(last_day, date) else str(last_day),
        "scope": scope,
        "stores": len(expected),
        "days": days,
        "stores_short": len(short),
        "short_examples": dict(list(short.items())[:10]),
    }


def check_forecasts(report: dict[str, Any]) -> None:
    """Fail when any expected store lacks forecasts for the required days."""
    if report["stores_short"]:
        raise AirflowFailException(
            f"forecast check failed: {report['stores_short']} of {report['stores']} stores ({report['scope']}) have "
            f"fewer than {report['days']} forecast days after {report['last_sales_day']} for model "
            f"{report['model_name']} v{report['model_version']} (store: days found) {report['short_examples']}"
        )
