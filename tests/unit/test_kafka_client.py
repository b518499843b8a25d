"""``app.kafka_client``: the kafka-python clients' keyword arguments (plaintext locally, SASL_SSL/OAUTHBEARER with
MSK IAM tokens) and the tokens themselves, signed by the real ``aws-msk-iam-sasl-signer-python`` with static dummy
credentials (the signer presigns locally: no network), checked here against the SigV4 rules computed by hand."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import socket
import subprocess
import sys
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from pydantic import ValidationError

from app.config import PROJECT_ROOT, Settings
from app.kafka_client import MskIamTokenProvider, kafka_client_config

# AWS's documented example key pair (not a real credential).
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def _aws(**values: Any) -> Settings:
    """Settings of a deployment (profile aws, real-looking database password, no emulator) with ``values``."""
    return Settings(_env_file=None, profile="aws", pg_password="Xk2-long-real-secret", aws_endpoint_url="", **values)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt (STS, instance metadata, a broker) fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access while building a Kafka client's configuration or signing a token")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture
def env_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Static dummy credentials in the environment, the only source of the default chain (no files, no profile)."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "dummy-session-token")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _signed_url(token: str) -> tuple[str, dict[str, str]]:
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}", dict(parse_qsl(parts.query, keep_blank_values=True))


def _sigv4_signature(secret_key: str, host: str, params: dict[str, str]) -> str:
    """The SigV4 query-string signature of ``GET https://host/?params`` (every parameter the signer signed)."""
    signed = {k: v for k, v in params.items() if k not in ("X-Amz-Signature", "User-Agent")}  # User-Agent: added after
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(signed.items()))
    canonical = "\n".join(["GET", "/", query, f"host:{host}", "", "host", hashlib.sha256(b"").hexdigest()])
    scope = params["X-Amz-Credential"].split("/", 1)[1]
    day, region, service, _ = scope.split("/")
    to_sign = "\n".join(["AWS4-HMAC-SHA256", params["X-Amz-Date"], scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret_key}".encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def test_plaintext_by_default_with_no_sasl_keys() -> None:
    s = Settings(_env_file=None)
    assert s.kafka_auth == "none"
    config = kafka_client_config(s, "sfmlops-test", request_timeout_ms=1234)
    assert config == {"bootstrap_servers": s.kafka_bootstrap, "client_id": "sfmlops-test", "request_timeout_ms": 1234}
    # overrides win over the built keys
    assert kafka_client_config(s, "a", bootstrap_servers="10.0.0.1:9092")["bootstrap_servers"] == "10.0.0.1:9092"


def test_msk_iam_gives_sasl_ssl_oauthbearer_and_a_real_signed_token(env_credentials: None, no_network: None) -> None:
    """On AWS (no key pair configured) the token is signed with the default chain's credentials for aws_region."""
    from kafka.net.sasl import get_sasl_mechanism
    from kafka.net.sasl.oauth import AbstractTokenProvider

    s = _aws(kafka_auth="aws-msk-iam", aws_region="eu-west-1", kafka_bootstrap_servers="b-1.msk.example:9098,b-2.msk.example:9098")
    assert not s.explicit_aws_keys
    config = kafka_client_config(s, "sfmlops-exporter")
    provider = config.pop("sasl_oauth_token_provider")
    assert config == {"bootstrap_servers": "b-1.msk.example:9098,b-2.msk.example:9098", "client_id": "sfmlops-exporter",
                      "security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"}
    assert isinstance(provider, MskIamTokenProvider) and isinstance(provider, AbstractTokenProvider)

    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    token = provider.token()
    assert isinstance(token, str) and "=" not in token  # base64url without padding, as MSK expects
    base, params = _signed_url(token)
    assert base == "https://kafka.eu-west-1.amazonaws.com/"
    assert params["Action"] == "kafka-cluster:Connect"
    assert params["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    signed_at = dt.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    assert before <= signed_at <= dt.datetime.now(dt.UTC)
    assert params["X-Amz-Credential"] == f"{ACCESS_KEY}/{signed_at:%Y%m%d}/eu-west-1/kafka-cluster/aws4_request"
    assert params["X-Amz-Expires"] == "900" and params["X-Amz-SignedHeaders"] == "host"
    assert params["X-Amz-Security-Token"] == "dummy-session-token"
    assert params["User-Agent"] == "aws-msk-iam-sasl-signer-python/1.0.2"
    assert params["X-Amz-Signature"] == _sigv4_signature(SECRET_KEY, "kafka.eu-west-1.amazonaws.com", params)
    assert provider.token() == token  # reused until close to expiry, not signed per connection

    # kafka-python's own OAUTHBEARER mechanism accepts the configuration and sends the token
    mechanism = get_sasl_mechanism(config["sasl_mechanism"])(**config, sasl_oauth_token_provider=provider)
    assert mechanism.auth_bytes() == f"n,,\x01auth=Bearer {token}\x01\x01".encode()


def test_clients_accept_the_configuration(env_credentials: None) -> None:
    """KafkaProducer and KafkaConsumer refuse unknown keys; with api_version given they connect only when used."""
    from kafka import KafkaConsumer, KafkaProducer

    s = _aws(kafka_auth="aws-msk-iam", kafka_bootstrap_servers="127.0.0.1:1")
    KafkaConsumer(**kafka_client_config(s, "sfmlops-test", api_version=(3, 9))).close()
    KafkaProducer(**kafka_client_config(s, "sfmlops-test", api_version=(3, 9))).close(timeout=1)


def test_a_configured_key_pair_signs_the_token(no_network: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The token follows the AWS SDK clients' rule (Settings.explicit_aws_keys): a configured key pair, not the chain."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAOTHERKEYNOTUSED0")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "other/secret")
    s = _aws(kafka_auth="aws-msk-iam", aws_region="us-west-2", aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    assert s.explicit_aws_keys
    _, params = _signed_url(kafka_client_config(s, "sfmlops-producer")["sasl_oauth_token_provider"].token())
    assert params["X-Amz-Credential"].startswith(f"{ACCESS_KEY}/") and "/us-west-2/kafka-cluster/" in params["X-Amz-Credential"]
    assert "X-Amz-Security-Token" not in params
    assert params["X-Amz-Signature"] == _sigv4_signature(SECRET_KEY, "kafka.us-west-2.amazonaws.com", params)


def test_an_unknown_kafka_auth_fails_at_start_up_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFMLOPS_KAFKA_AUTH", "iam")
    with pytest.raises(ValidationError, match="kafka_auth") as exc:
        Settings(_env_file=None)
    assert "'none' or 'aws-msk-iam'" in str(exc.value)
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "SFMLOPS_KAFKA_AUTH": "iam"}
    result = subprocess.run([sys.executable, "-m", "app.cli", "status"], capture_output=True, text=True, env=env,
                            cwd=PROJECT_ROOT, timeout=60, check=False)
    assert result.returncode == 2
    assert "SFMLOPS_KAFKA_AUTH" in result.stderr + result.stdout
