"""The sfmlops API (the job-submission middle man) for tasks and sensors: the project's one API client
(``common.api_client``, vendored from ``app/common``) configured from an Airflow connection.

The base URL and key come from the Airflow HTTP connection named by ``api_conn_id`` (default
``sfmlops_api``): ``host`` is the base URL (``http://127.0.0.1:8000`` locally, the API Gateway URL on
AWS), ``password`` is the API key sent as ``X-API-Key``. Errors become Airflow exceptions whose message
says what the API answered: a 4xx fails the task at once (retrying cannot fix a bad request or key);
a 5xx, 429 or connection error raises a retryable error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from sfmlops_dag_utils.common.api_client import KEY_HEADER, ApiClient, ApiProblem


class ApiError(AirflowException):
    """The API answered with an error (retryable: 5xx, 429, unreachable)."""


class ApiRejected(AirflowFailException):
    """The API refused the request (4xx other than 429): fails the task without retries."""


@contextmanager
def airflow_errors() -> Iterator[None]:
    """Turn :class:`ApiProblem` into :class:`ApiError` (retryable) or :class:`ApiRejected` (fails the task)."""
    try:
        yield
    except ApiProblem as problem:
        if problem.retryable:
            raise ApiError(f"API error ({problem.code}): {problem.message}") from problem
        raise ApiRejected(f"API rejected ({problem.code}): {problem.message}") from problem


class SfmlopsApi:
    """The API client of an Airflow connection; every call raises Airflow exceptions (see :func:`airflow_errors`).

    Args:
        client: The shared client (:class:`sfmlops_dag_utils.common.api_client.ApiClient`).
    """

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    @property
    def base_url(self) -> str:
        return self.client.base_url

    @classmethod
    def from_connection(cls, conn_id: str, timeout_s: float = 30.0) -> SfmlopsApi:
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
        return cls(
            ApiClient(
                host,
                conn.password,
                timeout_s=timeout_s,
                user_agent="sfmlops-airflow",
                unreachable_hint=f"Check the host of the Airflow connection {conn_id!r}.",
                key_hint=f"Check the password (API key) of the Airflow connection {conn_id!r}.",
            )
        )

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One API call; returns the decoded JSON body or raises :class:`ApiError` / :class:`ApiRejected`."""
        with airflow_errors():
            resp = self.client.request(method, path, **kwargs)
        try:
            body = resp.json()
        except ValueError as exc:
            raise ApiError(f"API answered {method} {path} with a non-JSON body: {resp.text[:300]!r}") from exc
        return body

    # -- routes ---------------------------------------------------------------------------------
    def submit_training(self, body: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        """``POST /v1/training-jobs`` (a retried task reuses its Idempotency-Key: one job per run)."""
        with airflow_errors():
            return self.client.submit_job(body, idempotency_key)[0]

    def training_job(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/training-jobs/{id}``: the job, its state refreshed from Ray."""
        with airflow_errors():
            return self.client.job(job_id)

    def training_logs(self, job_id: str) -> str:
        """The end of the job's driver log (empty when the API cannot give it)."""
        return self.client.job_log_text(job_id)

    def models(self) -> dict[str, Any]:
        """``GET /v1/models``: registered versions, aliases and backtest metrics."""
        with airflow_errors():
            return self.client.models()


def idempotency_key(dag_id: str, run_id: str, task_id: str) -> str:
    """A key unique to one task of one DAG run, in the API's allowed alphabet."""
    raw = f"airflow:{dag_id}:{run_id}:{task_id}"
    return re.sub(r"[^A-Za-z0-9._:-]", "-", raw)[:128]
