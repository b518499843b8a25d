"""``sfmlops bench api``: latency of ``GET /v1/stores/{id}/forecast`` under a fixed request rate.

The API is served by uvicorn (one worker, its own process) on loopback; an open-loop generator sends
requests at a fixed rate over keep-alive HTTP/1.1 connections (new connections are opened when all are
busy, so a slow server cannot slow the sender down). Latency is measured from each request's *scheduled*
send time, so queueing delay counts (no coordinated omission). The same run measures a trivial FastAPI
route (``GET /bench/trivial``, added only to the bench app) as the baseline.

Goal (issue 6): p99 <= 25 ms at 200 rps and <= 2x the trivial route's p99.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import date, timedelta
from typing import Any

from app.config import PROJECT_ROOT, Settings

BENCH_STORE = 99_100  # beyond the Rossmann stores: the seeded rows never mix with real forecasts
BENCH_VERSION = "bench"


def bench_app():  # noqa: ANN201 - uvicorn factory
    """The API plus a trivial route, built from the environment's settings (uvicorn ``--factory``)."""
    from app.api.main import create_app

    app = create_app()

    @app.get("/bench/trivial", include_in_schema=False)
    def trivial() -> dict[str, str]:
        return {"ok": "yes"}

    return app


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _seed(settings: Settings, days: int) -> str:
    """Forecast rows for BENCH_STORE and a fresh API key; returns the key."""
    import psycopg2

    from app.api.auth import issue_key

    t = settings.table_forecasts
    with psycopg2.connect(settings.pg_dsn()) as conn, conn.cursor() as cur:
        cur.execute(f"DELETE FROM {t} WHERE store = %s", (BENCH_STORE,))
        start = date(2015, 6, 14)
        cur.executemany(
            f"INSERT INTO {t} (store, date, value, lower, upper, model_name, model_version, run_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (BENCH_STORE, start + timedelta(days=k), 5000.0 + k, 4500.0 + k, 5500.0 + k, settings.model_name, BENCH_VERSION, "bench")
                for k in range(days)
            ],
        )
    return issue_key(settings, f"bench-{uuid.uuid4().hex[:8]}")


def _unseed(settings: Settings) -> None:
    import psycopg2

    with psycopg2.connect(settings.pg_dsn()) as conn, conn.cursor() as cur:
        cur.execute(f"DELETE FROM {settings.table_forecasts} WHERE store = %s", (BENCH_STORE,))


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def request(self, raw: bytes) -> int:
        self.writer.write(raw)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        if length:
            await self.reader.readexactly(length)
        return status


async def _drive(host: str, port: int, raw: bytes, rate: float, duration_s: float) -> dict[str, Any]:
    """Send ``rate`` requests/s for ``duration_s`` (open loop); returns latency figures in ms."""
    idle: list[_Conn] = []
    latencies: list[float] = []
    errors = 0
    kinds: dict[str, int] = {}
    n = int(rate * duration_s)
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.05

    async def one(i: int) -> None:
        nonlocal errors
        scheduled = t0 + i / rate
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        reused = bool(idle)
        conn = idle.pop() if idle else _Conn(*await asyncio.open_connection(host, port))
        try:
            try:
                status = await conn.request(raw)
            except (OSError, asyncio.IncompleteReadError):
                if not reused:
                    raise
                conn.writer.close()  # the server closed an idle keep-alive connection: retry on a new one
                conn = _Conn(*await asyncio.open_connection(host, port))
                status = await conn.request(raw)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            errors += 1
            kinds[type(exc).__name__] = kinds.get(type(exc).__name__, 0) + 1
            conn.writer.close()
            return
        latencies.append((loop.time() - scheduled) * 1000)
        if status != 200:
            errors += 1
            kinds[str(status)] = kinds.get(str(status), 0) + 1
        idle.append(conn)

    start = loop.time()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = loop.time() - start
    for conn in idle:
        conn.writer.close()
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))], 2) if latencies else float("nan")

    return {
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "max_ms": round(latencies[-1], 2) if latencies else float("nan"),
        "rps": round(len(latencies) / elapsed, 1),
        "requests": n,
        "errors": errors,
        "error_kinds": kinds,
    }


def _wait_ready(host: str, port: int, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {proc.returncode} before serving")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"uvicorn did not listen on {host}:{port} within {timeout_s} s")


def run(settings: Settings, rate: float = 200.0, duration_s: float = 20.0, warmup_s: float = 3.0, days: int = 48) -> dict[str, Any]:
    """Serve the API with uvicorn and measure the forecast route against the trivial route.

    Args:
        settings: Settings of the running stack (Postgres must be up, migrations applied).
        rate: Requests per second sent to each route.
        duration_s: Measured seconds per route.
        warmup_s: Unmeasured seconds per route first (connections, pools, caches).
        days: Forecast days returned per request.

    Returns:
        One dict (the JSON line): figures for both routes and whether the goals are met.
    """
    host = settings.bind_host
    port = _free_port(host)
    key = _seed(settings, days)
    env = {**os.environ, **{f"SFMLOPS_{k.upper()}": str(v) for k, v in {"pg_port": settings.pg_port, "pg_host": settings.pg_host, "pg_database": settings.pg_database, "pg_user": settings.pg_user}.items()}}
    env["SFMLOPS_PG_PASSWORD"] = settings.pg_password.get_secret_value()
    env["SFMLOPS_API_KEY_PEPPER"] = settings.api_key_pepper.get_secret_value()
    env["SFMLOPS_TABLE_FORECASTS"] = settings.table_forecasts
    cmd = [
        sys.executable, "-m", "uvicorn", "app.bench.api:bench_app", "--factory", "--host", host, "--port", str(port),
        "--workers", "1", "--log-level", "warning", "--no-access-log", "--timeout-keep-alive", "75",
    ]
    proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env)
    try:
        _wait_ready(host, port, proc)

        def raw(path: str) -> bytes:
            return (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nX-API-Key: {key}\r\nAccept: application/json\r\n\r\n").encode()

        routes = {"forecast": raw(f"/v1/stores/{BENCH_STORE}/forecast?days={days}"), "trivial": raw("/bench/trivial")}
        results: dict[str, Any] = {}
        for name, req in routes.items():
            asyncio.run(_drive(host, port, req, rate, warmup_s))
            results[name] = asyncio.run(_drive(host, port, req, rate, duration_s))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        _unseed(settings)
    f, t = results["forecast"], results["trivial"]
    return {
        "bench": "api",
        "route": "GET /v1/stores/{id}/forecast",
        "target_rps": rate,
        "duration_s": duration_s,
        "days": days,
        "p50_ms": f["p50_ms"],
        "p99_ms": f["p99_ms"],
        "rps": f["rps"],
        "errors": f["errors"],
        "error_kinds": f["error_kinds"],
        "trivial_p50_ms": t["p50_ms"],
        "trivial_p99_ms": t["p99_ms"],
        "trivial_rps": t["rps"],
        "trivial_errors": t["errors"],
        "trivial_error_kinds": t["error_kinds"],
        "p99_ratio": round(f["p99_ms"] / t["p99_ms"], 2) if t["p99_ms"] else None,
        "goal_p99_le_25ms": f["p99_ms"] <= 25.0,
        "goal_le_2x_trivial": bool(t["p99_ms"]) and f["p99_ms"] <= 2 * t["p99_ms"],
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    import json

    from app.config import get_settings

    print(json.dumps(run(get_settings())))
