"""The MLflow run of a training (the pipeline's log stage): params, metrics, timings, artifacts and the pyfunc
model. The connection setup is :func:`app.forecasting.tracking.configure_mlflow`; registration and the champion
gate are :mod:`app.forecasting.registry`."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from app.config import Settings
    from app.forecasting.pipeline import TrainConfig, TrainResult

APP_DIR = Path(__file__).resolve().parent.parent  # the app package: the pyfunc model's code path


def config_params(config: TrainConfig) -> dict[str, Any]:
    """The config as flat MLflow params."""
    out = {k: v for k, v in asdict(config).items() if k not in ("tags", "lgbm_params", "nhits_params", "stores", "run_name")}
    out["stores"] = len(config.stores) if config.stores else "all"
    return out


def _plot(forecasts: pd.DataFrame, horizon: int, stores: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(stores), 1, figsize=(11, 2.6 * len(stores)), squeeze=False)
    for ax, store in zip(axes[:, 0], stores, strict=False):
        s = forecasts[forecasts["unique_id"] == store]
        actual = s.drop_duplicates("ds").sort_values("ds")
        ax.plot(actual["ds"], actual["y"], color="black", lw=2, label="actual")
        for name, grp in s.groupby("model"):
            grp = grp.sort_values("ds")
            ax.plot(grp["ds"], grp["yhat"], lw=1, label=name)
        ax.set_title(f"store {store}: last {horizon}-day backtest")
        ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def log_training_run(settings: Settings, result: TrainResult, summary: dict[str, Any]) -> str:
    """Log a training to MLflow: params, every backtest metric, timings, failed candidates, artifacts (plot,
    backtest tables, per-store RMSPE, summary) and the pyfunc model. Registration is not done here
    (:func:`app.forecasting.registry.register_and_gate`). Returns the run id."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from app.forecasting.evaluate import breakdown, breakdown_metrics
    from app.forecasting.metrics import per_store_rmspe
    from app.forecasting.models import DEFAULT_LGBM_PARAMS
    from app.forecasting.registry import RMSPE_TAG, SCOPE_TAG, scope_of
    from app.forecasting.tracking import configure_mlflow

    configure_mlflow(settings)
    mlflow.set_experiment(settings.mlflow_experiment)
    cfg, bt, best = result.config, result.backtest, result.best
    with mlflow.start_run(run_name=cfg.run_name or f"train-{best}") as run:
        tags = {SCOPE_TAG: scope_of(list(cfg.stores) if cfg.stores else None), "executor": result.executor, **cfg.tags}
        if result.failures:
            tags["failed_candidates"] = ",".join(f["candidate"] for f in result.failures)
        mlflow.set_tags(tags)
        cand = result.champion or {c.name: c for c in cfg.candidates()}[best]
        params = {f"{best}.{k}": v for k, v in cand.params.items() if isinstance(v, (int, float, str))}
        if cand.kind == "lgbm":
            params.update({f"{best}.lgb.{k}": v for k, v in {**DEFAULT_LGBM_PARAMS, **cand.params.get("params", {})}.items()})
        mlflow.log_params(params)
        mlflow.log_params(
            {**config_params(cfg), "model": best, "candidates": ",".join(summary["candidates"]), "stores_trained": summary["stores"],
             "rows": summary["rows"], "train_end": summary["train_end"], "source": summary["source"], "tasks": summary["tasks"]}
        )
        for name, metrics in bt.metrics.items():
            mlflow.log_metrics({f"h{bt.horizon}.{name}.{k}": float(v) for k, v in metrics.items()})
        # readable evaluation of the chosen model's backtest: by horizon bucket, store type, worst stores
        readable = breakdown(bt.forecasts[bt.forecasts["model"] == best], result.data.stores.set_index("store")["store_type"])
        mlflow.log_metrics(breakdown_metrics(readable, f"h{bt.horizon}.{best}"))
        short_table = result.short.table() if result.short is not None else pd.DataFrame()
        for rec in short_table.to_dict("records"):
            mlflow.log_metrics({f"h{rec['horizon']}.{rec['model']}.{k}": float(rec[k]) for k in ("rmspe", "mae")})
        mlflow.log_metrics(
            {
                RMSPE_TAG: summary["rmspe"],
                "median_baseline_rmspe": summary["median_baseline_rmspe"],
                "improvement_vs_median": summary["improvement_vs_median"] or 0.0,
                "peak_rss_mb": summary["peak_rss_mb"],
                "failed_candidates": float(len(result.failures)),
                **{f"seconds.{k}": v for k, v in summary["seconds"].items()},
                **{f"intervals.{k}": float(v) for k, v in result.interval_metrics.items()},
                **{f"ensemble.weight.{k}": float(v) for k, v in result.ensemble_weights.items()},
            }
        )
        with tempfile.TemporaryDirectory() as tmp:
            tmpd = Path(tmp)
            top = bt.forecasts["unique_id"].drop_duplicates().sort_values().head(4).tolist()
            _plot(bt.forecasts, bt.horizon, top, tmpd / "actual_vs_forecast.png")
            bt.table().to_csv(tmpd / f"backtest_h{bt.horizon}.csv", index=False)
            short_table.to_csv(tmpd / "backtest_short.csv", index=False)
            per_store_rmspe(bt.forecasts[bt.forecasts["model"] == best]).to_csv(tmpd / "store_rmspe.csv")
            (tmpd / "summary.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "backtest"}, default=str, indent=2))
            (tmpd / "failures.json").write_text(json.dumps(result.failures, indent=2))
            (tmpd / "breakdown.json").write_text(json.dumps(readable, indent=2))
            mlflow.log_artifacts(str(tmpd), artifact_path="backtest")
        example = result.future.head(5).assign(date=lambda d: d["date"].dt.strftime("%Y-%m-%d"))
        example = example[["store", "date", "open", "promo", "state_holiday", "school_holiday"]].astype(
            {"store": "int64", "open": "int64", "promo": "int64", "school_holiday": "int64"}
        )
        signature = infer_signature(example, result.wrapper.predict(None, example))
        mlflow.pyfunc.log_model(
            name="model",
            python_model=result.wrapper,
            input_example=example,
            signature=signature,
            code_paths=[str(APP_DIR)],
            pip_requirements=["mlflow", "lightgbm", "statsforecast", "pandas", "numpy", "pydantic-settings"],
        )
        return run.info.run_id
