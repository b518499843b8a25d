"""Validation of the canonical frames: every problem is collected and named, not just the first."""

from __future__ import annotations

import pandas as pd

from app.data.schema import ASSORTMENTS, SALES_COLUMNS, STATE_HOLIDAYS, STORE_TYPES, STORES_COLUMNS


class DataValidationError(ValueError):
    """Raised with every problem found in a data file, one per line."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))


def _examples(frame: pd.DataFrame, mask: pd.Series, cols: list[str], n: int = 3) -> str:
    rows = frame.loc[mask, cols].head(n).to_dict("records")
    return ", ".join(str(r) for r in rows)


def _check_binary(frame: pd.DataFrame, col: str, problems: list[str]) -> None:
    bad = ~frame[col].isin([0, 1])
    if bad.any():
        problems.append(f"column {col!r}: {int(bad.sum())} value(s) not 0/1, e.g. {_examples(frame, bad, ['store', col])}")


def validate_sales(frame: pd.DataFrame, source: str = "sales") -> pd.DataFrame:
    """Check a canonical sales frame; raise :class:`DataValidationError` naming every problem.

    Args:
        frame: Canonical sales frame (see :mod:`app.data.schema`).
        source: Name used in error messages (usually the file path).

    Returns:
        The same frame, for chaining.
    """
    problems: list[str] = []
    missing = [c for c in SALES_COLUMNS if c not in frame.columns]
    if missing:
        raise DataValidationError(source, [f"missing column(s): {', '.join(missing)}"])
    if frame.empty:
        raise DataValidationError(source, ["no rows"])
    for col in ("sales", "customers"):
        neg = frame[col] < 0
        if neg.any():
            problems.append(f"column {col!r}: {int(neg.sum())} negative value(s), e.g. {_examples(frame, neg, ['store', 'date', col])}")
    for col in ("open", "promo", "school_holiday"):
        _check_binary(frame, col, problems)
    bad_dow = ~frame["day_of_week"].between(1, 7)
    if bad_dow.any():
        problems.append(f"column 'day_of_week': {int(bad_dow.sum())} value(s) outside 1..7")
    else:
        wrong = frame["day_of_week"] != (frame["date"].dt.dayofweek + 1)
        if wrong.any():
            problems.append(
                f"column 'day_of_week': {int(wrong.sum())} row(s) disagree with the date, e.g. "
                f"{_examples(frame, wrong, ['store', 'date', 'day_of_week'])}"
            )
    bad_sh = ~frame["state_holiday"].isin(STATE_HOLIDAYS)
    if bad_sh.any():
        problems.append(
            f"column 'state_holiday': {int(bad_sh.sum())} value(s) not in {STATE_HOLIDAYS}, e.g. "
            f"{sorted(frame.loc[bad_sh, 'state_holiday'].astype(str).unique())[:5]}"
        )
    closed_with_sales = (frame["open"] == 0) & (frame["sales"] > 0)
    if closed_with_sales.any():
        problems.append(
            f"{int(closed_with_sales.sum())} row(s) closed (open=0) but with sales > 0, e.g. "
            f"{_examples(frame, closed_with_sales, ['store', 'date', 'sales'])}"
        )
    if (frame["store"] <= 0).any():
        problems.append(f"column 'store': {int((frame['store'] <= 0).sum())} non-positive store id(s)")
    dup = frame.duplicated(["store", "date"], keep=False)
    if dup.any():
        problems.append(
            f"{int(frame.duplicated(['store', 'date']).sum())} duplicate (store, date) key(s), e.g. "
            f"{_examples(frame, dup, ['store', 'date'])}"
        )
    if problems:
        raise DataValidationError(source, problems)
    return frame


def validate_stores(frame: pd.DataFrame, source: str = "stores") -> pd.DataFrame:
    """Check a canonical stores frame; raise :class:`DataValidationError` naming every problem."""
    problems: list[str] = []
    missing = [c for c in STORES_COLUMNS if c not in frame.columns]
    if missing:
        raise DataValidationError(source, [f"missing column(s): {', '.join(missing)}"])
    if frame.empty:
        raise DataValidationError(source, ["no rows"])
    dup = frame["store"].duplicated()
    if dup.any():
        problems.append(f"{int(dup.sum())} duplicate store id(s), e.g. {frame.loc[dup, 'store'].head(3).tolist()}")
    for col, allowed in (("store_type", STORE_TYPES), ("assortment", ASSORTMENTS)):
        bad = ~frame[col].isin(allowed)
        if bad.any():
            problems.append(f"column {col!r}: {int(bad.sum())} value(s) not in {allowed}")
    neg = frame["competition_distance"] < 0
    if neg.any():
        problems.append(f"column 'competition_distance': {int(neg.sum())} negative value(s)")
    _check_binary(frame, "promo2", problems)
    if problems:
        raise DataValidationError(source, problems)
    return frame


def validate_pair(sales: pd.DataFrame, stores: pd.DataFrame, source: str = "dataset") -> None:
    """Cross-file checks: every store in the sales has metadata."""
    unknown = sorted(set(sales["store"].unique()) - set(stores["store"].unique()))
    if unknown:
        raise DataValidationError(source, [f"{len(unknown)} store id(s) in sales have no store metadata, e.g. {unknown[:5]}"])
