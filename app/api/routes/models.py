"""``/v1/models``: registered model versions, aliases and backtest metrics (MLflow REST)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.api.deps import ClientDep, SettingsDep
from app.api.errors import error_responses
from app.api.mlflow_rest import MlflowRest

router = APIRouter(prefix="/v1", tags=["models"])


class ModelVersion(BaseModel):
    """One registered version and the metrics of the run that produced it."""

    version: str
    status: str | None = None
    created_at: datetime | None = None
    run_id: str | None = None
    source: str | None = None
    aliases: list[str] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict, description="Backtest metrics of the model and baselines")


class ModelsResponse(BaseModel):
    """The registered model, its aliases (e.g. champion -> version) and its versions, newest first."""

    name: str
    exists: bool
    aliases: dict[str, str]
    versions: list[ModelVersion]


@router.get("/models", response_model=ModelsResponse, summary="Registered model versions", responses=error_responses(401, 502, 503))
def list_models(
    settings: SettingsDep,
    client: ClientDep,
) -> ModelsResponse:
    """Versions of ``settings.model_name`` with aliases and metrics, read from MLflow."""
    rest = MlflowRest(settings)
    try:
        model = rest.registered_model(settings.model_name)
        if model is None:
            return ModelsResponse(name=settings.model_name, exists=False, aliases={}, versions=[])
        aliases = {a["alias"]: str(a["version"]) for a in model.get("aliases", []) if "alias" in a}
        by_version: dict[str, list[str]] = {}
        for alias, version in aliases.items():
            by_version.setdefault(version, []).append(alias)
        versions = []
        for v in rest.versions(settings.model_name, limit=50):
            run_id = v.get("run_id")
            ts = v.get("creation_timestamp")
            versions.append(
                ModelVersion(
                    version=str(v["version"]),
                    status=v.get("status"),
                    created_at=datetime.fromtimestamp(int(ts) / 1000, tz=UTC) if ts else None,
                    run_id=run_id,
                    source=v.get("source"),
                    aliases=sorted(by_version.get(str(v["version"]), [])),
                    metrics=rest.run_metrics(run_id) if run_id else {},
                )
            )
    finally:
        rest.close()
    return ModelsResponse(name=settings.model_name, exists=True, aliases=aliases, versions=versions)
