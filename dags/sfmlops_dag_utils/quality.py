"""Data-quality checks run by the DAGs against the sales database (DB-API connection)."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from airflow.exceptions import AirflowFailException

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


def forecast_report(conn: Any, tables: dict[str, str], days: int, model_version: str | None = None) -> dict[str, Any]:
    """Coverage of the newest batch forecast: stores with fewer than ``days`` future days.

    "Future" means after the last day in the sales table. The model version checked is ``model_version``
    or, if not given, the version of the newest forecast row.
    """
    sales = _ident(tables["table_sales"], "table_sales")
    fc = _ident(tables["table_forecasts"], "table_forecasts")
    with conn.cursor() as cur:
        cur.execute(f"SELECT max(date), count(DISTINCT store) FROM {sales}")
        last_day, n_stores = cur.fetchone()
        if last_day is None:
            raise AirflowFailException(f"table {sales} is empty: nothing to forecast from")
        if model_version is None:
            cur.execute(f"SELECT model_name, model_version FROM {fc} ORDER BY created_at DESC LIMIT 1")
            row = cur.fetchone()
            if row is None:
                raise AirflowFailException(f"table {fc} has no forecasts after the batch forecast ran")
            model_name, model_version = row
        else:
            cur.execute(f"SELECT model_name FROM {fc} WHERE model_version = %s LIMIT 1", (model_version,))
            row = cur.fetchone()
            model_name = row[0] if row else None
        cur.execute(
            f"""SELECT s.store, count(f.date) FROM (SELECT DISTINCT store FROM {sales}) s
                LEFT JOIN {fc} f ON f.store = s.store AND f.model_version = %s AND f.model_name = %s
                     AND f.date > %s AND f.date <= %s::date + %s
                GROUP BY s.store HAVING count(f.date) < %s ORDER BY s.store""",
            (model_version, model_name, last_day, last_day, days, days),
        )
        short = {int(s): int(n) for s, n in cur.fetchall()}
    return {
        "model_name": model_name,
        "model_version": model_version,
        "last_sales_day": last_day.isoformat() if isinstance(last_day, date) else str(last_day),
        "stores": int(n_stores),
        "days": days,
        "stores_short": len(short),
        "short_examples": dict(list(short.items())[:10]),
    }


def check_forecasts(report: dict[str, Any]) -> None:
    """Fail when any store lacks forecasts for the required days."""
    if report["stores_short"]:
        raise AirflowFailException(
            f"forecast check failed: {report['stores_short']} of {report['stores']} stores have fewer than "
            f"{report['days']} forecast days after {report['last_sales_day']} for model "
            f"{report['model_name']} v{report['model_version']} (store: days found) {report['short_examples']}"
        )
