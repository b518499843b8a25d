"""Horizon buckets of the readable evaluation (standard library only: the API's Lambda package ships it).

A forecast day's horizon is the number of days after the forecast's cutoff (the last day of known data):
1 is the first forecast day. Used by :func:`app.forecasting.metrics.rmspe_by_bucket` (pandas) and by the
live accuracy's SQL (:mod:`app.forecasting.live_accuracy`).
"""

from __future__ import annotations

#: ``(first, last)`` horizon of each bucket, inclusive: 1-7, 8-14, 15-28 and 29-48 days after the cutoff.
HORIZON_BUCKETS: tuple[tuple[int, int], ...] = ((1, 7), (8, 14), (15, 28), (29, 48))


def bucket_label(lo: int, hi: int) -> str:
    """The name of a bucket, e.g. ``"1-7"``."""
    return f"{lo}-{hi}"


def labels() -> list[str]:
    """Every bucket's name, in horizon order."""
    return [bucket_label(lo, hi) for lo, hi in HORIZON_BUCKETS]


def sql_case(horizon: str) -> str:
    """A SQL ``CASE`` expression mapping the integer expression ``horizon`` onto its bucket's name (NULL past the
    last bucket or before day 1)."""
    whens = " ".join(f"WHEN {horizon} BETWEEN {lo} AND {hi} THEN '{bucket_label(lo, hi)}'" for lo, hi in HORIZON_BUCKETS)
    return f"(CASE {whens} END)"
