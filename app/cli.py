"""The ``sfmlops`` command line: thin commands that parse options and call the modules."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="sfmlops",
    help="Daily sales forecasting MLOps: local stack, data, ingestion, training, forecasts, API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def settings():  # Settings, imported lazily so --help stays fast
    """Load and validate the settings; a bad setting ends the command with its name."""
    from pydantic import ValidationError

    from app.config import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ())) or "settings"
            name = f"SFMLOPS_{loc.upper()}" if loc != "settings" else loc
            console.print(f"[red]configuration error[/red] {name}: {err.get('msg')}")
        raise typer.Exit(2) from None


def _fail(message: str, code: int = 1) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:,.0f} MB"


def print_status(rows) -> bool:
    table = Table(title="sfmlops local stack")
    for col in ("service", "address", "healthy", "pid", "resident memory"):
        table.add_column(col, justify="right" if col in ("pid", "resident memory") else "left")
    total = 0
    for row in rows:
        total += row.rss_bytes
        state = "[green]yes[/green]" if row.healthy else ("[yellow]no[/yellow]" if row.running else "[red]stopped[/red]")
        table.add_row(row.name, row.address, state, str(row.pid or "-"), _mb(row.rss_bytes) if row.pid else "-")
    table.add_row("[b]total[/b]", "", "", "", f"[b]{_mb(total)}[/b]")
    Console().print(table)
    return all(r.healthy for r in rows)


@app.command()
def up(
    with_airflow: Annotated[bool, typer.Option("--with-airflow", help="Also start Airflow standalone (needs `make airflow-setup`)")] = False,
    with_monitoring: Annotated[bool, typer.Option(
        "--with-monitoring", help="Also start Prometheus, Alertmanager, the Pushgateway and the exporters (SFMLOPS_MONITORING=true)",
    )] = False,
) -> None:
    """Start the local stack (MiniStack, Kafka, PostgreSQL, MLflow, Ray head); reuse what already runs."""
    from app import stack

    s = settings()
    t0 = time.monotonic()
    try:
        with console.status("starting the local stack..."):
            stack.up(s, on_event=lambda n, r, sec: console.print(f"  {n:<9} {r} ({sec:.1f}s)"), with_airflow=with_airflow,
                     with_monitoring=with_monitoring)
    except stack.StackError as exc:
        _fail(str(exc))
    console.print(f"stack up in {time.monotonic() - t0:.1f}s")
    if s.profile == "local":
        # The key the UI and the DAGs present (settings.api_key) is a registered client locally.
        from app.api.auth import register_key

        register_key(s, "local", s.api_key.get_secret_value())
    print_status(stack.status(s))


@app.command()
def down() -> None:
    """Stop exactly the services `sfmlops up` started."""
    from app import stack

    stopped = stack.down(settings())
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@app.command()
def status() -> None:
    """Show every service: address, health, pid, resident memory, and the total."""
    from app import stack

    if not print_status(stack.status(settings())):
        raise typer.Exit(1)


@app.command()
def data(
    path: Annotated[
        Path | None, typer.Option("--path", help="Folder with Kaggle train.csv(.gz) and store.csv; default: setting or synthetic")
    ] = None,
    synthetic: Annotated[bool, typer.Option("--synthetic", help="Generate the synthetic dataset even if a path is set")] = False,
    load_db: Annotated[bool, typer.Option("--load-db/--no-load-db", help="Load store metadata into PostgreSQL")] = True,
) -> None:
    """Load (Kaggle files) or generate (synthetic) the dataset, validate it, write canonical parquet."""
    from app.data import prepare
    from app.data.validation import DataValidationError

    s = settings()
    folder = None if synthetic else (path or s.rossmann_dir)
    try:
        with console.status("loading and validating data..."):
            result = prepare(s, rossmann_dir=folder)
    except (DataValidationError, FileNotFoundError) as exc:
        _fail(str(exc))
    console.print(
        f"{result.source}: {result.rows:,} rows, {result.stores:,} stores, {result.first_date}..{result.last_date}"
        f" -> {result.sales_path.parent}"
    )
    if load_db:
        from app.data.load import load_stores_table

        try:
            n = load_stores_table(s)
        except Exception as exc:  # noqa: BLE001 - the database is optional here
            console.print(f"[yellow]store metadata not loaded into PostgreSQL ({exc.__class__.__name__}: {exc}); run `sfmlops up` first[/yellow]")
        else:
            console.print(f"store metadata: {n:,} rows upserted into {s.table_stores}")


@app.command()
def produce(
    live: Annotated[bool, typer.Option("--live/--replay", help="live: one day per interval dated today; replay: a date range as fast as possible")] = False,
    start: Annotated[str | None, typer.Option(help="First source day YYYY-MM-DD (default: first day of the data)")] = None,
    end: Annotated[str | None, typer.Option(help="Last source day YYYY-MM-DD (default: last day of the data)")] = None,
    interval: Annotated[float, typer.Option(help="Live mode: seconds between days")] = 10.0,
    days: Annotated[int | None, typer.Option(help="Stop after this many days")] = None,
    topic: Annotated[str | None, typer.Option(help="Topic (default: SFMLOPS_KAFKA_TOPIC)")] = None,
) -> None:
    """Publish daily store rows (JSON, schema-versioned, key = store id) to the sales topic."""
    from app.produce import ProduceConfig
    from app.produce import produce as run_produce

    config = ProduceConfig("live" if live else "replay", start, end, topic=topic, interval_s=interval, max_days=days)
    result = run_produce(settings(), config)
    _print_json(result)
    if result.get("failed"):
        raise typer.Exit(1)


@app.command()
def ingest(
    trigger: Annotated[str, typer.Option(help="available-now (drain the topic and stop) or processing-time (continuous)")] = "available-now",
    checkpoint: Annotated[str | None, typer.Option(help="Checkpoint location (default: s3a://<checkpoints bucket>/sales_stream)")] = None,
    max_offsets_per_trigger: Annotated[int | None, typer.Option(help="Records per micro-batch")] = None,
    run_seconds: Annotated[float | None, typer.Option(help="processing-time: stop after this many seconds")] = None,
    topic: Annotated[str | None, typer.Option(help="Topic (default: SFMLOPS_KAFKA_TOPIC)")] = None,
) -> None:
    """Run the Spark Structured Streaming job (same file and arguments as spark-submit on EMR)."""
    from app.ingest import run as run_ingest

    if trigger not in ("available-now", "processing-time"):
        _fail(f"--trigger must be available-now or processing-time, not {trigger!r}", 2)
    # run() takes these as **job_opts: Any (not as its timeout_s / log_path, which the values' union would match)
    opts: dict[str, Any] = {k: v for k, v in {"checkpoint": checkpoint, "max_offsets_per_trigger": max_offsets_per_trigger,
                                              "run_seconds": run_seconds, "topic": topic}.items() if v is not None}
    try:
        result = run_ingest(settings(), trigger=trigger, echo=True, **opts)
    except RuntimeError as exc:
        _fail(str(exc))
    _print_json(result)


def _store_list(stores: str) -> list[int] | None:
    try:
        return [int(x) for x in stores.split(",") if x.strip()] or None
    except ValueError:
        _fail(f"--stores must be comma-separated store ids, not {stores!r}", 2)
        return None


@app.command()
def train(
    stores: Annotated[str, typer.Option(help="Comma-separated store ids (default: all stores)")] = "",
    lgbm_rounds: Annotated[int | None, typer.Option(help="Boosting rounds of the LightGBM candidate")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Training steps of the neural (NHITS) candidate")] = None,
    neural: Annotated[bool, typer.Option("--neural/--no-neural", help="Also train the neuralforecast candidate")] = True,
    per_store: Annotated[bool, typer.Option("--per-store/--no-per-store", help="Also backtest the per-store statsforecast family")] = True,
    tune_trials: Annotated[
        int | None, typer.Option(help="Ray Tune trials of each tuned candidate (LightGBM, NHITS) (default: SFMLOPS_TRAIN_TUNE_TRIALS; 0: none)")
    ] = None,
    tune_time_budget_s: Annotated[
        float | None, typer.Option(help="Time budget (s) of that search (default: SFMLOPS_TRAIN_TUNE_TIME_BUDGET_S; 0: none)")
    ] = None,
) -> None:
    """Backtest candidates vs baselines, log to MLflow, register, and move `champion` only if better (in-process).

    Shows the stage, tasks done/total and elapsed time while it runs. The same work fans out as Ray tasks in the
    Ray job the API starts (POST /v1/training-jobs) or `ray_cluster/jobs/train_all.py`.
    """
    from app.forecasting.executor import LocalExecutor, Progress, RichProgress
    from app.forecasting.pipeline import TrainConfig
    from app.forecasting.pipeline import train as run_train

    ids = _store_list(stores)
    s = settings()
    trials = s.train_tune_trials if tune_trials is None else tune_trials
    budget = (s.train_tune_time_budget_s if tune_time_budget_s is None else tune_time_budget_s) or None
    try:
        config = TrainConfig(
            stores=tuple(ids) if ids else None, lgbm_rounds=lgbm_rounds, max_steps=max_steps, neural=neural, per_store=per_store,
            tune_trials=trials, tune_time_budget_s=budget,
        )
    except ValueError as exc:
        _fail(str(exc), 2)
    try:
        with RichProgress() as bars:
            result = run_train(s, config, LocalExecutor(), Progress(bars))
    except (ValueError, RuntimeError) as exc:
        _fail(str(exc))
    _print_json(result)


@app.command()
def forecast(
    days: Annotated[int | None, typer.Option(help="Days after the data to forecast (default: SFMLOPS_HORIZON_DAYS)")] = None,
    stores: Annotated[str, typer.Option(help="Comma-separated store ids (default: all stores)")] = "",
) -> None:
    """Write the champion's forecasts for every store and the next N days to the forecasts table (idempotent)."""
    from app.forecasting.batch import forecast as run_forecast

    _print_json(run_forecast(settings(), days=days, stores=_store_list(stores)))


