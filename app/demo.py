"""`sfmlops demo`: the main job end to end on the local stack, step by step, with a summary at the end.

stack up -> Terraform apply to the emulator (Lambda behind API Gateway) -> data -> Kafka replay ->
Spark ingestion into Postgres -> training submitted through the API as a Ray job -> batch forecast ->
a forecast chart, and where to look.
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


def terraform_apply(settings: "Settings") -> str | None:
    """Build the Lambda zip and apply Terraform to the emulator; return the API Gateway URL (or None)."""
    env = {**os.environ}
    for target in ("lambda-package", "tf-apply-local"):
        proc = subprocess.run(["make", "--no-print-directory", target], cwd=PROJECT_ROOT, env=env, text=True,
                              capture_output=True, check=False)
        sys.stderr.write(proc.stdout[-3000:])
        if proc.returncode != 0:
            console.print(f"[yellow]`make {target}` failed; the demo goes on with the local API only:[/yellow]\n{proc.stderr[-2000:]}")
            return None
    lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip().startswith("http")]
    return lines[-1].rstrip("/") if lines else None


def start_api(settings: "Settings") -> subprocess.Popen:
    """Serve the API with uvicorn in the background (`sfmlops api`) and wait until it answers."""
    import httpx

    log = open(settings.logs_dir / "api.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "api"], cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{settings.api_base_url}/healthz", timeout=3).status_code < 500:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(1)
    raise RuntimeError(f"the API did not start; see {settings.logs_dir / 'api.log'}")


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
                status.update(f"training on Ray: {state} ({time.monotonic() - deadline + timeout_s:.0f}s)")
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


def run(settings: "Settings", rossmann_dir: Path | None, terraform: bool = True, train_body: dict | None = None,
        train_timeout_s: float = 3600, days: int | None = None) -> dict:
    """Run the whole demo; returns the summary printed at the end."""
    from app import stack
    from app.api.auth import register_key
    from app.data import prepare
    from app.data.load import load_stores_table
    from app.forecasting.batch import forecast
    from app.ingest import run as ingest
    from app.produce import produce

    summary: dict[str, Any] = {}
    step("local stack", lambda: stack.up(settings, on_event=lambda n, r, s: console.print(f"  {n:<9} {r} ({s:.1f}s)")))
    register_key(settings, "local", settings.api_key.get_secret_value())
    if terraform:
        summary["api_gateway_url"] = step("terraform apply to the emulator (Lambda + API Gateway)", lambda: terraform_apply(settings))
    data = step("data", lambda: prepare(settings, rossmann_dir=rossmann_dir))
    load_stores_table(settings)
    summary["data"] = f"{data.source}: {data.rows:,} rows, {data.stores:,} stores"
    summary["produce"] = step("produce: replay the history into Kafka", lambda: produce(settings, "replay"))
    summary["ingest"] = step("ingest: Spark Structured Streaming -> Postgres", lambda: ingest(settings, trigger="available-now", echo=True))
    api_proc = step("API (uvicorn, for the UI and scripts)", lambda: start_api(settings))
    try:
        gw = summary.get("api_gateway_url")
        if gw:
            import httpx

            health = httpx.get(f"{gw}/healthz", timeout=60)
            summary["api_gateway_healthz"] = health.status_code
            console.print(f"API Gateway -> Lambda: GET {gw}/healthz -> {health.status_code} {health.text[:200]}")
        job = step("train through the API as a Ray job",
                   lambda: train_through_api(settings, settings.api_base_url, train_body or {"kind": "all"}, train_timeout_s))
        summary["training"] = job.get("result") or job
        summary["forecast"] = step("batch forecast", lambda: forecast(settings, days=days or settings.horizon_days))
        summary["chart"] = str(forecast_chart(settings, 1, settings.state_dir / "demo" / "forecast_store_1.png"))
    finally:
        if api_proc.poll() is None:
            summary["api_pid"] = api_proc.pid
    summary["where"] = {
        "api": settings.api_base_url + "/docs",
        "mlflow": settings.mlflow_uri,
        "ray_dashboard": settings.ray_jobs_url,
        "ui": "run `sfmlops ui`",
    }
    console.rule("[b]where to look")
    for key, value in summary["where"].items():
        console.print(f"  {key:<14} {value}")
    console.print(f"  {'chart':<14} {summary['chart']}")
    if summary.get("api_gateway_url"):
        console.print(f"  {'API Gateway':<14} {summary['api_gateway_url']}")
    return json.loads(json.dumps(summary, default=str))
