"""MLflow: the connection setup shared by training, the batch forecast, evaluation and the registry. It imports
nothing else of the package (no import circle); the MLflow run of a training is :mod:`app.forecasting.run_log`."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings


def configure_mlflow(settings: Settings) -> None:
    """Point MLflow (and its S3 artifact client) at the configured server and endpoint."""
    import mlflow

    os.environ.update(settings.aws_env())
    os.environ.update(settings.mlflow_env())  # tracking URI and basic-auth credentials for the MLflow client
    mlflow.set_tracking_uri(settings.mlflow_uri)
