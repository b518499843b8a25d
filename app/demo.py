"""`sfmlops demo`: the main job end to end on the local stack, step by step, with a summary at the end.

stack up -> Terraform apply to the emulator (Lambda behind API Gateway) -> data -> Kafka replay ->
Spark ingestion into Postgres -> training submitted through the API as a Ray job -> batch forecast ->
a forecast chart, and where to look; with ``with_airflow`` then the weekly Airflow DAG once
(``airflow dags test sales_train_weekly``: retrain through the API, forecast, check, champion report).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from rich.console import Console

from app.config import PROJECT_ROOT

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings

console = Console(stderr=True)
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED", "LOST"}


def step(title: str, fn: Callable[[], Any]) -> Any:
    console.rule(f"[b]{title}")
    t0 = time.monotonic()
    result = fn()
    console.print(f"[green]done[/green] {title} in {time.monotonic() - t0:.1f}s")
    return result


def terraform_apply(settings: "Settings") -> dict | None:
    """Build the Lambda zip, apply Terraform to the emulator and return its outputs (None on failure)."""
    for target in ("lambda-package", "tf-apply-local"):
        proc = subprocess.run(["make", "--no-print-directory", target], cwd=PROJECT_ROOT, text=True,
                              capture_output=True, check=False)
        sys.stderr.write(proc.stdout[-1500:])
        if proc.returncode != 0:
            console.print(f"[yellow]`make {target}` failed; the demo goes on with the local API only:[/yellow]\n{proc.stderr[-2000:]}")
            return None
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(PROJECT_ROOT / "terraform" / "terraformrc")}
    out = subprocess.run(["terraform", "-chdir=terraform", "output", "-json"], cwd=PROJECT_ROOT, env=env, text=True,
                         capture_output=True, check=True)
    return {k: v.get("value") for k, v in json.loads(out.stdout).items()}


def gateway_url(settings: "Settings", api_id: str) -> str:
    """The emulator's path-style invoke URL of an HTTP API (``<id>.execute-api.localhost`` needs DNS)."""
    return f"{settings.aws_endpoint_url}/_aws/execute-api/{api_id}"


def publish_job_code(settings: "Settings", extra_buckets: list[str]) -> list[str]:
    """Build the Ray job-code zip and upload it where the API (local and Lambda) points jobs."""
    from app.api.job_package import build, upload

    path = build()
    uris = [upload(settings, path)]
    for bucket in extra_buckets:
        if bucket and bucket != settings.bucket_code:
            uris.append(upload(settings.model_copy(update={"bucket_code": bucket}), path))
    return uris


def start_api(settings: "Settings") -> str:
    """Serve the API with uvicorn in the background as a stack service (stopped by `sfmlops down`)."""
    from app.stack.api import ApiServer

    return ApiServer(settings).start()


def _job_progress(client, job_id: str) -> str:  # noqa: ANN001 - httpx.Client
    """`` - stage done/total`` from the job log's last progress line (see app.forecasting.executor), or ''."""
    from app.forecasting.executor import parse_progress

    try:
        event = parse_progress(client.get(f"/v1/training-jobs/{job_id}/logs").text)
    except Exception:  # noqa: BLE001 - progress is best effort; the job state is what counts
        return ""
    return f" - {event['stage']} {event['done']}/{event['total']} tasks" if event else ""


