"""The training pipeline: data -> backtest (models vs baselines) -> final fit -> MLflow -> registry gate.

Called by the Ray job entrypoints (``ray_cluster/jobs/``), ``sfmlops train`` and the benchmark.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from app.forecasting import features as F
from app.forecasting.backtest import BacktestResult, interval_quantiles, run_backtest
from app.forecasting.models import LGBMForecaster, NeuralForecaster

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings

log = logging.getLogger(__name__)

APP_DIR = Path(__file__).resolve().parent.parent
MEDIAN_BASELINE = "median_dow_promo"


def configure_mlflow(settings: "Settings") -> None:
    """Point MLflow (and its S3 artifact client) at the configured server and endpoint."""
    import mlflow

    os.environ.update(settings.aws_env())
    mlflow.set_tracking_uri(settings.mlflow_uri)


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def model_factories(
    lgbm_rounds: int | None = None,
    lgbm_params: dict[str, Any] | None = None,
    max_steps: int | None = None,
    neural: bool = True,
    horizon: int = 48,
    threads: int = 2,
) -> dict[str, Any]:
    """Name -> factory of the candidate model families."""
    lgbm_kw: dict[str, Any] = {"num_threads": threads, "params": dict(lgbm_params or {})}
    if lgbm_rounds is not None:
        lgbm_kw["num_boost_round"] = int(lgbm_rounds)
    out: dict[str, Any] = {"lgbm": lambda: LGBMForecaster(**lgbm_kw)}
    if neural:
        nn_kw: dict[str, Any] = {"h": horizon, "num_threads": threads}
        if max_steps is not None:
            nn_kw["max_steps"] = int(max_steps)
        out["nhits"] = lambda: NeuralForecaster(**nn_kw)
    return out


def _plot(result: BacktestResult, stores: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(stores), 1, figsize=(11, 2.6 * len(stores)), squeeze=False)
    f = result.forecasts
    for ax, store in zip(axes[:, 0], stores):
        s = f[f["unique_id"] == store]
        actual = s.drop_duplicates("ds").sort_values("ds")
        ax.plot(actual["ds"], actual["y"], color="black", lw=2, label="actual")
        for name, grp in s.groupby("model"):
            grp = grp.sort_values("ds")
            ax.plot(grp["ds"], grp["yhat"], lw=1, label=name)
        ax.set_title(f"store {store}: last {result.horizon}-day backtest")
        ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def train(
    settings: "Settings",
    stores: list[int] | None = None,
    max_steps: int | None = None,
    lgbm_rounds: int | None = None,
    lgbm_params: dict[str, Any] | None = None,
    neural: bool = True,
    horizon: int = 48,
    short_horizon: int = 7,
    short_windows: int = 2,
    source: str = "auto",
    register: bool = True,
    log_mlflow: bool = True,
    threads: int = 2,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Backtest the candidates against the baselines, fit the best on all data, log and register it.

    Args:
        settings: Settings (data, MLflow, registry names).
        stores: Train on these stores only (all when None).
        max_steps: Training steps of the neural model.
        lgbm_rounds: Boosting rounds of LightGBM.
        lgbm_params: Extra LightGBM parameters.
        neural: Also train the neuralforecast (NHITS) candidate.
        horizon: Main backtest horizon (days); the model is chosen on it.
        short_horizon: Second backtest horizon.
        short_windows: Rolling origins of the short-horizon backtest (0 disables it).
        source: Data source (``auto``, ``postgres``, ``dataset``).
        register: Register the model and run the champion gate.
        log_mlflow: Log to MLflow at all (False for offline experiments and the benchmark baseline).
        threads: CPU threads for LightGBM/torch.
        run_name: MLflow run name.
        tags: Extra MLflow run tags.

    Returns:
        Summary with the backtest table, the chosen model, its RMSPE, the baselines', timings, run id,
        version and gate decision.
    """
    from app.forecasting.data import load_training_data

    t_start = time.perf_counter()
    sales, stores_df, used = load_training_data(settings, source=source, stores=stores)  # type: ignore[arg-type]
    long = F.to_long(sales)
    t_data = time.perf_counter() - t_start
    factories = model_factories(lgbm_rounds, lgbm_params, max_steps, neural, horizon, threads)

    t0 = time.perf_counter()
    bt = run_backtest(long, stores_df, factories, horizon=horizon)
    t_bt = time.perf_counter() - t0
    table = bt.table()
    model_rows = table[table["model"].isin(list(factories))]
    best = str(model_rows.iloc[0]["model"])
    best_rmspe = float(model_rows.iloc[0]["rmspe"])
    median_rmspe = float(bt.metrics[MEDIAN_BASELINE]["rmspe"])

    short_table = pd.DataFrame()
    t0 = time.perf_counter()
    if short_windows > 0:
        bt_short = run_backtest(long, stores_df, {best: factories[best]}, horizon=short_horizon, n_windows=short_windows)
        short_table = bt_short.table()
    t_short = time.perf_counter() - t0

    t0 = time.perf_counter()
    final = factories[best]().fit(long, stores_df)
    t_fit = time.perf_counter() - t0
    intervals = interval_quantiles(bt.forecasts, best)

    from app.forecasting.pyfunc import SalesForecaster

    store_ids = sorted(int(s) for s in long["unique_id"].unique())
    wrapper = SalesForecaster(
        final, intervals, long["ds"].max(), store_ids, info={"family": best, "backtest_rmspe": best_rmspe}
    )
    from app.forecasting.batch import project_future_inputs

    t0 = time.perf_counter()
    future = project_future_inputs(sales, horizon)
    forecast = wrapper.predict(None, future)
    t_forecast = time.perf_counter() - t0

    summary: dict[str, Any] = {
        "source": used,
        "rows": int(len(sales)),
        "stores": len(store_ids),
        "train_end": str(long["ds"].max().date()),
        "model": best,
        "rmspe": best_rmspe,
        "median_baseline_rmspe": median_rmspe,
        "seasonal_naive_rmspe": float(bt.metrics["seasonal_naive"]["rmspe"]),
        "improvement_vs_median": 1.0 - best_rmspe / median_rmspe if median_rmspe else None,
        "backtest": {f"h{horizon}": table.to_dict("records"), f"h{short_horizon}": short_table.to_dict("records")},
        "seconds": {
            "data": round(t_data, 2),
            "backtest": round(t_bt, 2),
            "backtest_short": round(t_short, 2),
            "final_fit": round(t_fit, 2),
            "forecast": round(t_forecast, 2),
        },
        "forecast_rows": int(len(forecast)),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }
    if log_mlflow:
        summary.update(
            _log_mlflow(settings, summary, bt, short_table, wrapper, future, factories, register, run_name, tags, stores, max_steps, lgbm_rounds)
        )
    summary["seconds"]["total"] = round(time.perf_counter() - t_start, 2)
    return summary


