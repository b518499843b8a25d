"""MiniStack, the LocalStack-compatible AWS emulator (S3, Lambda, API Gateway v2, IAM, Secrets Manager...)."""

from __future__ import annotations

import json
import urllib.request

from app.config import PROJECT_ROOT
from app.stack.base import Service, StackError


class Emulator(Service):
    name = "emulator"
    start_timeout = 60.0

    @property
    def binary(self) -> str:
        return str(PROJECT_ROOT / ".venv-emulator" / "bin" / "ministack")

    def ports(self) -> list[int]:
        return [self.settings.emulator_port]

    @property
    def address(self) -> str:
        return f"http://{self.settings.bind_host}:{self.settings.emulator_port}"

    def prepare(self) -> None:
        if not (PROJECT_ROOT / ".venv-emulator" / "bin" / "ministack").exists():
            raise StackError(f"MiniStack is not installed ({self.binary} missing): run `make setup`")
        (self.settings.state_dir / "ministack" / "s3").mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [self.binary]

    def expected_cmd_fragment(self) -> str:
        return "ministack"

    def environment(self) -> dict[str, str]:
        state = self.settings.state_dir / "ministack"
        return {
            "GATEWAY_PORT": str(self.settings.emulator_port),
            "BIND_HOST": self.settings.bind_host,
            "STATE_DIR": str(state),
            "S3_DATA_DIR": str(state / "s3"),
            # Objects on disk, reloaded at start: without it every `sfmlops down` lost the MLflow artifacts
            # (the registry in Postgres kept pointing at them, so the champion could not be loaded), the job
            # zips and the streaming checkpoints.
            "S3_PERSIST": "1",
            "MINISTACK_REGION": self.settings.aws_region,
            "LOG_LEVEL": "WARNING",
            # MiniStack's side listeners ignore BIND_HOST and bind 0.0.0.0: the IoT mTLS MQTT broker
            # (8883, on by default) and the Transfer Family SFTP server. The project uses neither.
            "IOT_MTLS_ENABLED": "0",
            "SFTP_ENABLED": "0",
        }

    def healthy(self) -> bool:
        url = f"{self.address}/_localstack/health"
        with urllib.request.urlopen(url, timeout=5) as resp:  # loopback
            body = json.loads(resp.read() or b"{}")
        return resp.status == 200 and "services" in body

    def after_start(self) -> None:
        """Create the project's buckets (idempotent)."""
        s3 = self.settings.boto3_client("s3")
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        for bucket in (
            self.settings.bucket_raw,
            self.settings.bucket_checkpoints,
            self.settings.bucket_mlflow,
            self.settings.bucket_code,
        ):
            if bucket not in existing:
                s3.create_bucket(Bucket=bucket)
