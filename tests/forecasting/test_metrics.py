"""Metric correctness against hand-computed values."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from app.forecasting import metrics as M


def test_rmspe_ignores_zero_actuals_and_matches_hand_value() -> None:
    # errors on positive rows: 10/100 = 0.1 and 20/200 = 0.1 -> sqrt(mean(0.01, 0.01)) = 0.1
    assert M.rmspe([100, 200, 0], [110, 180, 50]) == pytest.approx(0.1)
    # (50-100)/50 = -1 ; (100-100)/100 = 0 -> sqrt(0.5)
    assert M.rmspe([50, 100], [100, 100]) == pytest.approx(math.sqrt(0.5))


def test_rmspe_no_positive_rows_is_nan_and_shapes_checked() -> None:
    assert math.isnan(M.rmspe([0, 0], [1, 2]))
    with pytest.raises(ValueError, match="shape"):
        M.rmspe([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="NaN"):
        M.rmspe([1, 2], [1, float("nan")])


def test_mae_counts_closed_days() -> None:
    assert M.mae([100, 200, 0], [110, 180, 50]) == pytest.approx((10 + 20 + 50) / 3)


def test_per_store_distribution() -> None:
    frame = pd.DataFrame(
        {"unique_id": [1, 1, 2, 2], "y": [100.0, 100.0, 100.0, 0.0], "yhat": [90.0, 110.0, 130.0, 0.0]}
    )
    per = M.per_store_rmspe(frame)
    assert per.loc[1] == pytest.approx(0.1)
    assert per.loc[2] == pytest.approx(0.3)
    out = M.evaluate_frame(frame)
    assert out["rows"] == 4 and out["rows_scored"] == 3 and out["stores"] == 2
    assert out["store_rmspe_max"] == pytest.approx(0.3)
    assert out["rmspe"] == pytest.approx(math.sqrt((0.01 + 0.01 + 0.09) / 3))
