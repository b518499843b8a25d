"""Evaluation people can read: RMSPE by horizon bucket, by store type and of the worst stores (issue 17.6)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from app.forecasting import metrics as M
from app.forecasting.evaluate import EvaluationError, breakdown, breakdown_metrics, score


def test_breakdown_hand_values() -> None:
    frame = pd.DataFrame(
        {
            "unique_id": [1, 1, 2, 2, 3, 3],
            "horizon": [1, 10, 1, 30, 20, 40],
            "y": [100.0, 100.0, 100.0, 100.0, 100.0, 0.0],
            "yhat": [90.0, 110.0, 130.0, 70.0, 150.0, 5.0],
        }
    )
    out = breakdown(frame, pd.Series({1: "a", 2: "b"}), worst=2)
    assert out["horizon_buckets"] == pytest.approx({"1-7": math.sqrt((0.01 + 0.09) / 2), "8-14": 0.1, "15-28": 0.5, "29-48": 0.3})
    # store 3 is missing from the store types: it counts as 'unknown'
    assert out["store_types"] == pytest.approx({"a": 0.1, "b": 0.3, "unknown": 0.5})
    assert out["worst_stores"] == [{"store": 3, "rmspe": pytest.approx(0.5), "store_type": "unknown"},
                                   {"store": 2, "rmspe": pytest.approx(0.3), "store_type": "b"}]
    assert breakdown(frame)["store_types"] == {} and "store_type" not in breakdown(frame)["worst_stores"][0]
    metrics = breakdown_metrics(out, "h48.lgbm")
    assert metrics == pytest.approx({
        "h48.lgbm.bucket.1-7": math.sqrt(0.05), "h48.lgbm.bucket.8-14": 0.1, "h48.lgbm.bucket.15-28": 0.5,
        "h48.lgbm.bucket.29-48": 0.3, "h48.lgbm.store_type.a": 0.1, "h48.lgbm.store_type.b": 0.3,
        "h48.lgbm.store_type.unknown": 0.5, "h48.lgbm.worst_store.3": 0.5, "h48.lgbm.worst_store.2": 0.3,
    })


class _MedianModel:
    """The median(store, weekday, promo) baseline fitted on a history: a real forecaster for the pyfunc wrapper."""

    def __init__(self, history: pd.DataFrame) -> None:
        self.history = history

    def predict(self, long: pd.DataFrame) -> pd.DataFrame:
        from app.forecasting.baselines import median_store_weekday_promo

        return median_store_weekday_promo(self.history, long)


def test_score_on_real_actuals_reports_buckets_store_types_and_worst_stores(real_data) -> None:
    from app.forecasting.features import to_long
    from app.forecasting.pyfunc import SalesForecaster

    sales, stores = real_data
    ids = list(range(1, 41))
    sales = sales[sales["store"].isin(ids)]
    cutoff = pd.Timestamp("2015-04-25")
    model = SalesForecaster(_MedianModel(to_long(sales[sales["date"] <= cutoff])), pd.DataFrame({"lo": [], "hi": []}), cutoff, ids)
    actuals = sales[(sales["date"] > cutoff) & (sales["date"] <= cutoff + pd.Timedelta(days=48))]
    types = stores.set_index("store")["store_type"]
    out = score(model, actuals, types=types)
    assert out["rows"] == len(actuals) and out["stores"] == 40 and out["horizon_days"] == 48
    # the same figures as the metrics on the forecast frame
    pred = model.predict(None, actuals).merge(actuals[["store", "date", "sales"]], on=["store", "date"])
    pred["horizon"] = (pred["date"] - cutoff).dt.days
    assert out["rmspe"] == pytest.approx(M.rmspe(pred["sales"], pred["value"]))
    assert list(out["horizon_buckets"]) == ["1-7", "8-14", "15-28", "29-48"]
    assert out["horizon_buckets"] == pytest.approx(M.rmspe_by_bucket(pred, pred_col="value", true_col="sales"))
    present = sorted(set(types.reindex(ids)))
    assert sorted(out["store_types"]) == present and len(present) >= 2
    per_store = M.per_store_rmspe(pred, "value", "sales", "store").sort_values(ascending=False)
    assert [w["store"] for w in out["worst_stores"]] == [int(s) for s in per_store.index[:10]]
    assert all(w["store_type"] == types[w["store"]] for w in out["worst_stores"])
    assert out["worst_stores"][0]["rmspe"] >= out["worst_stores"][-1]["rmspe"] > out["rmspe"] * 0.5
    with pytest.raises(EvaluationError, match="no rows"):
        score(model, actuals.head(0), types=types)


@pytest.mark.integration
def test_training_run_logs_the_breakdown_to_mlflow(small_dataset) -> None:
    """A small real training (3 real stores, LightGBM only) logs RMSPE by bucket, store type and worst stores."""
    import json

    from mlflow import MlflowClient

    from app.forecasting.pipeline import TrainConfig, train

    config = TrainConfig(lgbm_rounds=20, neural=False, per_store=False, short_windows=0, source="dataset")
    summary = train(small_dataset, config)
    run = MlflowClient().get_run(summary["run_id"])
    prefix = f"h{config.horizon}.{run.data.params['model']}"
    metrics = run.data.metrics
    buckets = sorted(k for k in metrics if k.startswith(f"{prefix}.bucket."))
    assert buckets == sorted(f"{prefix}.bucket.{b}" for b in ("1-7", "8-14", "15-28", "29-48"))
    worst = {k for k in metrics if k.startswith(f"{prefix}.worst_store.")}
    assert worst == {f"{prefix}.worst_store.{s}" for s in (1, 2, 3)}
    assert any(k.startswith(f"{prefix}.store_type.") for k in metrics)
    path = MlflowClient().download_artifacts(summary["run_id"], "backtest/breakdown.json")
    readable = json.loads(open(path).read())
    assert readable["horizon_buckets"] == pytest.approx({b: metrics[f"{prefix}.bucket.{b}"] for b in readable["horizon_buckets"]})
    assert [w["store"] for w in readable["worst_stores"]] == sorted((1, 2, 3), key=lambda s: -metrics[f"{prefix}.worst_store.{s}"])