def train_through_api(settings: "Settings", base_url: str, body: dict, timeout_s: float) -> dict:
    """Submit a training job through the API and poll it until it ends; return the final job record."""
    import httpx

    headers = {"X-API-Key": settings.api_key.get_secret_value(), "Idempotency-Key": f"demo-{int(time.time())}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        resp = client.post("/v1/training-jobs", json=body)
        if resp.status_code >= 300:
            raise RuntimeError(f"training submission failed: {resp.status_code} {resp.text}")
        job = resp.json()
        job_id = job.get("id") or job.get("job_id")
        console.print(f"training job {job_id} submitted through {base_url}")
        deadline = time.monotonic() + timeout_s
        state = None
        with console.status("training on Ray...") as status:
            while time.monotonic() < deadline:
                job = client.get(f"/v1/training-jobs/{job_id}").json()
                state = job.get("state")
                stage = _job_progress(client, job_id)
                status.update(f"training on Ray: {state}{stage} ({time.monotonic() - deadline + timeout_s:.0f}s)")
                if state in TERMINAL:
                    break
                time.sleep(5)
        if state != "SUCCEEDED":
            logs = client.get(f"/v1/training-jobs/{job_id}/logs").text[-3000:]
            raise RuntimeError(f"training job {job_id} ended {state}:\n{logs}")
        return job


def forecast_chart(settings: "Settings", store: int, out: Path) -> Path:
    """Plot recent actuals and the stored forecast (with its interval) of one store to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from app.db import connect

    with connect(settings) as conn:
        actual = pd.read_sql(
            f"SELECT date, sales, open FROM {settings.table_sales} WHERE store = %s ORDER BY date DESC LIMIT 90",  # noqa: S608
            conn, params=(store,), parse_dates=["date"],
        ).sort_values("date")
        fc = pd.read_sql(
            f"SELECT date, value, lower, upper, model_version FROM {settings.table_forecasts} WHERE store = %s "  # noqa: S608
            f"AND model_version = (SELECT model_version FROM {settings.table_forecasts} WHERE store = %s "
            "ORDER BY created_at DESC LIMIT 1) ORDER BY date",
            conn, params=(store, store), parse_dates=["date"],
        )
    conn.close()
    fig, ax = plt.subplots(figsize=(11, 4))
    ax.plot(actual["date"], actual["sales"], color="#333", lw=1.2, label="actual sales")
    if not fc.empty:
        ax.fill_between(fc["date"], fc["lower"], fc["upper"], color="#4c78a8", alpha=0.25, label="interval")
        ax.plot(fc["date"], fc["value"], color="#4c78a8", lw=1.6, label=f"forecast (model v{fc['model_version'].iloc[0]})")
    ax.set_title(f"Store {store}: last 90 days and the batch forecast")
    ax.set_ylabel("sales")
    ax.legend(loc="upper left")
    fig.autofmt_xdate()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


WEEKLY_DAG = "sales_train_weekly"


def run_weekly_dag(settings: "Settings", train_body: dict | None, days: int | None, timeout_s: float = 4 * 3600) -> dict:
    """Run the weekly Airflow DAG once (`airflow dags test sales_train_weekly` from ``.venv-airflow``, Airflow 3:
    the command runs ``dag.test()`` in-process against the metadata DB, needs no api-server, and exits
    non-zero when the run fails).

    Uses the environment the Airflow service gets (``app.stack.airflow.airflow_env``: connections to the
    stack's Postgres and to the API started by the demo, local backend), the demo's training options
    (``lgbm_rounds``, ``max_steps``, forecast ``days``) and, over both, any ``SFMLOPS_DAG_*`` variable
    already set (e.g. ``SFMLOPS_DAG_TRAINING_NEURAL=false`` for a faster run). The log goes to
    ``<state_dir>/demo/airflow_weekly.log``.

    Returns:
        ``state`` (success | failed), ``exit_code``, ``seconds``, the DAG's champion report and forecast
        coverage lines, and the log path.
    """
    import re

    from app.stack.airflow import AIRFLOW_VENV, airflow_env

    airflow = AIRFLOW_VENV / "bin" / "airflow"
    if not airflow.exists():
        raise RuntimeError(f"{airflow} is missing: run `make airflow-setup` (or `make setup`) before `--with-airflow`")
    env = {**os.environ, **airflow_env(settings), "PATH": os.pathsep.join([str(airflow.parent), os.environ.get("PATH", "")])}
    options = {"TRAINING_LGBM_ROUNDS": (train_body or {}).get("lgbm_rounds"), "TRAINING_MAX_STEPS": (train_body or {}).get("max_steps"),
               "FORECAST_DAYS": days}
    env.update({f"SFMLOPS_DAG_{k}": str(v) for k, v in options.items() if v})
    env.update({k: v for k, v in os.environ.items() if k.startswith("SFMLOPS_DAG_")})  # explicit settings win
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    log_path = settings.state_dir / "demo" / "airflow_weekly.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with log_path.open("w") as log, console.status(f"Airflow: {WEEKLY_DAG} (log: {log_path})"):
        subprocess.run([str(airflow), "db", "migrate"], env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, check=True)
        try:
            code = subprocess.run([str(airflow), "dags", "test", WEEKLY_DAG], env=env, cwd=PROJECT_ROOT, stdout=log,
                                  stderr=subprocess.STDOUT, timeout=timeout_s, check=False).returncode
        except subprocess.TimeoutExpired:
            code = 124
    text = log_path.read_text(errors="replace")

    def first(pattern: str) -> str | None:  # the task's own print (later lines repeat it inside the return value)
        found = re.findall(pattern, text, flags=re.M)
        return found[0].strip() if found else None

    outcome = {
        "dag": WEEKLY_DAG,
        "state": "success" if code == 0 else "failed",
        "exit_code": code,
        "seconds": round(time.monotonic() - t0, 1),
        "champion": first(r"(new model v\S+ (?:is the champion|stays challenger).*|the training job reported no champion.*)$"),
        "forecast_coverage": first(r"forecast coverage: (.*)$"),
        "log": str(log_path),
    }
    colour = "green" if code == 0 else "red"
    console.print(f"[{colour}]{WEEKLY_DAG}: {outcome['state']}[/{colour}] in {outcome['seconds']}s; {outcome['champion'] or ''}")
    if code != 0:
        console.print("\n".join(text.strip().splitlines()[-40:]))
    return outcome


def run(settings: "Settings", rossmann_dir: Path | None, terraform: bool = True, train_body: dict | None = None,
        train_timeout_s: float = 3600, days: int | None = None, with_airflow: bool = False) -> dict:
    """Run the whole demo; returns the summary printed at the end."""
    from app import stack
    from app.api.auth import register_key
    from app.data import prepare
    from app.data.load import load_stores_table
    from app.forecasting.batch import forecast
    from app.ingest import run as ingest
    from app.produce import produce
    from app.stack.api import UiServer

    summary: dict[str, Any] = {}
    step("local stack", lambda: stack.up(settings, on_event=lambda n, r, s: console.print(f"  {n:<9} {r} ({s:.1f}s)")))
    register_key(settings, "local", settings.api_key.get_secret_value())
    outputs = step("terraform apply to the emulator (Lambda + API Gateway)", lambda: terraform_apply(settings)) if terraform else None
    if outputs and outputs.get("api_id"):
        summary["api_gateway_url"] = gateway_url(settings, outputs["api_id"])
    tf_code_bucket = ((outputs or {}).get("bucket_names") or {}).get("code")
    summary["job_code"] = step("job code zip for Ray (working_dir on S3)", lambda: publish_job_code(settings, [tf_code_bucket]))
    data = step("data", lambda: prepare(settings, rossmann_dir=rossmann_dir))
    load_stores_table(settings)
    summary["data"] = f"{data.source}: {data.rows:,} rows, {data.stores:,} stores"
    summary["produce"] = step("produce: replay the history into Kafka", lambda: produce(settings, "replay"))
    summary["ingest"] = step("ingest: Spark Structured Streaming -> Postgres", lambda: ingest(settings, trigger="available-now", echo=True))
    step("API (uvicorn, for the UI and scripts)", lambda: start_api(settings))
    gw = summary.get("api_gateway_url")
    if gw:
        import httpx

        health = httpx.get(f"{gw}/healthz", timeout=60)
        summary["api_gateway_healthz"] = health.status_code
        console.print(f"API Gateway -> Lambda: GET {gw}/healthz -> {health.status_code} {health.text[:200]}")
    # Through API Gateway -> Lambda when Terraform applied, else through the local uvicorn API.
    base = gw or settings.api_base_url
    job = step(f"train through the API ({'API Gateway -> Lambda' if gw else 'uvicorn'}) as a Ray job",
               lambda: train_through_api(settings, base, train_body or {"kind": "all"}, train_timeout_s))
    summary["training"] = job.get("result") or job
    summary["forecast"] = step("batch forecast", lambda: forecast(settings, days=days or settings.horizon_days))
    summary["chart"] = str(forecast_chart(settings, 1, settings.state_dir / "demo" / "forecast_store_1.png"))
    summary["where"] = {
        "api": settings.api_base_url + "/docs",
        "mlflow": settings.mlflow_uri,
        "ray_dashboard": settings.ray_jobs_url,
        "ui": UiServer(settings).address,
    }
    step("operator UI (Streamlit)", lambda: UiServer(settings).start())
    if with_airflow:
        summary["airflow_weekly"] = step(f"Airflow: the weekly DAG ({WEEKLY_DAG}) through the API",
                                         lambda: run_weekly_dag(settings, train_body, days))
    console.rule("[b]where to look")
    for key, value in summary["where"].items():
        console.print(f"  {key:<14} {value}")
    console.print(f"  {'chart':<14} {summary['chart']}")
    if summary.get("api_gateway_url"):
        console.print(f"  {'API Gateway':<14} {summary['api_gateway_url']}")
    return json.loads(json.dumps(summary, default=str))
