"""FastAPI dependencies as ``Annotated`` aliases: settings, the authenticated client, the Ray client."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from starlette.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader

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


async def require_client(settings: SettingsDep, key: Annotated[str | None, Security(_api_key_header)]) -> auth.Client:
    """The client identified by the ``X-API-Key`` header (401 otherwise).

    A recently seen key is answered from the in-process cache; otherwise Postgres is asked in a worker thread.
    """
    cached = auth.cached_client(settings, key)
    if cached is not None:
        return cached
    return await run_in_threadpool(auth.authenticate, settings, key)


ClientDep = Annotated[auth.Client, Depends(require_client)]


async def get_ray(settings: SettingsDep) -> RayJobsClient:
    """The Ray Jobs REST client for ``settings.ray_jobs_url``."""
    return client_for(settings.ray_jobs_url, settings.api_upstream_timeout_s)


RayDep = Annotated[RayJobsClient, Depends(get_ray)]
