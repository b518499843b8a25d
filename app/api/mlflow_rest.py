"""Read-only MLflow model registry access over its REST API (httpx; mlflow itself is not imported)."""

from __future__ import annotations

import math
from typing import Any

import httpx

from app.api.errors import ApiError
from app.config import Settings
from app.forecasting.registry import CHAMPION, RMSPE_TAG


def no_champion(model_name: str, consequence: str = "") -> ApiError:
    """The one answer of every route that needs the champion when ``models:/<model_name>@champion`` does not exist:
    503 (the service cannot answer until a training has run), with what to do."""
    return ApiError(
        503,
        f"No champion model: models:/{model_name}@{CHAMPION} does not exist yet{consequence}; train first (POST /v1/training-jobs)",
        expose=True,
    )


class MlflowRest:
    """Registry queries against ``settings.mlflow_uri``."""

    def __init__(self, settings: Settings, timeout_s: float | None = None) -> None:
        self.base_url = settings.mlflow_uri.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s or settings.api_upstream_timeout_s,
                                  auth=settings.mlflow_auth())

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any] | None:
        try:
            resp = self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise ApiError(
                503,
                "MLflow is unavailable; try again later",
                internal=f"MLflow {path} at {self.base_url} (SFMLOPS_MLFLOW_TRACKING_URI): {type(exc).__name__}: {exc}",
            ) from exc
        if resp.status_code == 404 or (resp.status_code == 400 and "RESOURCE_DOES_NOT_EXIST" in resp.text):
            return None
        if resp.status_code >= 400:
            raise ApiError(
                502,
                "MLflow answered with an error",
                internal=f"MLflow {path} answered {resp.status_code}: {resp.text.strip()[-300:]}",
            )
        return resp.json()

    def health(self) -> bool:
        """True when the tracking server answers ``/health``."""
        try:
            return self._http.get("/health").status_code == 200
        except httpx.HTTPError:
            return False

    def registered_model(self, name: str) -> dict[str, Any] | None:
        """The registered model (with ``aliases``), or None when it does not exist."""
        data = self._get("/api/2.0/mlflow/registered-models/get", {"name": name})
        return None if data is None else data.get("registered_model")

    def alias_version(self, name: str, alias: str = CHAMPION) -> str | None:
        """The version ``models:/<name>@<alias>`` points to; None when the model or the alias does not exist."""
        model = self.registered_model(name)
        aliases = {a.get("alias"): a.get("version") for a in (model or {}).get("aliases", [])}
        return None if aliases.get(alias) is None else str(aliases[alias])

    def model_version(self, name: str, version: str) -> dict[str, Any] | None:
        """Version ``version`` of ``name`` (with its ``run_id`` and ``tags``), or None when it does not exist."""
        data = self._get("/api/2.0/mlflow/model-versions/get", {"name": name, "version": version})
        return None if data is None else data.get("model_version")

    def versions(self, name: str, limit: int = 100) -> list[dict[str, Any]]:
        """Versions of ``name``, newest first."""
        data = self._get(
            "/api/2.0/mlflow/model-versions/search",
            {"filter": f"name='{name}'", "max_results": limit, "order_by": "version_number DESC"},
        )
        versions = (data or {}).get("model_versions", [])
        return sorted(versions, key=lambda v: int(v.get("version", 0)), reverse=True)

    def backtest_rmspes(self, name: str) -> dict[str, float]:
        """``{version: backtest RMSPE}`` of ``name`` from the ``backtest_rmspe`` tag the champion gate sets on
        each version (:data:`app.forecasting.registry.RMSPE_TAG`); versions without the tag are left out."""
        out: dict[str, float] = {}
        for v in self.versions(name, limit=1000):
            tags = {t.get("key"): t.get("value") for t in v.get("tags") or []}
            try:
                value = float(tags[RMSPE_TAG])
            except (KeyError, TypeError, ValueError):
                continue
            if not math.isnan(value):
                out[str(v["version"])] = value
        return out

    def run_metrics(self, run_id: str) -> dict[str, float]:
        """Latest value of every metric logged in ``run_id`` (empty if the run is gone)."""
        data = self._get("/api/2.0/mlflow/runs/get", {"run_id": run_id})
        metrics = ((data or {}).get("run") or {}).get("data", {}).get("metrics", [])
        return {m["key"]: m["value"] for m in metrics if "key" in m}
