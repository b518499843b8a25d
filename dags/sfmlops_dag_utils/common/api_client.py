"""The one client of the sfmlops API (``X-API-Key``), used by the UI, the demo and the Airflow DAGs.

Every failure becomes :class:`ApiProblem`: the HTTP status (0 when there was no answer), the API's error
code and a message that says what the API answered, read by :func:`error_message` from the API's one
error shape ``{"error": {"code", "message", "details": [{"field", "message"}]}}``. Callers add their own
hint of what to check (a setting, an Airflow connection) through ``unreachable_hint`` and ``key_hint``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from typing import Any

import httpx

from .jobs import JobState

KEY_HEADER = "X-API-Key"
TRAINING_JOBS = "/v1/training-jobs"


class ApiProblem(Exception):
    """An API call that did not succeed.

    Attributes:
        status: HTTP status, or 0 when the API could not be reached (or did not answer in time).
        code: The API's machine-readable error code (``unreachable`` or ``timeout`` without an answer).
        message: What happened, for people.
        retry_after: Seconds to wait (429 only, when the API said).
    """

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Retrying later may help: no answer, 429, or a server error (a 4xx is the request's fault)."""
        return self.status == 0 or self.status == 429 or self.status >= 500

    @property
    def title(self) -> str:
        """A short heading for a message box."""
        return {
            0: "API unreachable",
            401: "Not authorised",
            403: "Forbidden",
            404: "Not found",
            409: "Conflict",
            413: "Request too large",
            422: "Invalid request",
            429: "Too many requests",
        }.get(self.status, "API unavailable" if self.status >= 500 else f"API error {self.status}")


def error_message(resp: httpx.Response) -> tuple[str, str]:
    """``(code, message)`` of an error answer: the API's error shape (details appended), else the body's start."""
    try:
        body = resp.json()
    except ValueError:
        return str(resp.status_code), resp.text.strip()[:300] or resp.reason_phrase
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return str(resp.status_code), resp.text.strip()[:300] or resp.reason_phrase
    message = str(err.get("message") or "").strip() or resp.reason_phrase
    details = [
        f"{d.get('field')}: {d.get('message')}" for d in err.get("details") or [] if isinstance(d, dict) and d.get("field")
    ]
    if details:
        message = f"{message} ({'; '.join(details)})"
    return str(err.get("code") or resp.status_code), message


