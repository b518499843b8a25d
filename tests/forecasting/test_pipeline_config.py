"""The training config object and the progress events of the executors (no services)."""

from __future__ import annotations

import pytest

from app.forecasting.executor import Call, LocalExecutor, Progress, parse_progress
from app.forecasting.pipeline import TrainConfig


def test_config_canonical_stores_and_candidates() -> None:
    cfg = TrainConfig(stores=(3, 1, 3), neural=False, lgbm_rounds=5, threads=3)
    assert cfg.stores == (1, 3)
    names = {c.name: c for c in cfg.candidates()}
    assert set(names) == {"lgbm", "ses"}
    assert names["lgbm"].cpus == 3 and names["lgbm"].params["num_boost_round"] == 5
    assert names["ses"].per_store and names["ses"].params["h"] >= cfg.horizon


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"horizon": 0}, "horizon must be >= 1"),
        ({"short_windows": -1}, "short_windows must be >= 0"),
        ({"register": True, "log_mlflow": False}, "register needs log_mlflow"),
        ({"per_store_model": "arima"}, "per_store_model must be"),
        ({"lgbm": False, "neural": False, "per_store": False}, "no candidate family"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_progress_events_and_failures_are_reported() -> None:
    events: list[dict] = []

    def boom() -> None:
        raise KeyError("no such column")

    out = LocalExecutor().map("backtest", [Call(lambda: 1, (), "ok"), Call(boom, (), "bad")], Progress(events.append))
    assert [o.ok for o in out] == [True, False] and out[1].error == "KeyError: 'no such column'"
    assert [(e["stage"], e["done"], e["failed"], e["total"]) for e in events] == [("backtest", 0, 0, 2), ("backtest", 1, 0, 2), ("backtest", 2, 1, 2)]
    log = (
        "noise\nSFMLOPS_PROGRESS {\"stage\": \"refit\", \"done\": 1, \"total\": 3}\n"
        "(pid=1) SFMLOPS_PROGRESS {\"stage\": \"forecast\", \"done\": 0, \"total\": 1}\nend"
    )
    assert parse_progress(log) == {"stage": "forecast", "done": 0, "total": 1}
    assert parse_progress("nothing here") is None
