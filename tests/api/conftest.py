"""Fixtures for the API tests: a migrated database and API keys for three clients."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg2
import pytest
from isolated_support import drop_isolated, isolated_settings

from app.config import Settings
from app.db import connect


# --- integration fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def api_settings(request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings of the running local stack (the shared ``stack`` fixture when present) with every table of this
    session's own (``isolated_support``: clients, keys, jobs, forecasts, ...; migrated, dropped at the end), so the
    jobs and keys the API tests create never reach the tables a user's stack serves.

    Test-only knobs: noop jobs enabled, small limits so that 429 is reachable.
    """
    try:
        base: Settings = request.getfixturevalue("stack")
    except pytest.FixtureLookupError:
        base = Settings()
    try:
        connect(base).close()
    except psycopg2.OperationalError as exc:
        pytest.fail(f"Postgres not reachable at {base.pg_host}:{base.pg_port}: {exc}")
    settings = isolated_settings(
        base, "api", api_test_jobs=True, api_max_concurrent_jobs=2, api_max_jobs_per_hour=50, api_max_body_bytes=4096
    )
    yield settings
    from app.api import db as api_db

    api_db.close_pools()
    drop_isolated(settings)


@pytest.fixture(scope="session")
def keys(api_settings: Settings) -> dict[str, str]:
    """Fresh API keys for two clients, alice and bob, unique to this test session."""
    from app.api.auth import issue_key

    suffix = uuid.uuid4().hex[:8]
    return {who: issue_key(api_settings, f"test-{who}-{suffix}") for who in ("alice", "bob", "carol")}


def _champion_model():
    import mlflow.pyfunc
    import pandas as pd

    class Model(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            out = pd.DataFrame({"store": model_input["store"], "date": model_input["date"]})
            out["value"] = 100.0 * model_input["store"] + model_input["open"]
            out["lower"] = out["value"] - 5
            out["upper"] = out["value"] + 5
            return out

    return Model()


@pytest.fixture(scope="session")
def registry(api_settings: Settings) -> Settings:
    """A registered model unique to this run, versions 1 (challenger) and 2 (champion) with metrics."""
    import mlflow
    from mlflow import MlflowClient

    os.environ.update(api_settings.aws_env())
    settings = api_settings.model_copy(update={"model_name": f"test-api-{uuid.uuid4().hex[:8]}"})
    mlflow.set_tracking_uri(settings.mlflow_uri)
    mlflow.set_experiment(f"{settings.mlflow_experiment}-api-tests")
    client = MlflowClient(settings.mlflow_uri)
    for rmspe in (0.2, 0.1):
        with mlflow.start_run():
            mlflow.log_metrics({"backtest_rmspe": rmspe, "baseline_median_rmspe": 0.128})
            info = mlflow.pyfunc.log_model(name="model", python_model=_champion_model())
        mv = mlflow.register_model(info.model_uri, settings.model_name)
        client.set_registered_model_alias(settings.model_name, "challenger" if rmspe > 0.15 else "champion", mv.version)
    yield settings
    client.delete_registered_model(settings.model_name)