class ApiClient:
    """Calls the API at ``base_url`` with ``api_key``.

    Args:
        base_url: The API's address (``http://127.0.0.1:8000``, or an API Gateway invoke URL).
        api_key: Sent as ``X-API-Key``.
        timeout_s: Per-request timeout.
        user_agent: Who is calling (shows in the API's logs).
        unreachable_hint: Appended to the message when the API cannot be reached (what to check).
        key_hint: Appended to the message of a 401 (where the key comes from).
        transport: An httpx transport (e.g. ``httpx.ASGITransport`` of the app in tests).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 30.0,
        user_agent: str = "sfmlops",
        unreachable_hint: str = "",
        key_hint: str = "",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.unreachable_hint = unreachable_hint
        self.key_hint = key_hint
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout_s,
            headers={KEY_HEADER: api_key, "User-Agent": user_agent, "Accept": "application/json"},
            transport=transport,
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call; returns the (2xx/3xx) response or raises :class:`ApiProblem`."""
        hint = f" {self.unreachable_hint}" if self.unreachable_hint else ""
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ApiProblem(
                0, "timeout", f"The API at {self.base_url} did not answer {method} {path} in time ({type(exc).__name__}).{hint}"
            ) from exc
        except httpx.HTTPError as exc:
            raise ApiProblem(
                0, "unreachable", f"Cannot reach the API at {self.base_url} ({method} {path}: {type(exc).__name__}: {exc}).{hint}"
            ) from exc
        if resp.status_code < 400:
            return resp
        code, message = error_message(resp)
        message = f"{method} {path} answered {resp.status_code}: {message}"
        if resp.status_code == 401 and self.key_hint:
            message = f"{message}. {self.key_hint}"
        retry_after = None
        if resp.status_code == 429:
            retry = resp.headers.get("Retry-After", "")
            retry_after = int(retry) if retry.isdigit() else None
            if retry_after is not None:
                message = f"{message}. Try again in {retry_after} s."
        raise ApiProblem(resp.status_code, code, message, retry_after=retry_after)

    def get(self, path: str, **params: Any) -> Any:
        """``GET path?params`` (``None`` values left out); the decoded JSON body."""
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None}).json()

    # --- routes -------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``GET /healthz`` (its body also when it answers 503: ``status`` down and the failing checks)."""
        try:
            return self.get("/healthz")
        except ApiProblem as exc:
            if exc.status == 503:
                return {"status": "down", "checks": {}, "message": exc.message}
            raise

    def stores(self) -> list[dict[str, Any]]:
        """``GET /v1/stores`` items."""
        return self.get("/v1/stores")["items"]

    def store_sales(self, store: int, days: int) -> dict[str, Any]:
        """``GET /v1/stores/{store}/sales?days=``."""
        return self.get(f"/v1/stores/{int(store)}/sales", days=days)

    def store_forecast(self, store: int, days: int | None = None) -> dict[str, Any]:
        """``GET /v1/stores/{store}/forecast?days=``."""
        return self.get(f"/v1/stores/{int(store)}/forecast", days=days)

    def store_plan(self, store: int, start: date | str | None = None, days: int | None = None) -> dict[str, Any]:
        """``GET /v1/stores/{store}/plan?start=&days=``: the store's current planning data (``days``: the planned days)."""
        return self.get(f"/v1/stores/{int(store)}/plan", start=None if start is None else str(start), days=days)

    def chain_forecast(self, days: int | None = None) -> dict[str, Any]:
        """``GET /v1/chain/forecast?days=``."""
        return self.get("/v1/chain/forecast", days=days)

    def backtest_errors(self, limit: int = 20, version: str | None = None) -> dict[str, Any]:
        """``GET /v1/chain/backtest-errors``."""
        return self.get("/v1/chain/backtest-errors", limit=limit, version=version)

    def models(self) -> dict[str, Any]:
        """``GET /v1/models``: registered versions, aliases and backtest metrics."""
        return self.get("/v1/models")

    def jobs(self, limit: int = 20, state: JobState | str | None = None) -> list[dict[str, Any]]:
        """``GET /v1/training-jobs`` items, newest first."""
        return self.get(TRAINING_JOBS, limit=limit, state=None if state is None else str(state))["items"]

    def job(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/training-jobs/{id}``: the job, its state refreshed from Ray."""
        return self.get(f"{TRAINING_JOBS}/{job_id}")

    def job_logs(self, job_id: str, tail: int | None = None) -> dict[str, Any]:
        """``GET /v1/training-jobs/{id}/logs?tail=``: one page of the driver log (``logs``, offsets, ``state``)."""
        return self.get(f"{TRAINING_JOBS}/{job_id}/logs", tail=tail)

    def job_log_text(self, job_id: str, tail: int | None = None) -> str:
        """The end of the job's driver log, or ``""`` when the API cannot give it (best effort, for messages)."""
        try:
            return str(self.job_logs(job_id, tail=tail).get("logs") or "")
        except ApiProblem:
            return ""

    def submit_job(self, body: dict[str, Any], idempotency_key: str) -> tuple[dict[str, Any], bool]:
        """``POST /v1/training-jobs`` with an ``Idempotency-Key`` (a retry with the same key starts no second job).

        Returns:
            ``(job, replayed)``; ``replayed`` is True when the key had already started this job.
        """
        resp = self.request("POST", TRAINING_JOBS, json=body, headers={"Idempotency-Key": idempotency_key})
        return resp.json(), resp.status_code == 200

    def stop_job(self, job_id: str) -> dict[str, Any]:
        """``POST /v1/training-jobs/{id}/stop``: ``{"stopped", "job"}``."""
        return self.request("POST", f"{TRAINING_JOBS}/{job_id}/stop").json()

    def wait_for_job(
        self,
        job_id: str,
        timeout_s: float,
        poll_s: float = 5.0,
        on_poll: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll the job until it finishes (or ``timeout_s`` passes); returns its last record.

        ``on_poll`` sees every record read (e.g. to show progress).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if on_poll is not None:
                on_poll(job)
            if JobState(job["state"]).finished or time.monotonic() >= deadline:
                return job
            time.sleep(poll_s)
