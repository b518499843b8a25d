"""``GET /healthz``: ok / not ok for everyone; each dependency's detail only for a valid API key.

Without a key (or with an invalid one) the answer says only whether the API and each of its dependencies
work - no addresses, versions or error text - and is computed at most every ``PUBLIC_CACHE_S`` per process,
so an anonymous flood cannot multiply probes of Postgres, Ray and MLflow. With a valid ``X-API-Key`` the
probes run afresh and each check carries its detail and latency (and the request counts against the key's
rate limit; over it, the public answer is returned).
"""

from __future__ import annotations

import threading
import time
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from app.api import auth, db
from app.api.deps import SettingsDep
from app.api.errors import ApiError
from app.api.mlflow_rest import MlflowRest
from app.api.ray_jobs import RayJobsClient
from app.config import Settings

router = APIRouter(tags=["health"])
PROBE_TIMEOUT_S = 2.0
#: Seconds an anonymous health answer is reused by this process.
PUBLIC_CACHE_S = 2.0
_public_lock = threading.Lock()


class Check(BaseModel):
    """Result of probing one dependency (``detail`` and ``latency_ms`` only for a valid API key)."""

    ok: bool
    detail: str | None = Field(None, description="What answered, or why not (only with a valid X-API-Key)")
    latency_ms: float | None = Field(None, description="Probe time (only with a valid X-API-Key)")


class Health(BaseModel):
    """ok: everything answers; degraded: the database answers but Ray or MLflow does not; down: no database."""

    status: Literal["ok", "degraded", "down"]
    checks: dict[str, Check] = Field(..., description="database, ray, mlflow")


def _timed(fn) -> Check:
    start = time.perf_counter()
    try:
        ok, detail = fn()
    except ApiError as exc:
        ok, detail = False, exc.message + (f" [{exc.internal}]" if exc.internal else "")
    except Exception as exc:  # noqa: BLE001 - a health probe reports, never raises
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    return Check(ok=ok, detail=detail, latency_ms=round((time.perf_counter() - start) * 1000, 2))


def probe(settings: Settings) -> Health:
    """Probe Postgres, the Ray Jobs API and MLflow, with details."""

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
    else:
        status = "ok" if all(c.ok for c in checks.values()) else "degraded"
    return Health(status=status, checks=checks)


def _public(request: Request, settings: Settings) -> Health:
    with _public_lock:
        hit = getattr(request.app.state, "public_health", None)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
    full = probe(settings)
    public = Health(status=full.status, checks={name: Check(ok=c.ok) for name, c in full.checks.items()})
    with _public_lock:
        request.app.state.public_health = (time.monotonic() + PUBLIC_CACHE_S, public)
    return public


def _key_holder(request: Request, settings: Settings) -> bool:
    key = request.headers.get(auth.KEY_HEADER)
    if not key:
        return False
    try:
        client = auth.cached_client(settings, key) or auth.authenticate(settings, key)
        limiter = getattr(request.app.state, "rate_limiter", None)
        if limiter is not None:
            limiter.check(client.id, request.method, "/healthz")
    except ApiError:
        return False
    return True


@router.get(
    "/healthz",
    response_model=Health,
    response_model_exclude_none=True,
    summary="Health of the API and its dependencies",
    responses={503: {"model": Health, "description": "database down"}},
)
def healthz(request: Request, settings: SettingsDep, response: Response) -> Health:
    """200 when the database answers (status ok or degraded), 503 when it does not (down).

    Everyone gets ok / not ok per dependency; a valid ``X-API-Key`` adds each probe's detail and latency.
    """
    health = probe(settings) if _key_holder(request, settings) else _public(request, settings)
    if health.status == "down":
        response.status_code = 503
    return health
