"""MLflow tracking server: backend store in the local Postgres, artifacts in the emulator's S3 bucket."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.config import PROJECT_ROOT
from app.stack.base import Service, http_ok

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings


def backend_store_uri(settings: Settings) -> str:
    """SQLAlchemy URL of MLflow's backend store (the application role on the ``mlflow_database``)."""
    return settings.pg_url(settings.mlflow_database, driver="postgresql+psycopg2")


class MLflow(Service):
    name = "mlflow"
    start_timeout = 120.0  # the first start creates the schema

    def ports(self) -> list[int]:
        return [self.settings.mlflow_port]

    @property
    def address(self) -> str:
        return self.settings.mlflow_uri

    def command(self) -> list[str]:
        s = self.settings
        return [
            str(PROJECT_ROOT / ".venv" / "bin" / "mlflow"), "server",
            "--artifacts-destination", f"s3://{s.bucket_mlflow}/",
            "--serve-artifacts",
            "--host", s.bind_host, "--port", str(s.mlflow_port),
            "--workers", "1",
            "--allowed-hosts", f"{s.bind_host},{s.bind_host}:{s.mlflow_port},localhost,localhost:{s.mlflow_port}",
        ]

    def expected_cmd_fragment(self) -> str:
        return f"--port {self.settings.mlflow_port}"

    def environment(self) -> dict[str, str]:
        return {**self.settings.aws_env(), "MLFLOW_LOGGING_LEVEL": "WARNING",
            # `mlflow server --backend-store-uri` reads this; in argv the password would show in `ps`.
            "MLFLOW_BACKEND_STORE_URI": backend_store_uri(self.settings),
            # The async job runner (huey consumers, ~700 MB) serves only GenAI features we do not use.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }

    def healthy(self) -> bool:
        return http_ok(f"{self.address}/health")
