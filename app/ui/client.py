"""The UI's only way out: a small HTTP client for the sfmlops API (``X-API-Key`` from settings).

Every failure becomes :class:`ApiProblem` with a message written for an operator (what happened, which
setting to check), so the pages never show a stack trace.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from app.config import Settings


class ApiProblem(Exception):
    """An API call that did not succeed, described for people.

    Attributes:
        status: HTTP status, or 0 when the API could not be reached.
        code: The API's machine-readable error code (``unreachable`` when there was no answer).
        message: What to show on the page.
        retry_after: Seconds to wait (429 only).
    """

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def title(self) -> str:
        """A short heading for the message box."""
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


def _api_message(resp: httpx.Response) -> tuple[str, str]:
    """``(code, message)`` from the API's error shape, or a plain fallback."""
    try:
        err = resp.json().get("error") or {}
        message = str(err.get("message") or "").strip()
        details = [f"{d.get('field')}: {d.get('message')}" for d in err.get("details") or [] if d.get("field")]
        if details:
            message = f"{message} ({'; '.join(details)})"
        return str(err.get("code") or resp.status_code), message or resp.reason_phrase
    except (ValueError, AttributeError):
        return str(resp.status_code), (resp.text.strip()[:300] or resp.reason_phrase)


class ApiClient:
    """Calls the API at ``settings.api_base_url`` with ``settings.api_key``."""

    def __init__(self, settings: Settings, transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = settings.api_base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=settings.ui_api_timeout_s,
            headers={"X-API-Key": settings.api_key.get_secret_value(), "User-Agent": "sfmlops-ui"},
            transport=transport,
        )

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ApiProblem(0, "timeout", f"The API at {self.base_url} did not answer in time ({type(exc).__name__}).") from exc
        except httpx.HTTPError as exc:
            raise ApiProblem(
                0,
                "unreachable",
                f"Cannot reach the API at {self.base_url}: is it running (`sfmlops api`)? "
                f"Check SFMLOPS_API_URL / SFMLOPS_API_PORT. ({type(exc).__name__})",
            ) from exc
        if resp.status_code < 400:
            return resp
        code, message = _api_message(resp)
        if resp.status_code == 401:
            message = f"The API rejected the UI's key: {message}. Set SFMLOPS_API_KEY to a key issued with `sfmlops api-key create NAME`."
        elif resp.status_code == 429:
            retry = resp.headers.get("Retry-After")
            seconds = int(retry) if retry and retry.isdigit() else None
            suffix = f" Try again in {seconds} s." if seconds is not None else ""
            raise ApiProblem(429, code, f"{message}.{suffix}".replace("..", "."), retry_after=seconds)
        raise ApiProblem(resp.status_code, code, message)

    def _get(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, params={k: v for k, v in params.items() if v is not None}).json()

    # --- routes -------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``GET /healthz`` (its body also on 503)."""
        try:
            return self._get("/healthz")
        except ApiProblem as exc:
            if exc.status == 503:
                return {"status": "down", "checks": {}, "message": exc.message}
            raise

    def stores(self) -> list[dict[str, Any]]:
        """``GET /v1/stores`` items."""
        return self._get("/v1/stores")["items"]

    def store_sales(self, store: int, days: int) -> dict[str, Any]:
        """``GET /v1/stores/{store}/sales?days=``."""
        return self._get(f"/v1/stores/{int(store)}/sales", days=days)

    def store_forecast(self, store: int, days: int | None = None) -> dict[str, Any]:
        """``GET /v1/stores/{store}/forecast?days=``."""
        return self._get(f"/v1/stores/{int(store)}/forecast", days=days)

    def chain_forecast(self, days: int | None = None) -> dict[str, Any]:
        """``GET /v1/chain/forecast?days=``."""
        return self._get("/v1/chain/forecast", days=days)

    def backtest_errors(self, limit: int = 20, version: str | None = None) -> dict[str, Any]:
        """``GET /v1/chain/backtest-errors``."""
        return self._get("/v1/chain/backtest-errors", limit=limit, version=version)

    def models(self) -> dict[str, Any]:
        """``GET /v1/models``."""
        return self._get("/v1/models")

    def jobs(self, limit: int = 20) -> list[dict[str, Any]]:
        """``GET /v1/training-jobs`` items, newest first."""
        return self._get("/v1/training-jobs", limit=limit)["items"]

    def job(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/training-jobs/{id}``."""
        return self._get(f"/v1/training-jobs/{job_id}")

    def job_logs(self, job_id: str, tail: int = 200) -> dict[str, Any]:
        """``GET /v1/training-jobs/{id}/logs?tail=``."""
        return self._get(f"/v1/training-jobs/{job_id}/logs", tail=tail)

    def start_job(self, kind: str, store: int | None, idempotency_key: str | None = None) -> tuple[dict[str, Any], bool]:
        """``POST /v1/training-jobs`` with an ``Idempotency-Key``.

        Returns:
            ``(job, replayed)``; ``replayed`` is True when the key had already started this job.
        """
        body: dict[str, Any] = {"kind": kind}
        if store is not None:
            body["store"] = int(store)
        key = idempotency_key or f"ui-{uuid.uuid4().hex}"
        resp = self._request("POST", "/v1/training-jobs", json=body, headers={"Idempotency-Key": key})
        return resp.json(), resp.status_code == 200

    def stop_job(self, job_id: str) -> dict[str, Any]:
        """``POST /v1/training-jobs/{id}/stop``."""
        return self._request("POST", f"/v1/training-jobs/{job_id}/stop").json()
