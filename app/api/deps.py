"""FastAPI dependencies and shared parameters as ``Annotated`` aliases: settings, the authenticated (and rate-limited)
client, the Ray client, the ``{store_id}`` path parameter."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import APIKeyHeader

from app.api import auth
from app.api.ray_jobs import RayJobsClient, client_for
from app.config import Settings


async def get_app_settings(request: Request) -> Settings:
    """The settings the app was created with (async: no thread hop for a dict lookup)."""
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]

#: The ``{store_id}`` path parameter of the ``/v1/stores/{store_id}/...`` routes (forecast, sales, plan).
StoreId = Annotated[int, Path(ge=1, le=100_000, description="Store id")]


class _ClientByKey(APIKeyHeader):
    """The ``X-API-Key`` security scheme (as the schema shows it) that resolves the key to its client.

    One dependency, no sub-dependencies (FastAPI solves each sub-dependency, cached or not, per request):
    the header, the settings and the rate limiter are read straight from the request.
    """

    async def __call__(self, request: Request) -> auth.Client:  # type: ignore[override]
        """The client identified by the ``X-API-Key`` header (401 otherwise), within its rate limits (429).

        A key this process validated is answered from memory, checked against the key-set version, which is
        re-read in the background (:func:`app.api.auth.key_set_version`: no request waits for it while it is
        fresh); Postgres is asked in a worker thread only for a key not validated under the current version,
        and such lookups of keys the process does not know count against one shared bucket first. Every
        authenticated route then counts against the client's per-minute limits (:mod:`app.api.limits`).
        """
        state = request.app.state
        limiter = getattr(state, "rate_limiter", None)
        key = request.headers.get(auth.KEY_HEADER)
        client = await auth.request_client(state.settings, key, None if limiter is None else limiter.check_lookup)
        if limiter is not None:
            scope = request.scope
            limiter.check(client.id, scope["method"], getattr(scope.get("route"), "path", None))
        return client


require_client = _ClientByKey(
    name=auth.KEY_HEADER,
    scheme_name="APIKeyHeader",
    auto_error=False,
    description="API key issued by `sfmlops api-key create NAME`",
)
ClientDep = Annotated[auth.Client, Depends(require_client)]


async def get_ray(settings: SettingsDep) -> RayJobsClient:
    """The Ray Jobs REST client for ``settings.ray_jobs_url`` (timeout ``settings.api_ray_timeout_s``)."""
    return client_for(settings.ray_jobs_url, settings.api_ray_timeout_s)


RayDep = Annotated[RayJobsClient, Depends(get_ray)]
