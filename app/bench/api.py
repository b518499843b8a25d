"""``sfmlops bench api``: the real API under open-loop load, against a lean service, plus Lambda (issue 15).

* **Ours** is the app ``sfmlops api`` serves (``app.api.main.run_api``: the same factory, middleware and
  auth as the Lambda handler) in its own process, one uvicorn worker.
* **Lean** is the baseline: a minimal FastAPI app (``lean_app``) on the same uvicorn (uvloop, httptools)
  answering ``GET /v1/stores/{id}/forecast`` from the same table with the same statement
  (``app.api.routes.forecasts._serve_sql``) through a ``psycopg_pool`` async pool, without auth or caches.
* **Load** comes from vegeta (``make vegeta`` builds it with ``go install`` into ``.cache/go-bin``), open
  loop at each rate, over every store of the forecasts table in random order, with a valid API key. The
  two services alternate at each rate. Latency is vegeta's (from the scheduled send time); p99.9 and the
  errors by kind are computed from its per-request results.
* **CPU per request** (``cpu_us_per_request``, ours and lean's, measured once per run before the servers
  start, ``ratio_cpu``): each app built in the bench's process and driven straight through ASGI, one
  request at a time, with the DB answer (:func:`cpu_per_request`); ``time.process_time`` of 15 blocks of
  200 requests each, alternating ours/lean, after 300 of warm-up; the median block of each. CPU time of
  this process only (Postgres' and the load generator's are not counted, nor waiting for a core), it
  excludes uvicorn's HTTP parsing, which both servers share.
* **Data**: the configured table and model when the champion has forecasts there (read only); otherwise
  the bench writes its own (1,115 stores x 48 days, the demo's shape) into ``bench_api_forecasts`` under
  the registered model ``bench-api-forecaster`` (champion v1, no artifact), and leaves them for the next run.
* **Lambda** (``--lambda``): the Lambda zip (``lambda/build.py``) deployed with boto3 to the emulator behind
  an API Gateway HTTP API, as ``tests/api/test_api_emulator_e2e.py`` does (Terraform's apply of the same
  module is the demo's, too heavy for a bench): the first request after deploy (cold start), then
  p50/p99 at 50/s through the gateway after a ramp-up (the emulator starts one execution environment per
  concurrent invocation), with the handler's own time per invocation (its log line, ``handler_ms``) next to
  the emulator's ``REPORT`` duration, read from the function's log group. The function, API, role and the
  emulator's worker processes are removed afterwards.

The per-client rate limit of the API is raised for the bench's process (one client sends all the load);
nothing else differs from ``sfmlops api``. One JSON line per rate, then one for Lambda.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from app.config import PROJECT_ROOT, Settings
from app.stack.base import free_ports, wait_listening

BENCH_TABLE = "bench_api_forecasts"
BENCH_MODEL = "bench-api-forecaster"
BENCH_STORES = 1115
BENCH_DAYS = 48
VEGETA = PROJECT_ROOT / ".cache" / "go-bin" / "vegeta"
RATES = (200, 500, 1000)


# --- the lean baseline ---------------------------------------------------------------------------------
def lean_app(settings: Settings | None = None, model: str | None = None, version: str | None = None):  # uvicorn factory
    """FastAPI + a psycopg 3 async pool, the route's statement, nothing else (env: BENCH_LEAN_*)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Response
    from psycopg_pool import AsyncConnectionPool

    from app.api.routes.forecasts import _serve_sql
    from app.config import get_settings

    s = settings or get_settings()
    sql = _serve_sql(s.table_forecasts)
    model, version = model or os.environ["BENCH_LEAN_MODEL"], version or os.environ["BENCH_LEAN_VERSION"]
    pool = AsyncConnectionPool("", kwargs={**s.pg_params(), "autocommit": True}, min_size=4, max_size=4, open=False)

    @asynccontextmanager
    async def lifespan(_app):
        await pool.open(wait=True)
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/v1/stores/{store_id}/forecast")
    async def forecast(store_id: int) -> Response:
        async with pool.connection() as conn:
            cur = await conn.execute(sql, {"m": model, "v": version, "s": store_id, "n": s.horizon_days})
            row = await cur.fetchone()
        if row is None:
            return Response(status_code=404)
        return Response(content=row[0], media_type="application/json")

    return app


