"""Loader for the Rossmann files in Kaggle format (``train.csv[.gz]`` and ``store.csv``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from app.data.schema import SALES_DTYPES, STORE_COLUMNS, STORES_FLOAT_COLUMNS, STORES_INT_COLUMNS, TRAIN_COLUMNS
from app.data.validation import DataValidationError, validate_sales, validate_stores

TRAIN_NAMES = ("train.csv.gz", "train.csv")
STORE_NAMES = ("store.csv", "store.csv.gz")


def find_files(folder: Path) -> tuple[Path, Path]:
    """Locate ``train.csv[.gz]`` and ``store.csv`` in ``folder``, with a clear error if absent."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Rossmann folder {folder} does not exist")
    train = next((folder / n for n in TRAIN_NAMES if (folder / n).is_file()), None)
    store = next((folder / n for n in STORE_NAMES if (folder / n).is_file()), None)
    missing = [label for label, p in (("train.csv or train.csv.gz", train), ("store.csv", store)) if p is None]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {' and '.join(missing)}")
    return train, store  # type: ignore[return-value]


def _read_raw(path: Path, expected: dict[str, str]) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError) as exc:
        raise DataValidationError(str(path), [f"cannot be parsed as CSV: {exc}"]) from exc
    missing = [c for c in expected if c not in raw.columns]
    if missing:
        raise DataValidationError(str(path), [f"missing column(s): {', '.join(missing)} (has: {', '.join(raw.columns)})"])
    return raw[list(expected)].rename(columns=expected)


def _to_numbers(frame: pd.DataFrame, cols: list[str], source: str, problems: list[str], allow_na: bool) -> None:
    for col in cols:
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna() & (frame[col].notna() if allow_na else True)
        if bad.any():
            examples = frame.loc[bad, col].head(3).tolist()
            problems.append(f"column {col!r}: {int(bad.sum())} value(s) that are not numbers, e.g. {examples}")
        frame[col] = values


def load_train(path: str | Path) -> pd.DataFrame:
    """Read Kaggle ``train.csv`` (optionally gzipped) into the canonical, validated sales frame.

    Args:
        path: Path to ``train.csv`` or ``train.csv.gz``.

    Returns:
        Canonical sales frame sorted by (store, date).

    Raises:
        DataValidationError: naming every column/type/range/duplicate problem found.
    """
    source = str(path)
    frame = _read_raw(Path(path), TRAIN_COLUMNS)
    problems: list[str] = []
    numeric = [c for c in SALES_DTYPES if c != "state_holiday"]
    _to_numbers(frame, numeric, source, problems, allow_na=False)
    dates = pd.to_datetime(frame["date"], format="%Y-%m-%d", errors="coerce")
    bad_dates = dates.isna()
    if bad_dates.any():
        problems.append(f"column 'date': {int(bad_dates.sum())} value(s) not YYYY-MM-DD, e.g. {frame.loc[bad_dates, 'date'].head(3).tolist()}")
    frame["date"] = dates
    frame["state_holiday"] = frame["state_holiday"].fillna("").astype(str).str.strip()
    if problems:
        raise DataValidationError(source, problems)
    frame = frame.astype(SALES_DTYPES)
    validate_sales(frame, source)
    return frame.sort_values(["store", "date"], ignore_index=True)


def load_stores(path: str | Path) -> pd.DataFrame:
    """Read Kaggle ``store.csv`` into the canonical, validated stores frame."""
    source = str(path)
    frame = _read_raw(Path(path), STORE_COLUMNS)
    problems: list[str] = []
    _to_numbers(frame, list(STORES_INT_COLUMNS), source, problems, allow_na=False)
    _to_numbers(frame, list(STORES_FLOAT_COLUMNS), source, problems, allow_na=True)
    if problems:
        raise DataValidationError(source, problems)
    frame["store"] = frame["store"].astype("int32")
    frame["promo2"] = frame["promo2"].astype("int8")
    for col in ("store_type", "assortment"):
        frame[col] = frame[col].astype(str).str.strip()
    frame["promo_interval"] = frame["promo_interval"].where(frame["promo_interval"].notna(), None)
    validate_stores(frame, source)
    return frame.sort_values("store", ignore_index=True)
