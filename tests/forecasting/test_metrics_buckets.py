"""``rmspe_by_bucket``: RMSPE per horizon bucket (1-7, 8-14, 15-28, 29-48 days after the cutoff)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from app.forecasting import metrics as M


def test_buckets_from_horizon_column_hand_values() -> None:
    frame = pd.DataFrame(
        {
            "horizon": [1, 7, 8, 14, 15, 28, 29, 48, 49],
            "y": [100.0, 100.0, 200.0, 0.0, 100.0, 100.0, 50.0, 50.0, 100.0],
            "yhat": [110.0, 90.0, 220.0, 10.0, 150.0, 50.0, 100.0, 50.0, 0.0],
        }
    )
    out = M.rmspe_by_bucket(frame)
    assert list(out) == ["1-7", "8-14", "15-28", "29-48"]
    assert out["1-7"] == pytest.approx(0.1)
    assert out["8-14"] == pytest.approx(0.1)  # the zero-sales day of the bucket is not scored
    assert out["15-28"] == pytest.approx(0.5)
    assert out["29-48"] == pytest.approx(math.sqrt(0.5))  # (50-100)/50 = -1 and 0; day 49 is in no bucket


def test_buckets_from_date_and_cutoff_only_present_buckets() -> None:
    cutoff = pd.Timestamp("2015-05-01")
    frame = pd.DataFrame(
        {
            "unique_id": [1, 1, 2],
            "ds": pd.to_datetime(["2015-05-02", "2015-05-09", "2015-05-09"]),
            "cutoff": [cutoff] * 3,
            "y": [100.0, 100.0, 0.0],
            "yhat": [80.0, 130.0, 5.0],
        }
    )
    out = M.rmspe_by_bucket(frame)
    assert out == {"1-7": pytest.approx(0.2), "8-14": pytest.approx(0.3)}
    zero = M.rmspe_by_bucket(frame[frame["unique_id"] == 2])
    assert list(zero) == ["8-14"] and math.isnan(zero["8-14"])


def test_buckets_reject_rows_on_or_before_cutoff_and_missing_columns() -> None:
    with pytest.raises(ValueError, match=r"1 row\(s\) are dated on or before their cutoff"):
        M.rmspe_by_bucket(pd.DataFrame({"horizon": [0, 3], "y": [1.0, 1.0], "yhat": [1.0, 1.0]}))
    with pytest.raises(ValueError, match="'horizon' column or 'ds' and 'cutoff'"):
        M.rmspe_by_bucket(pd.DataFrame({"y": [1.0], "yhat": [1.0]}))