@app.command()
def evaluate(
    actuals: Annotated[Path, typer.Option("--actuals", help="CSV in Kaggle train.csv format with dates after the training data")],
    projected_inputs: Annotated[bool, typer.Option(
        "--projected-inputs", help="Also score the forecast from projected inputs (no planning data) instead of the file's true ones",
    )] = False,
) -> None:
    """Score the champion on later actuals; prints {"rmspe", "mae", "rows", "stores", "horizon_days", "horizon_buckets",
    "store_types", "worst_stores", "model_version"} (RMSPE by horizon bucket 1-7/8-14/15-28/29-48 days, by store type, worst stores)."""
    from app.forecasting.evaluate import EvaluationError
    from app.forecasting.evaluate import evaluate as run_evaluate

    try:
        result = run_evaluate(settings(), actuals, projected_inputs=projected_inputs)
    except (EvaluationError, FileNotFoundError) as exc:
        _fail(str(exc), 2)
    _print_json(result)


@app.command()
def ui() -> None:
    """Serve the operator UI (Streamlit) on 127.0.0.1; it talks only to the API."""
    from app.ui import run as run_ui

    raise typer.Exit(run_ui(settings()))


@app.command()
def demo(
    path: Annotated[Path | None, typer.Option("--path", help="Kaggle folder (default: setting, else ../shared/data/rossmann, else synthetic)")] = None,
    terraform: Annotated[bool, typer.Option("--terraform/--no-terraform", help="Apply Terraform to the emulator (Lambda behind API Gateway)")] = True,
    lgbm_rounds: Annotated[int | None, typer.Option(help="Boosting rounds of the LightGBM candidate (default: the model's)")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Training steps of the neural candidate (default: the model's)")] = None,
    days: Annotated[int | None, typer.Option(help="Forecast horizon (default: SFMLOPS_HORIZON_DAYS)")] = None,
    with_airflow: Annotated[bool, typer.Option("--with-airflow", help="Then run the weekly Airflow DAG once (airflow dags test, .venv-airflow)")] = False,
) -> None:
    """The main job end to end: stack, Terraform, data, Kafka, Spark, training via the API on Ray, forecasts."""
    from app.demo import run as run_demo

    s = settings()
    folder = path or s.rossmann_dir
    if folder is None:
        shared = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "rossmann"
        folder = shared if (shared / "store.csv").is_file() else None
    body = {"kind": "all", **{k: v for k, v in {"lgbm_rounds": lgbm_rounds, "max_steps": max_steps}.items() if v}}
    try:
        result = run_demo(s, folder, terraform=terraform, train_body=body, days=days, with_airflow=with_airflow)
    except RuntimeError as exc:
        _fail(str(exc))
    _print_json(result)
    if with_airflow and result["airflow_weekly"]["state"] != "success":
        _fail(f"the weekly DAG failed; see {result['airflow_weekly']['log']}")


@app.command()
def api() -> None:
    """Serve the API with uvicorn on 127.0.0.1 (development; on AWS it runs in Lambda)."""
    from app.api.main import run_api

    run_api(settings())


api_key_app = typer.Typer(help="Issue and revoke API keys (stored hashed).", no_args_is_help=True)
app.add_typer(api_key_app, name="api-key")


@api_key_app.command("create")
def api_key_create(name: Annotated[str, typer.Argument(help="Client name the key belongs to")]) -> None:
    """Issue a new key for client NAME and print it once (only its hash is stored)."""
    from app.api.auth import issue_key

    print(issue_key(settings(), name))


@api_key_app.command("revoke")
def api_key_revoke(name: Annotated[str, typer.Argument(help="Client whose keys are revoked")]) -> None:
    """Revoke every key of client NAME."""
    from app.api.auth import revoke_keys

    n = revoke_keys(settings(), name)
    console.print(f"revoked {n} key(s) of {name}")


plan_app = typer.Typer(help="Planning data: the known-future inputs (open, promo, holidays) the batch forecast uses.", no_args_is_help=True)
app.add_typer(plan_app, name="plan")


@plan_app.command("upload")
def plan_upload(
    path: Annotated[Path, typer.Argument(help="CSV with Kaggle test.csv columns: [Id,]Store,DayOfWeek,Date,Open,Promo,StateHoliday,SchoolHoliday")],
) -> None:
    """Store FILE.csv as a new version of the planning data (validated like POST /v1/planning/csv: a bad row refuses it all)."""
    import getpass

    from app.db import transaction
    from app.forecasting.planning import PlanError, upload_csv

    if not path.is_file():
        _fail(f"plan file {path} does not exist", 2)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        _fail(f"{path} is not UTF-8 text: {exc}", 2)
    s = settings()
    try:
        with transaction(s) as conn:
            result = upload_csv(conn, s, text, f"cli:{getpass.getuser()}", source=str(path))
    except PlanError as exc:
        _fail(str(exc), 2)
    _print_json(result)


@plan_app.command("list")
def plan_list(limit: Annotated[int, typer.Option(help="How many versions, newest first")] = 20) -> None:
    """The newest versions of the planning data (as GET /v1/planning): version, rows, stores, dates, client."""
    from app.db import connect
    from app.forecasting.planning import versions

    s = settings()
    conn = connect(s)
    try:
        _print_json({"versions": versions(conn, s, limit)})
    finally:
        conn.close()


bench_app = typer.Typer(help="Benchmarks; each prints one JSON line last (figure and same-run baseline).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def _print_json(result: dict) -> None:
    print(json.dumps(result, default=str))


@bench_app.command("api")
def bench_api(
    rate: Annotated[list[int] | None, typer.Option(help="Requests per second, open loop (repeat; default 200, 500, 1000)")] = None,
    duration: Annotated[float, typer.Option(help="Measured seconds per rate and service")] = 10.0,
    with_lambda: Annotated[bool, typer.Option("--lambda/--no-lambda", help="Also Lambda through the emulator's API Gateway")] = True,
) -> None:
    """The real API (vegeta, every store, random order) vs a lean FastAPI + psycopg service; then Lambda.

    One JSON line per rate (p50/p99/p99.9, achieved rate, errors by kind, the lean figures, ratios), then Lambda's.
    """
    from app.bench.api import RATES, run

    run(settings(), rates=tuple(rate or RATES), duration_s=duration, with_lambda=with_lambda)


@bench_app.command("ingest")
def bench_ingest(
    path: Annotated[Path | None, typer.Option("--path", help="Kaggle folder (default: prepared data, else shared Rossmann files)")] = None,
    limit_rows: Annotated[int | None, typer.Option(help="Only the first N rows (quick check)")] = None,
    max_offsets_per_trigger: Annotated[int | None, typer.Option(help="Records per micro-batch")] = None,
    local_checkpoint: Annotated[bool, typer.Option(help="Checkpoints in a local folder instead of the S3 emulator")] = False,
) -> None:
    """Replay the history through Kafka -> Spark -> Postgres (cold, steady, plain consumer) vs a plain COPY of the same rows."""
    from app.bench.ingest import run

    _print_json(run(settings(), rossmann_dir=path, limit_rows=limit_rows, max_offsets_per_trigger=max_offsets_per_trigger,
                    local_checkpoint=local_checkpoint))


from app.bench.train import register as _register_bench_train  # noqa: E402 - light module, heavy imports are lazy

_register_bench_train(bench_app)

from app.bench.scale import register as _register_bench_scale  # noqa: E402 - light module, heavy imports are lazy

_register_bench_scale(bench_app)

from app.bench.accuracy import register as _register_bench_accuracy  # noqa: E402 - light module, heavy imports are lazy

_register_bench_accuracy(bench_app)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
