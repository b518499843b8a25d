"""``app.produce.ProduceConfig`` and the day selection of a run (no services: nothing is sent)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from app.config import Settings
from app.produce import ProduceConfig, _select_days


def _sales() -> pd.DataFrame:
    days = pd.date_range("2015-06-01", periods=4)
    return pd.DataFrame({"store": [1, 2] * 4, "date": days.repeat(2)})


def test_config_parses_dates_and_keeps_the_defaults() -> None:
    config = ProduceConfig("live", "2015-06-02", dt.date(2015, 6, 3), stores=[2])
    assert (config.start, config.end, config.stores) == (dt.date(2015, 6, 2), dt.date(2015, 6, 3), (2,))
    assert ProduceConfig() == ProduceConfig("replay", None, None, None, None, 10.0, None, True, None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "fast"}, "mode must be 'replay' or 'live', got 'fast'"),
        ({"start": "2015-06-03", "end": "2015-06-02"}, "start 2015-06-03 is after end 2015-06-02"),
        ({"start": "06/02/2015"}, "Invalid isoformat string"),
    ],
)
def test_bad_options_are_refused_naming_the_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProduceConfig(**kwargs)


def test_days_of_a_run_follow_range_stores_and_limit() -> None:
    settings = Settings(_env_file=None)
    days = _select_days(settings, ProduceConfig(start="2015-06-02", stores=[2], max_days=2), _sales())
    assert [d for d, _ in days] == [dt.date(2015, 6, 2), dt.date(2015, 6, 3)]
    assert all(group["store"].tolist() == [2] for _, group in days)
    with pytest.raises(ValueError, match="no rows between 2015-07-01 and None"):
        _select_days(settings, ProduceConfig(start="2015-07-01"), _sales())
