"""The Kafka record format of the sales topic, shared by the producer and the streaming job.

One JSON object per store and day, key = the store id as ASCII digits::

    {"schema_version": 1, "store": 1, "date": "2015-06-13", "day_of_week": 6, "sales": 5263,
     "customers": 555, "open": 1, "promo": 1, "state_holiday": "0", "school_holiday": 0}

The producer and the streaming job apply the same rules (:func:`validate_row` here, the Spark
expressions in :mod:`app.ingest.job`), so a record the producer lets through is accepted downstream.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

SCHEMA_VERSION = 1

#: field name -> JSON type ("int" or "str"), in payload order.
FIELDS: dict[str, str] = {
    "schema_version": "int",
    "store": "int",
    "date": "str",
    "day_of_week": "int",
    "sales": "int",
    "customers": "int",
    "open": "int",
    "promo": "int",
    "state_holiday": "str",
    "school_holiday": "int",
}

#: the data columns stored in ``sales`` (every field except the version).
SALES_COLUMNS = [name for name in FIELDS if name != "schema_version"]

STATE_HOLIDAYS = ("0", "a", "b", "c")
FLAG_FIELDS = ("open", "promo", "school_holiday")
INT32_MAX = 2**31 - 1
#: Earliest day a record may carry.
MIN_DATE = dt.date(2000, 1, 1)


def validate_row(
    row: Mapping[str, Any],
    known_stores: set[int] | None = None,
    today: dt.date | None = None,
    max_future_days: int = 1,
    min_date: dt.date = MIN_DATE,
) -> str | None:
    """Check one record; returns the reason it is invalid, or ``None`` when it is valid.

    Args:
        row: The decoded JSON object.
        known_stores: Store ids that exist; ``None`` skips the check.
        today: Reference day for the future-date rule (default: today in UTC).
        max_future_days: Days after ``today`` that are still accepted.
        min_date: Earliest accepted day.
    """
    problem = field_problem(row, FIELDS, known_stores, today, max_future_days, min_date)
    return None if problem is None else problem[1]


def field_problem(
    row: Mapping[str, Any],
    fields: Mapping[str, str] = FIELDS,
    known_stores: set[int] | None = None,
    today: dt.date | None = None,
    max_future_days: int | None = 1,
    min_date: dt.date = MIN_DATE,
) -> tuple[str, str] | None:
    """The first problem of one record as ``(field, reason)``, or ``None`` when it is valid.

    The rules of :func:`validate_row` for the fields in ``fields`` (a subset of :data:`FIELDS` that holds
    ``store`` and ``date``); the planning data (:mod:`app.forecasting.planning`) checks its rows with them.

    Args:
        row: The record.
        fields: Field name -> JSON type of the fields the record must have.
        known_stores: Store ids that exist; ``None`` skips the check.
        today: Reference day for the future-date rule (default: today in UTC).
        max_future_days: Days after ``today`` that are still accepted; ``None``: no future-date rule.
        min_date: Earliest accepted day.
    """
    for name, kind in fields.items():
        if name not in row or row[name] is None:
            return name, f"missing field {name}"
        value = row[name]
        if kind == "int" and (isinstance(value, bool) or not isinstance(value, int) or abs(value) > INT32_MAX):
            return name, f"wrong type for {name}: expected integer"
        if kind == "str" and not isinstance(value, str):
            return name, f"wrong type for {name}: expected string"
    if "schema_version" in fields and row["schema_version"] != SCHEMA_VERSION:
        return "schema_version", f"unsupported schema_version {row['schema_version']} (expected {SCHEMA_VERSION})"
    if row["store"] <= 0:
        return "store", f"store {row['store']} out of range (must be > 0)"
    if known_stores is not None and row["store"] not in known_stores:
        return "store", f"unknown store {row['store']}"
    try:
        day = dt.date.fromisoformat(row["date"]) if len(row["date"]) == 10 else None
    except ValueError:
        day = None
    if day is None:
        return "date", f"invalid date {row['date']!r} (expected YYYY-MM-DD)"
    if max_future_days is not None:
        today = today or dt.datetime.now(dt.UTC).date()
        if day > today + dt.timedelta(days=max_future_days):
            return "date", f"date {day} is in the future"
    if day < min_date:
        return "date", f"date {day} is before {min_date}"
    if "day_of_week" in fields and row["day_of_week"] != day.isoweekday():
        return "day_of_week", f"day_of_week {row['day_of_week']} does not match date {day} ({day.isoweekday()})"
    for name in ("sales", "customers"):
        if name in fields and row[name] < 0:
            return name, f"negative {name} {row[name]}"
    for name in FLAG_FIELDS:
        if name in fields and row[name] not in (0, 1):
            return name, f"{name} must be 0 or 1, got {row[name]}"
    if "state_holiday" in fields and row["state_holiday"] not in STATE_HOLIDAYS:
        return "state_holiday", f"state_holiday must be one of {','.join(STATE_HOLIDAYS)}, got {row['state_holiday']!r}"
    return None
