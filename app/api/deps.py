"""FastAPI dependencies as ``Annotated`` aliases: settings, the authenticated (and rate-limited) client, the Ray client."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from app.api import auth
from app.api.ray_jobs import RayJobsClient, client_for
from app.config import Settings

_api_key_header = APIKeyHeader(
    name=auth.KEY_HEADER, auto_error=False, description="API key issued by `sfmlops api-key create NAME`"
)


async def get_app_settings(request: Request) -> Settings:
    """The settings the app was created with (async: no thread hop for a dict lookup)."""
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


async def require_client(
    request: Request, settings: SettingsDep, key: Annotated[str | None, Security(_api_key_header)]
) -> auth.Client:
    """The client identified by the ``X-API-Key`` header (401 otherwise), within its rate limits (429).

    A key this process validated is answered from memory, checked against the key-set version, which is
    re-read in the background (:func:`app.api.auth.key_set_version`: no request waits for it while it is
    fresh); Postgres is asked in a worker thread only for a key not validated under the current version.
    Every authenticated route then counts against the client's per-minute limits (:mod:`app.api.limits`).
    """
    limiter = getattr(request.app.state, "rate_limiter", None)
    if key and limiter is not None and not auth.known_key(settings, key):
        limiter.check_lookup()  # unknown keys cost a query each: bounded per process
    version = await auth.key_set_version(settings) if key and len(key) <= 256 else None
    client = auth.cached_client(settings, key, version) if version is not None else None
    if client is None:
        client = await run_in_threadpool(auth.authenticate, settings, key, version)
    if limiter is not None:
        route = request.scope.get("route")
        limiter.check(client.id, request.method, getattr(route, "path", None))
    return client


ClientDep = Annotated[auth.Client, Depends(require_client)]


async def get_ray(settings: SettingsDep) -> RayJobsClient:
    """The Ray Jobs REST client for ``settings.ray_jobs_url`` (timeout ``settings.api_ray_timeout_s``)."""
    return client_for(settings.ray_jobs_url, settings.api_ray_timeout_s)


RayDep = Annotated[RayJobsClient, Depends(get_ray)]
