"""``GET /healthz``: no auth; reports the API's dependencies."""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from app.api import db
from app.api.deps import SettingsDep
from app.api.errors import ApiError
from app.api.mlflow_rest import MlflowRest
from app.api.ray_jobs import RayJobsClient

router = APIRouter(tags=["health"])
PROBE_TIMEOUT_S = 2.0


class Check(BaseModel):
    """Result of probing one dependency."""

    ok: bool
    detail: str
    latency_ms: float


class Health(BaseModel):
    """ok: everything answers; degraded: the database answers but Ray or MLflow does not; down: no database."""

    status: Literal["ok", "degraded", "down"]
    checks: dict[str, Check] = Field(..., description="database, ray, mlflow")


def _timed(fn) -> Check:  # noqa: ANN001
    start = time.perf_counter()
    try:
        ok, detail = fn()
    except ApiError as exc:
        ok, detail = False, exc.message
    except Exception as exc:  # noqa: BLE001 - a health probe reports, never raises
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    return Check(ok=ok, detail=detail, latency_ms=round((time.perf_counter() - start) * 1000, 2))


@router.get("/healthz", response_model=Health, summary="Health of the API and its dependencies", responses={503: {"model": Health, "description": "database down"}})
def healthz(settings: SettingsDep, response: Response) -> Health:
    """Probe Postgres, the Ray Jobs API and MLflow; 503 when the database is down."""

    def database() -> tuple[bool, str]:
        with db.connection(settings) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
        return True, f"{settings.pg_host}:{settings.pg_port}/{settings.pg_database}"

    def ray() -> tuple[bool, str]:
        client = RayJobsClient(settings.ray_jobs_url, PROBE_TIMEOUT_S)
        try:
            info = client.version()
        finally:
            client.close()
        return True, f"{settings.ray_jobs_url} ray {info.get('ray_version')}"

    def mlflow() -> tuple[bool, str]:
        rest = MlflowRest(settings, PROBE_TIMEOUT_S)
        try:
            ok = rest.health()
        finally:
            rest.close()
        return ok, settings.mlflow_uri if ok else f"{settings.mlflow_uri} does not answer /health"

    checks = {"database": _timed(database), "ray": _timed(ray), "mlflow": _timed(mlflow)}
    if not checks["database"].ok:
        status = "down"
        response.status_code = 503
    else:
        status = "ok" if all(c.ok for c in checks.values()) else "degraded"
    return Health(status=status, checks=checks)
