"""A small client for the Ray Jobs REST API (no ray import; the Lambda package does not contain ray).

Endpoints used (Ray Jobs API version 3+): ``GET /api/version``, ``POST /api/jobs/``, ``GET /api/jobs/``,
``GET /api/jobs/{id}``, ``GET /api/jobs/{id}/logs``, ``POST /api/jobs/{id}/stop``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from app.api.errors import ApiError


class RayJobNotFound(Exception):
    """Ray does not know the job (never submitted, or the cluster was restarted)."""


class RayJobExists(Exception):
    """Ray already has a job with this submission id (a retried submission reached it before)."""


class RayUnreachable(ApiError):
    """No answer from the Jobs API. ``maybe_received``: the request may have reached Ray (a timeout after the
    connection was made), so its effect is unknown; False when no connection was made at all."""

    def __init__(self, message: str, *, internal: str, maybe_received: bool) -> None:
        super().__init__(503, message, internal=internal)
        self.maybe_received = maybe_received


@dataclass
class RayJobsClient:
    """Talks to the Jobs API of one Ray cluster.

    Args:
        base_url: Dashboard address, e.g. ``http://127.0.0.1:8265``.
        timeout_s: Per-request timeout (reading, writing; connecting gets at least 1 s).
    """

    base_url: str
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        # Connecting gets at least a second whatever the timeout: a refused or unanswered connect is the one
        # failure known not to have reached Ray, so it should not be mistaken for a slow answer.
        timeout = httpx.Timeout(self.timeout_s, connect=max(self.timeout_s, 1.0))
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        """Close the underlying HTTP connections."""
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RayUnreachable(
                "The Ray Jobs API is unavailable; try again later",
                internal=f"Ray Jobs API {method} {path} at {self.base_url} (SFMLOPS_RAY_ADDRESS): {type(exc).__name__}: {exc}",
                maybe_received=not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)),
            ) from exc
        if resp.status_code == 404:
            raise RayJobNotFound(resp.text.strip()[-500:])
        if resp.status_code in (400, 500) and "already exists" in resp.text:  # the agent answers 500
            raise RayJobExists(resp.text.strip()[-500:])
        if resp.status_code >= 400:
            raise ApiError(
                502,
                "The Ray Jobs API refused the request",
                internal=f"Ray Jobs API {method} {path} answered {resp.status_code}: {resp.text.strip()[-500:]}",
            )
        return resp

    def version(self) -> dict[str, Any]:
        """``{"version", "ray_version", "ray_commit", ...}`` of the cluster."""
        return self._request("GET", "/api/version").json()

    def submit(
        self,
        *,
        entrypoint: str,
        submission_id: str,
        runtime_env: dict[str, Any] | None = None,
        metadata: dict[str, str] | None = None,
    ) -> str:
        """Submit a job; returns its submission id.

        Raises:
            RayJobExists: a job with ``submission_id`` exists already (Ray never starts a second one).
        """
        body: dict[str, Any] = {"entrypoint": entrypoint, "submission_id": submission_id}
        if runtime_env:
            body["runtime_env"] = runtime_env
        if metadata:
            body["metadata"] = metadata
        try:
            return self._request("POST", "/api/jobs/", json=body).json()["submission_id"]
        except RayJobExists:
            raise  # the job is on Ray already: not a failed submission
        except Exception as exc:
            from app.monitoring.metrics import ray_submission_failed

            ray_submission_failed(exc)
            raise

    def jobs(self) -> list[dict[str, Any]]:
        """Every job the cluster knows (submission and driver jobs)."""
        return self._request("GET", "/api/jobs/").json()

    def get(self, submission_id: str) -> dict[str, Any]:
        """Job details: ``status``, ``message``, ``start_time``/``end_time`` (ms epoch), ``driver_exit_code``..."""
        return self._request("GET", f"/api/jobs/{submission_id}").json()

    def logs(self, submission_id: str) -> str:
        """The job's driver log so far (Ray answers it whole)."""
        return self._request("GET", f"/api/jobs/{submission_id}/logs").json().get("logs", "")

    def stop(self, submission_id: str) -> bool:
        """Ask Ray to stop the job; True if a stop was initiated."""
        return bool(self._request("POST", f"/api/jobs/{submission_id}/stop").json().get("stopped"))


_clients: dict[tuple[str, float], RayJobsClient] = {}


def client_for(base_url: str, timeout_s: float) -> RayJobsClient:
    """A cached client per (url, timeout) so connections are reused across requests."""
    key = (base_url, timeout_s)
    if key not in _clients:
        _clients[key] = RayJobsClient(base_url, timeout_s)
    return _clients[key]
