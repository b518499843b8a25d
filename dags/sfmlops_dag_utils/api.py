"""A small client of the sfmlops API (the job-submission middle man), for tasks and sensors.

The base URL and key come from the Airflow HTTP connection named by ``api_conn_id`` (default
``sfmlops_api``): ``host`` is the base URL (``http://127.0.0.1:8000`` locally, the API Gateway URL on
AWS), ``password`` is the API key sent as ``X-API-Key``. Errors become Airflow exceptions whose message
says what the API answered: a 4xx fails the task at once (retrying cannot fix a bad request or key);
a 5xx, 429 or connection error raises a retryable error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import requests
from airflow.sdk.exceptions import AirflowException, AirflowFailException

KEY_HEADER = "X-API-Key"


class ApiError(AirflowException):
    """The API answered with an error (retryable: 5xx, 429, unreachable)."""


class ApiRejected(AirflowFailException):
    """The API refused the request (4xx other than 429): fails the task without retries."""


def _describe(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:500] or resp.reason
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        details = "; ".join(
            f"{d.get('field') or '-'}: {d.get('message')}" for d in err.get("details") or [] if isinstance(d, dict)
        )
        return f"{err.get('code', '')}: {err.get('message', '')}" + (f" ({details})" if details else "")
    return json.dumps(body)[:500]


@dataclass
class SfmlopsApi:
    """Calls the API with the key of the connection."""

    base_url: str
    api_key: str
    timeout_s: float = 30.0

    @classmethod
    def from_connection(cls, conn_id: str, timeout_s: float = 30.0) -> "SfmlopsApi":
        """Build the client from an Airflow connection (looked up now, i.e. at run time, through the Task SDK:
        environment ``AIRFLOW_CONN_*``, a secrets backend, or the Execution API - never the metadata database)."""
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
        extra = conn.extra_dejson or {}
        host = (extra.get("base_url") or conn.host or "").strip()
        if not host:
            raise ApiRejected(f"Airflow connection {conn_id!r} has no host: set it to the API base URL")
        if "://" not in host:
            scheme = "https" if "https" in (conn.conn_type or "", conn.schema or "") else "http"
            host = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
        elif conn.port and host.count(":") == 1:
            host = f"{host}:{conn.port}"
        if not conn.password:
            raise ApiRejected(f"Airflow connection {conn_id!r} has no password: set it to the API key ({KEY_HEADER})")
        return cls(base_url=host.rstrip("/"), api_key=conn.password, timeout_s=timeout_s)

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One API call; returns the decoded JSON body or raises :class:`ApiError` / :class:`ApiRejected`."""
        url = f"{self.base_url}{path}"
        headers = {KEY_HEADER: self.api_key, "Accept": "application/json", **kwargs.pop("headers", {})}
        try:
            resp = requests.request(method, url, headers=headers, timeout=self.timeout_s, **kwargs)
        except requests.RequestException as exc:
            raise ApiError(f"API unreachable: {method} {url} failed: {exc}") from exc
        if resp.status_code == 429:
            raise ApiError(
                f"API rate limit: {method} {path} answered 429 (Retry-After {resp.headers.get('Retry-After', '?')}s): "
                f"{_describe(resp)}"
            )
        if 400 <= resp.status_code < 500:
            raise ApiRejected(f"API rejected {method} {path} with {resp.status_code} {_describe(resp)}")
        if resp.status_code >= 500:
            raise ApiError(f"API error: {method} {path} answered {resp.status_code} {_describe(resp)}")
        try:
            return resp.json()
        except ValueError as exc:
            raise ApiError(f"API answered {method} {path} with non-JSON body: {resp.text[:300]!r}") from exc

    # -- routes ---------------------------------------------------------------------------------
    def submit_training(self, body: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        """``POST /v1/training-jobs`` (a retried task reuses its Idempotency-Key: one job per run)."""
        return self.request("POST", "/v1/training-jobs", json=body, headers={"Idempotency-Key": idempotency_key})

    def training_job(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/training-jobs/{id}``: the job, its state refreshed from Ray."""
        return self.request("GET", f"/v1/training-jobs/{job_id}")

    def training_logs(self, job_id: str) -> str:
        """``GET /v1/training-jobs/{id}/logs``: the driver log (empty on error)."""
        try:
            return str(self.request("GET", f"/v1/training-jobs/{job_id}/logs").get("logs") or "")
        except AirflowException:
            return ""

    def models(self) -> dict[str, Any]:
        """``GET /v1/models``: registered versions, aliases and backtest metrics."""
        return self.request("GET", "/v1/models")


def idempotency_key(dag_id: str, run_id: str, task_id: str) -> str:
    """A key unique to one task of one DAG run, in the API's allowed alphabet."""
    import re

    raw = f"airflow:{dag_id}:{run_id}:{task_id}"
    return re.sub(r"[^A-Za-z0-9._:-]", "-", raw)[:128]
