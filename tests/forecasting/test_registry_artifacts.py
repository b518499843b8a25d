"""The champion gate on the real local MLflow: a champion whose model artifacts are gone is no champion.

Issue 19 / S3 persistence: the registry in Postgres outlives the artifacts in the bucket (an emptied bucket, an
emulator restarted without S3_PERSIST). Such a champion cannot be loaded, so a new candidate must not be
compared with it: it takes the alias, and the decision says why. A model name of this test's own.
"""

from __future__ import annotations

import pytest

from app.config import Settings

pytestmark = pytest.mark.integration


def _logged_version(name: str) -> str:
    """A new version of ``name`` with a real (tiny) pyfunc model in the artifact store."""
    import mlflow
    import mlflow.pyfunc

    class Model(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=Model(), pip_requirements=["mlflow"])
    return str(mlflow.register_model(info.model_uri, name).version)


def test_a_champion_whose_artifacts_are_gone_is_replaced_by_the_next_candidate(mlflow_test_settings: Settings) -> None:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from app.forecasting.registry import gate, missing_model
    from app.forecasting.tracking import configure_mlflow

    s = mlflow_test_settings
    configure_mlflow(s)
    mlflow.set_experiment(s.mlflow_experiment)
    client = MlflowClient()
    name = s.model_name
    champion = _logged_version(name)
    assert gate(s, client, name, champion, 0.05)["decision"] == "champion"
    assert missing_model(client, name, champion) is None
    # While its artifacts are there, a worse candidate is only the challenger.
    worse = client.create_model_version(name, source="s3://nowhere/model").version
    kept = gate(s, client, name, worse, 0.20)
    assert kept["decision"] == "challenger" and kept["champion_rmspe"] == pytest.approx(0.05)

    # The artifacts are lost (deleted through MLflow's own artifact repository: what an emptied bucket leaves).
    uri = client.get_model_version_download_uri(name, champion)
    get_artifact_repository(uri).delete_artifacts()
    assert missing_model(client, name, champion) == f"no MLmodel under {uri}"
    candidate = client.create_model_version(name, source="s3://nowhere/model").version
    result = gate(s, client, name, candidate, 0.20)
    assert result["decision"] == "champion" and result["previous_champion"] == champion
    assert result["champion_rmspe"] is None
    assert f"champion v{champion} cannot be loaded (no MLmodel under {uri})" in result["reason"]
    assert client.get_model_version_by_alias(name, "champion").version == candidate
    assert client.get_model_version(name, candidate).tags["gate_reason"] == result["reason"]
