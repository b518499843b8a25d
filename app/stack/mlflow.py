"""MLflow tracking server: backend store in the local Postgres, artifacts in the emulator's S3 bucket."""

from __future__ import annotations

from app.config import PROJECT_ROOT
from app.stack.base import Service, http_ok


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
            "--backend-store-uri", s.pg_url(s.mlflow_database, driver="postgresql+psycopg2"),
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
            # The async job runner (huey consumers, ~700 MB) serves only GenAI features we do not use.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }

    def healthy(self) -> bool:
        return http_ok(f"{self.address}/health")