# --- CPU per request, in process ------------------------------------------------------------------------
async def asgi_get(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """``GET path`` sent straight into the ASGI ``app`` (the scope uvicorn builds, no sockets): (status, body)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000), "scheme": "http", "method": "GET",
        "root_path": "", "path": path, "raw_path": path.encode(), "query_string": b"", "headers": headers, "state": {},
    }
    status: list[int] = []
    body: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    await app(scope, receive, send)
    return (status[0] if status else 0), b"".join(body)


async def _asgi_cpu(app: Any, paths: list[str], headers: list[tuple[bytes, bytes]], n: int, offset: int = 0) -> float:
    """CPU microseconds of this process per request: ``n`` GETs sent one at a time through :func:`asgi_get`
    (``paths`` from ``offset`` on, round robin), each answered 200 with its body.

    ``time.process_time`` counts only this process's CPU (every thread): not Postgres' work (the two apps
    run one statement), not the load generator's, not time spent waiting for a core.
    """
    started = time.process_time()
    for i in range(n):
        path = paths[(offset + i) % len(paths)]
        status, _ = await asgi_get(app, path, headers)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status} in the CPU measurement")
    return (time.process_time() - started) / n * 1e6


def cpu_per_request(
    served: Settings, version: str, key: str, stores: list[int], rounds: int = 15, block: int = 200, warmup: int = 300
) -> dict[str, float]:
    """``{"ours": us, "lean": us}``: :func:`_asgi_cpu` of the real app (``create_app``, the bench's rate limit)
    and of ``lean_app`` in this process, each the median of ``rounds`` blocks of ``block`` requests after
    ``warmup``; the blocks alternate ours, lean, ours, ... so that both see the same machine (a busy machine
    still inflates CPU time through caches and shared cores: the alternation keeps the ratio honest)."""
    import asyncio
    import gc
    import statistics

    import uvloop

    from app.api.main import create_app

    ours = create_app(served.model_copy(update={"api_rate_limit_per_minute": 10**9}))
    lean = lean_app(served, served.model_name, version)
    order = list(stores)
    random.Random(15).shuffle(order)
    paths = [f"/v1/stores/{s}/forecast" for s in order]
    headers = [(b"host", b"127.0.0.1:8000"), (b"x-api-key", key.encode()), (b"accept", b"application/json")]
    apps = {"ours": ours, "lean": lean}

    async def measure() -> dict[str, float]:
        figures: dict[str, list[float]] = {name: [] for name in apps}
        async with ours.router.lifespan_context(ours), lean.router.lifespan_context(lean):
            for app in apps.values():
                await _asgi_cpu(app, paths, headers, warmup)
            for r in range(rounds):
                for name, app in apps.items():
                    figures[name].append(await _asgi_cpu(app, paths, headers, block, warmup + r * block))
        return {name: round(statistics.median(values), 1) for name, values in figures.items()}

    gc.collect()
    gc.freeze()  # as run_api and the Lambda handler do: full collections walk only what requests allocate
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(measure())
    finally:
        gc.unfreeze()


# --- data ----------------------------------------------------------------------------------------------
def _champion(settings: Settings) -> str | None:
    from app.api.routes.forecasts import _champion_alias

    try:
        return _champion_alias(settings)
    except Exception:  # noqa: BLE001 - no registry: no champion
        return None


def _stores_served(settings: Settings, version: str) -> list[int]:
    from app.db import transaction

    with transaction(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (settings.table_forecasts,))
        if not cur.fetchone()[0]:
            return []
        cur.execute(
            f"SELECT DISTINCT store FROM {settings.table_forecasts} WHERE model_name = %s AND model_version = %s",
            (settings.model_name, version),
        )
        return sorted(r[0] for r in cur.fetchall())


def prepare_data(settings: Settings) -> tuple[Settings, str, list[int], str]:
    """(settings to serve, champion version, stores, source): the user's table read-only, else the bench's."""
    version = _champion(settings)
    stores = _stores_served(settings, version) if version else []
    if version and stores:  # (no version: no stores)
        return settings, version, stores, f"{settings.table_forecasts} (read only)"
    bench = settings.model_copy(update={"table_forecasts": BENCH_TABLE, "model_name": BENCH_MODEL})
    from app.db import SQL_DIR, render, transaction

    with transaction(bench) as conn, conn.cursor() as cur:
        cur.execute(render((SQL_DIR / "020_forecasts.sql").read_text(), bench))
    version = _champion(bench)
    if version is None:
        from mlflow import MlflowClient

        os.environ.update(bench.aws_env())
        client = MlflowClient(bench.mlflow_uri)
        try:
            client.create_registered_model(BENCH_MODEL, description="sfmlops bench api: forecast rows only, no artifact")
        except Exception:  # noqa: BLE001 - exists already
            pass
        mv = client.create_model_version(BENCH_MODEL, source=f"s3://{bench.bucket_code}/bench/none", run_id=None)
        client.set_registered_model_alias(BENCH_MODEL, "champion", mv.version)
        version = str(mv.version)
    stores = _stores_served(bench, version)
    if len(stores) < BENCH_STORES:
        import pandas as pd

        from app.forecasting.batch import write_forecasts

        rng = random.Random(7)
        start = pd.Timestamp("2015-08-01")
        rows = []
        for s in range(1, BENCH_STORES + 1):
            level = rng.uniform(3000, 9000)
            for k in range(BENCH_DAYS):
                v = 0.0 if (start + pd.Timedelta(days=k)).dayofweek == 6 else level * (1 + 0.1 * ((k % 7) - 3) / 3)
                rows.append({"store": s, "date": start + pd.Timedelta(days=k), "value": v, "lower": v * 0.8, "upper": v * 1.2})
        write_forecasts(bench, pd.DataFrame(rows), {"model_name": BENCH_MODEL, "model_version": version, "run_id": "bench"})
        stores = _stores_served(bench, version)
    return bench, version, stores, f"{BENCH_TABLE} (bench data, {len(stores)} stores x {BENCH_DAYS} days)"


# --- servers and load ----------------------------------------------------------------------------------
def ensure_vegeta() -> Path:
    """The vegeta binary, built by ``make vegeta`` (go install) when missing."""
    if not VEGETA.is_file():
        if shutil.which("go") is None:
            raise RuntimeError("vegeta needs Go to build (`go install`); install Go or put vegeta at .cache/go-bin/vegeta")
        subprocess.run(["make", "-s", "vegeta"], cwd=PROJECT_ROOT, check=True)
    return VEGETA


def _targets(base: str, key: str, stores: list[int], n: int, path: Path) -> None:
    """``n`` requests (at least one pass over every store), stores shuffled, vegeta's http format."""
    order: list[int] = []
    rng = random.Random(15)
    while len(order) < max(n, len(stores)):
        batch = list(stores)
        rng.shuffle(batch)
        order.extend(batch)
    with path.open("w") as f:
        for s in order:
            f.write(f"GET {base}/v1/stores/{s}/forecast\nX-API-Key: {key}\nAccept: application/json\n\n")


def attack(vegeta: Path, targets: Path, rate: int, duration_s: float, timeout_s: float = 30.0) -> dict[str, Any]:
    """One vegeta attack; latency figures (ms), achieved rate and errors by kind from its results."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.bin"
        subprocess.run(
            [str(vegeta), "attack", f"-rate={rate}/1s", f"-duration={duration_s}s", f"-targets={targets}", "-format=http",
             f"-timeout={timeout_s}s", "-workers=64", "-max-workers=4096", "-keepalive=true", "-connections=10000",
             f"-output={out}"],
            check=True,
        )
        enc = subprocess.run([str(vegeta), "encode", "--to", "json", str(out)], check=True, capture_output=True, text=True)
    lat: list[float] = []
    kinds: dict[str, int] = {}
    first = last = None
    for line in enc.stdout.splitlines():
        r = json.loads(line)
        ts = r["timestamp"]
        first = ts if first is None or ts < first else first
        last = ts if last is None or ts > last else last
        lat.append(r["latency"] / 1e6)
        if r["code"] != 200:
            kind = (r.get("error") or "").split(": ")[-1][:60] or str(r["code"])
            kinds[kind] = kinds.get(kind, 0) + 1
    lat.sort()
    n = len(lat)

    def pct(p: float) -> float:
        return round(lat[min(n - 1, int(p / 100 * n))], 2) if n else float("nan")

    from datetime import datetime

    # n > 1: first and last are set (every line sets both)
    span = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds() if n > 1 and first is not None and last is not None else 0.0
    return {
        "p50_ms": pct(50), "p99_ms": pct(99), "p999_ms": pct(99.9), "max_ms": round(lat[-1], 2) if n else None,
        "achieved_rps": round((n - 1) / span, 1) if span else None, "requests": n,
        "errors": sum(kinds.values()), "errors_by_kind": kinds,
    }


def _server(cmd: list[str], env: dict[str, str], host: str, port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    wait_listening(host, port, proc)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(
    settings: Settings,
    rates: tuple[int, ...] = RATES,
    duration_s: float = 10.0,
    warmup_s: float = 2.0,
    with_lambda: bool = True,
) -> list[dict[str, Any]]:
    """Measure ours and the lean service at each rate (alternating), then Lambda; returns the JSON lines."""
    from app.api.auth import issue_key, revoke_keys

    vegeta = ensure_vegeta()
    served, version, stores, source = prepare_data(settings)
    client = f"bench-api-{uuid.uuid4().hex[:8]}"
    key = issue_key(served, client)
    host = settings.bind_host
    env = {
        **os.environ,
        "SFMLOPS_TABLE_FORECASTS": served.table_forecasts,
        "SFMLOPS_MODEL_NAME": served.model_name,
        "SFMLOPS_API_RATE_LIMIT_PER_MINUTE": str(10**9),  # one client sends the whole load
        "BENCH_LEAN_MODEL": served.model_name,
        "BENCH_LEAN_VERSION": version,
    }
    logdir = settings.logs_dir
    logdir.mkdir(parents=True, exist_ok=True)
    ours_port, lean_port = free_ports(2, host)
    ours_cmd = [sys.executable, "-c", "from app.api.main import run_api; run_api()"]
    lean_cmd = [sys.executable, "-m", "uvicorn", "app.bench.api:lean_app", "--factory", "--host", host, "--port", str(lean_port),
                "--log-level", "warning", "--no-access-log"]
    lines: list[dict[str, Any]] = []
    procs = []
    try:
        cpu = cpu_per_request(served, version, key, stores)  # in this process, before the servers start
        ours = _server(ours_cmd, {**env, "SFMLOPS_API_PORT": str(ours_port)}, host, ours_port, logdir / "bench-api-ours.log")
        procs.append(ours)
        lean = _server(lean_cmd, env, host, lean_port, logdir / "bench-api-lean.log")
        procs.append(lean)
        with tempfile.TemporaryDirectory() as tmp:
            for rate in rates:
                figures = {}
                for name, port in (("ours", ours_port), ("lean", lean_port)):
                    targets = Path(tmp) / f"{name}-{rate}.txt"
                    _targets(f"http://{host}:{port}", key, stores, int(rate * (duration_s + warmup_s)) + 1, targets)
                    attack(vegeta, targets, min(rate, 200), warmup_s)
                    figures[name] = attack(vegeta, targets, rate, duration_s)
                o, b = {**figures["ours"], "cpu_us_per_request": cpu["ours"]}, {**figures["lean"], "cpu_us_per_request": cpu["lean"]}
                lines.append({
                    "bench": "api", "route": "GET /v1/stores/{id}/forecast", "target_rps": rate, "duration_s": duration_s,
                    "data": source, "stores": len(stores), "model": f"{served.model_name} v{version}",
                    **o,
                    "lean": b,
                    "ratio_p50": round(o["p50_ms"] / b["p50_ms"], 2) if b["p50_ms"] else None,
                    "ratio_p99": round(o["p99_ms"] / b["p99_ms"], 2) if b["p99_ms"] else None,
                    "ratio_cpu": round(cpu["ours"] / cpu["lean"], 2),
                    "goal_zero_errors_and_rate": o["errors"] == 0 and (o["achieved_rps"] or 0) >= 0.98 * rate,
                    "goal_within_1_5x": bool(b["p50_ms"] and b["p99_ms"]) and o["p50_ms"] <= 1.5 * b["p50_ms"] and o["p99_ms"] <= 1.5 * b["p99_ms"],
                    **({"goal_p50_le_3ms": o["p50_ms"] <= 3.0} if rate == 500 else {}),
                    "load_avg_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
                })
                print(json.dumps(lines[-1]), flush=True)
        for p in procs:
            _stop(p)
        procs.clear()
        if with_lambda:
            lines.append(bench_lambda(served, key, stores, vegeta))
            print(json.dumps(lines[-1]), flush=True)
    finally:
        for p in procs:
            _stop(p)
        revoke_keys(served, client)
    return lines


# --- Lambda through the emulator's API Gateway ----------------------------------------------------------
def bench_lambda(
    settings: Settings, key: str, stores: list[int], vegeta: Path, rate: int = 50, duration_s: float = 10.0, warmup_s: float = 6.0
) -> dict[str, Any]:
    """Deploy the Lambda zip with boto3 behind an HTTP API; cold first request, then ``rate``/s warm.

    "Warm": ``warmup_s`` ramping up to the rate first (the emulator starts one execution environment per
    concurrent invocation, each a cold start), then ``duration_s`` measured at the rate; the environments alive before and after
    the measured window are counted, so a cold start inside it shows.
    """
    import urllib.request

    zip_path = PROJECT_ROOT / "build" / "bench-lambda.zip"
    t0 = time.perf_counter()
    build = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "lambda" / "build.py"), "--out", str(zip_path)], capture_output=True, text=True, cwd=PROJECT_ROOT
    )
    if not zip_path.is_file():
        return {"bench": "api-lambda", "error": f"lambda/build.py failed: {(build.stdout + build.stderr)[-500:]}"}
    build_s = round(time.perf_counter() - t0, 1)
    s = settings
    lam, gw, iam = s.boto3_client("lambda"), s.boto3_client("apigatewayv2"), s.boto3_client("iam")
    name = f"sfmlops-api-bench-{uuid.uuid4().hex[:8]}"
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    env = {
        "SFMLOPS_PG_HOST": s.pg_host, "SFMLOPS_PG_PORT": str(s.pg_port), "SFMLOPS_PG_DATABASE": s.pg_database,
        "SFMLOPS_PG_USER": s.pg_user, "SFMLOPS_PG_PASSWORD": s.pg_password.get_secret_value(),
        "SFMLOPS_API_KEY_PEPPER": s.api_key_pepper.get_secret_value(), "SFMLOPS_MLFLOW_TRACKING_URI": s.mlflow_uri,
        "SFMLOPS_RAY_ADDRESS": s.ray_jobs_url, "SFMLOPS_TABLE_FORECASTS": s.table_forecasts, "SFMLOPS_MODEL_NAME": s.model_name,
        "SFMLOPS_API_RATE_LIMIT_PER_MINUTE": str(10**9),
    }
    api_id = None
    try:
        fn = lam.create_function(
            FunctionName=name, Runtime="python3.11", Role=role, Handler="handler.handler", Timeout=30, MemorySize=512,
            Code={"ZipFile": zip_path.read_bytes()}, Environment={"Variables": env},
        )
        api_id = gw.create_api(Name=name, ProtocolType="HTTP")["ApiId"]
        integ = gw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=fn["FunctionArn"], PayloadFormatVersion="2.0")
        gw.create_route(ApiId=api_id, RouteKey="$default", Target=f"integrations/{integ['IntegrationId']}")
        gw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
        base = f"http://127.0.0.1:{s.emulator_port}/_aws/execute-api/{api_id}/%24default"
        req = urllib.request.Request(f"{base}/v1/stores/{stores[0]}/forecast", headers={"X-API-Key": key})
        t1 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=120) as resp:
            cold_status = resp.status
            resp.read()
        cold_ms = round((time.perf_counter() - t1) * 1000, 1)
        serial = []  # closed loop, one at a time: what one warm invocation costs through the emulator
        for store in stores[1:21]:
            r = urllib.request.Request(f"{base}/v1/stores/{store}/forecast", headers={"X-API-Key": key})
            t2 = time.perf_counter()
            with urllib.request.urlopen(r, timeout=120) as resp:
                resp.read()
            serial.append((time.perf_counter() - t2) * 1000)
        serial.sort()
        with tempfile.TemporaryDirectory() as tmp:
            targets = Path(tmp) / "lambda.txt"
            _targets(base, key, stores, int(rate * (duration_s + warmup_s)) + 1, targets)
            # Ramp up to the rate: the emulator starts one execution environment (a cold start, ~1.5 s of CPU
            # here) per concurrent invocation, so the full rate at once would start one per request queued
            # behind the first cold starts. A quarter, half, then the full rate builds what the rate needs.
            for step in (max(1, rate // 4), max(1, rate // 2), rate):
                attack(vegeta, targets, step, warmup_s / 3, timeout_s=10.0)
            environments_before = len(_emulator_workers(name))
            measured_from_ms = int(time.time() * 1000)
            warm = attack(vegeta, targets, rate, duration_s, timeout_s=10.0)
        handler_ms, report_ms = _invocation_times(s, name, measured_from_ms)
        return {
            "bench": "api-lambda", "route": "GET /v1/stores/{id}/forecast via API Gateway -> Lambda (MiniStack)",
            "deploy": "boto3 create_function + HTTP API (as tests/api/test_api_emulator_e2e.py)", "zip_build_s": build_s,
            "cold_first_request_ms": cold_ms, "cold_status": cold_status,
            "warm_serial_p50_ms": round(serial[len(serial) // 2], 1), "warm_serial_max_ms": round(serial[-1], 1),
            "warm_target_rps": rate, "warmup_s": warmup_s, **{f"warm_{k}": v for k, v in warm.items()},
            # From the function's log lines of the measured window: our handler's own time per invocation
            # (lambda/handler.py) and the emulator's REPORT Duration (handler + its worker protocol).
            "handler_ms": _figures(handler_ms), "report_duration_ms": _figures(report_ms),
            "execution_environments": {"after_warmup": environments_before, "after": len(_emulator_workers(name))},
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
    except Exception as exc:  # noqa: BLE001 - report, the other lines stand
        return {"bench": "api-lambda", "error": f"{type(exc).__name__}: {exc}"[:800]}
    finally:
        for cleanup in (  # workers first: an emulator still busy with them answers the deletes late
            lambda: _end_emulator_workers(name),
            (lambda: gw.delete_api(ApiId=api_id)) if api_id else None,
            lambda: lam.delete_function(FunctionName=name),
            lambda: iam.delete_role(RoleName=name),
            lambda: _end_emulator_workers(name),  # and any a queued invocation started meanwhile
        ):
            try:
                if cleanup is not None:
                    cleanup()
            except Exception:  # noqa: BLE001 - already gone; the figures (or the error) stand
                pass


def _emulator_workers(function_name: str) -> list[Any]:
    """MiniStack's worker processes (execution environments) of ``function_name``."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if any(f"ministack-lambda-{function_name}-" in part for part in proc.info["cmdline"] or ()):
            found.append(proc)
    return found


def _end_emulator_workers(function_name: str, settle_s: float = 3.0, timeout_s: float = 120.0) -> None:
    """MiniStack runs one worker process per concurrent invocation and keeps them after the function is
    deleted (each holding its database connections): end this function's workers, by process id, until none
    has appeared for ``settle_s`` (invocations the load generator gave up on are still queued in the emulator
    and start new workers after the attack; one bench left 198 of them holding 190 connections)."""
    import psutil

    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        workers = _emulator_workers(function_name)
        if workers:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= settle_s:
            return
        for proc in workers:
            try:
                proc.terminate()
            except psutil.Error:
                pass
        psutil.wait_procs(workers, timeout=5)
        time.sleep(0.5)


def _invocation_times(settings: Settings, function_name: str, since_ms: int) -> tuple[list[float], list[float]]:
    """(handler_ms of our per-invocation lines, REPORT Duration) from the function's log group since ``since_ms``."""
    import re

    logs = settings.boto3_client("logs")
    handler_ms: list[float] = []
    report_ms: list[float] = []
    kwargs: dict[str, Any] = {"logGroupName": f"/aws/lambda/{function_name}", "startTime": since_ms}
    try:
        while True:
            page = logs.filter_log_events(**kwargs)
            for event in page.get("events", []):
                msg = event.get("message", "")
                if msg.startswith('{"sfmlops": "api-invocation"'):
                    handler_ms.append(float(json.loads(msg)["handler_ms"]))
                elif msg.startswith("REPORT RequestId:"):
                    m = re.search(r"\tDuration: ([0-9.]+) ms", msg)
                    if m:
                        report_ms.append(float(m.group(1)))
            token = page.get("nextToken")
            # An emulator may answer the same token again: stop there rather than page forever.
            if not token or not page.get("events") or token == kwargs.get("nextToken"):
                break
            kwargs["nextToken"] = token
    except Exception:  # noqa: BLE001 - no logs: the figures say so (n = 0)
        pass
    return handler_ms, report_ms


def _figures(values: list[float]) -> dict[str, Any]:
    """n, p50, p99 and max of ``values`` (ms)."""
    if not values:
        return {"n": 0}
    v = sorted(values)
    return {"n": len(v), "p50_ms": round(v[len(v) // 2], 2), "p99_ms": round(v[min(len(v) - 1, int(0.99 * len(v)))], 2), "max_ms": round(v[-1], 2)}


if __name__ == "__main__":
    from app.config import get_settings

    run(get_settings())
