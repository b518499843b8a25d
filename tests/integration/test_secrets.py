"""Secrets from Secrets Manager (the emulator's, the same API as AWS): how the app gets them on AWS."""

from __future__ import annotations

import json
import uuid

import pytest
from pydantic import ValidationError

from app.config import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def secrets(stack, monkeypatch):
    """A Secrets Manager client on the emulator, and the default credential chain pointed at it (as a role's
    environment would be); the secrets created are deleted afterwards."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", stack.aws_access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", stack.aws_secret_access_key.get_secret_value())
    client = stack.boto3_client("secretsmanager")
    created: list[str] = []

    def create(value: str) -> str:
        arn = client.create_secret(Name=f"sfmlops-test-{uuid.uuid4().hex[:8]}", SecretString=value)["ARN"]
        created.append(arn)
        return arn

    yield create
    for arn in created:
        client.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)


def _aws(stack, **values) -> Settings:
    return Settings(_env_file=None, profile="aws", aws_endpoint_url=stack.aws_endpoint_url, **values)


def test_database_credentials_and_pepper_come_from_secret_arns(stack, secrets) -> None:
    db = secrets(json.dumps({"username": "app_rw", "password": "Zq8-from-secrets-manager", "engine": "postgres"}))
    pepper = secrets("pepper-from-secrets-manager-5f1e")
    s = _aws(stack, pg_secret_arn=db, api_key_pepper_secret_arn=pepper)
    assert not s.explicit_aws_keys  # read with the default chain, like a Lambda role
    assert s.pg_user == "app_rw" and s.pg_password.get_secret_value() == "Zq8-from-secrets-manager"
    assert "password=Zq8-from-secrets-manager" in s.pg_dsn()
    assert s.api_key_pepper.get_secret_value() == "pepper-from-secrets-manager-5f1e"


def test_unreadable_or_malformed_secrets_fail_at_start_up_naming_the_setting(stack, secrets) -> None:
    missing = f"arn:aws:secretsmanager:{stack.aws_region}:000000000000:secret:sfmlops-missing-{uuid.uuid4().hex[:6]}"
    with pytest.raises(ValidationError, match="SFMLOPS_PG_SECRET_ARN: cannot read secret"):
        _aws(stack, pg_secret_arn=missing, api_key_pepper="pepper-9f8e7d6c")
    with pytest.raises(ValidationError, match="SFMLOPS_PG_SECRET_ARN: secret .* must be JSON with a 'password'"):
        _aws(stack, pg_secret_arn=secrets("not json"), api_key_pepper="pepper-9f8e7d6c")
    # a placeholder read from a secret is refused like one set directly, where keys are hashed (the API's start-up)
    with pytest.raises(ValueError, match="SFMLOPS_API_KEY_PEPPER must be set to a real secret"):
        _aws(stack, pg_password="Xk2-long-real-secret", api_key_pepper_secret_arn=secrets("changeme")).require_api_key_pepper()