def _log_mlflow(
    settings: "Settings",
    summary: dict[str, Any],
    bt: BacktestResult,
    short_table: pd.DataFrame,
    wrapper: Any,
    future: pd.DataFrame,
    factories: dict[str, Any],
    register: bool,
    run_name: str | None,
    tags: dict[str, str] | None,
    stores: list[int] | None,
    max_steps: int | None,
    lgbm_rounds: int | None,
) -> dict[str, Any]:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from app.forecasting.registry import RMSPE_TAG, champion_gate

    configure_mlflow(settings)
    mlflow.set_experiment(settings.mlflow_experiment)
    best = summary["model"]
    out: dict[str, Any] = {}
    with mlflow.start_run(run_name=run_name or f"train-{best}") as run:
        mlflow.set_tags({"scope": "all" if not stores else f"stores:{','.join(map(str, stores[:20]))}", **(tags or {})})
        example_model = factories[best]()
        params = {k: v for k, v in vars(example_model).items() if isinstance(v, (int, float, str)) and not k.endswith("seconds")}
        if isinstance(example_model, LGBMForecaster):
            from app.forecasting.models import DEFAULT_LGBM_PARAMS

            params.update({f"lgb.{k}": v for k, v in {**DEFAULT_LGBM_PARAMS, **example_model.params}.items()})
        mlflow.log_params({f"{best}.{k}": v for k, v in params.items()})
        mlflow.log_params(
            {
                "model": best,
                "candidates": ",".join(factories),
                "stores": summary["stores"],
                "rows": summary["rows"],
                "train_end": summary["train_end"],
                "source": summary["source"],
                "max_steps": max_steps,
                "lgbm_rounds": lgbm_rounds,
            }
        )
        for name, metrics in bt.metrics.items():
            mlflow.log_metrics({f"h{bt.horizon}.{name}.{k}": float(v) for k, v in metrics.items()})
        for rec in short_table.to_dict("records"):
            mlflow.log_metrics({f"h{rec['horizon']}.{rec['model']}.{k}": float(rec[k]) for k in ("rmspe", "mae")})
        mlflow.log_metrics(
            {
                RMSPE_TAG: summary["rmspe"],
                "median_baseline_rmspe": summary["median_baseline_rmspe"],
                "improvement_vs_median": summary["improvement_vs_median"] or 0.0,
                "peak_rss_mb": summary["peak_rss_mb"],
                **{f"seconds.{k}": v for k, v in summary["seconds"].items()},
            }
        )
        with tempfile.TemporaryDirectory() as tmp:
            tmpd = Path(tmp)
            top = bt.forecasts["unique_id"].drop_duplicates().sort_values().head(4).tolist()
            _plot(bt, top, tmpd / "actual_vs_forecast.png")
            pd.DataFrame(summary["backtest"][f"h{bt.horizon}"]).to_csv(tmpd / f"backtest_h{bt.horizon}.csv", index=False)
            short_table.to_csv(tmpd / "backtest_short.csv", index=False)
            per_store = bt.forecasts[bt.forecasts["model"] == best]
            from app.forecasting.metrics import per_store_rmspe

            per_store_rmspe(per_store).to_csv(tmpd / "store_rmspe.csv")
            (tmpd / "summary.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "backtest"}, default=str, indent=2))
            mlflow.log_artifacts(str(tmpd), artifact_path="backtest")
        example = future.head(5).assign(date=lambda d: d["date"].dt.strftime("%Y-%m-%d"))
        example = example[["store", "date", "open", "promo", "state_holiday", "school_holiday"]].astype(
            {"store": "int64", "open": "int64", "promo": "int64", "school_holiday": "int64"}
        )
        signature = infer_signature(example, wrapper.predict(None, example))
        mlflow.pyfunc.log_model(
            name="model",
            python_model=wrapper,
            input_example=example,
            signature=signature,
            code_paths=[str(APP_DIR)],
            pip_requirements=["mlflow", "lightgbm", "pandas", "numpy", "pydantic-settings"],
        )
        out["run_id"] = run.info.run_id
        if register:
            mv = mlflow.register_model(f"runs:/{run.info.run_id}/model", settings.model_name)
            gate = champion_gate(MlflowClient(), settings.model_name, str(mv.version), summary["rmspe"])
            mlflow.set_tags({"gate_decision": gate["decision"], "model_version": str(mv.version)})
            mlflow.log_metric("champion_rmspe_before", gate["champion_rmspe"] if gate["champion_rmspe"] is not None else float("nan"))
            mlflow.log_dict(gate, "gate.json")
            out["model_version"] = str(mv.version)
            out["gate"] = gate
    return out
