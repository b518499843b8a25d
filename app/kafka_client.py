"""Kafka clients: the one place that builds a kafka-python client's keyword arguments from the settings.

:func:`kafka_client_config` gives ``bootstrap_servers``, ``client_id`` and the security settings that
``Settings.kafka_auth`` asks for, the same for ``KafkaProducer``, ``KafkaConsumer`` and ``KafkaAdminClient``; each
caller (the producer and its topic admin, the exporter, the ingest benchmark) adds its own tuning as overrides.

* ``none``: plaintext, no SASL (the local broker of ``sfmlops up``);
* ``aws-msk-iam``: ``SASL_SSL`` + ``OAUTHBEARER`` on MSK's IAM listener (port 9098), the broker's certificate checked
  against the system's CAs. The bearer token (:class:`MskIamTokenProvider`) is what AWS's
  ``aws-msk-iam-sasl-signer-python`` makes: a SigV4-presigned ``kafka-cluster:Connect`` URL for ``aws_region``, signed
  here without any network call, valid 15 minutes. It is signed with the credentials the project's AWS SDK clients
  get (:attr:`Settings.explicit_aws_keys`): the configured key pair, else the default chain (the instance or task
  role on AWS). MSK checks the signature, then the role's ``kafka-cluster:*`` permissions on each request.

The local stack's health check (``app.stack.kafka.Kafka.healthy``) does not come here: it only ever asks the broker
that ``sfmlops up`` started, on its plaintext loopback listener, whatever the settings say about a remote cluster.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from kafka.net.sasl.oauth import AbstractTokenProvider

if TYPE_CHECKING:  # pragma: no cover
    from app.config import Settings

#: A token is signed anew when less than this is left of its 15 minutes (a connection authenticates once, at start).
TOKEN_REFRESH_MARGIN_S = 60.0


class MskIamTokenProvider(AbstractTokenProvider):
    """kafka-python's OAUTHBEARER token provider for MSK IAM (``sasl_oauth_token_provider``).

    ``token()`` returns the signer's token (``MSKAuthTokenProvider.generate_auth_token(region)``, or
    ``generate_auth_token_from_credentials_provider`` with ``credentials``), reused by every connection until it is
    within :data:`TOKEN_REFRESH_MARGIN_S` of expiring, then signed anew; thread-safe (the producer's sender thread and
    the caller's share one provider).
    """

    def __init__(self, region: str, credentials: tuple[str, str] | None = None) -> None:
        """``credentials``: (access key id, secret access key) to sign with; None = the default credential chain."""
        super().__init__()
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider  # here, so a missing package fails at client creation

        self.region = region
        self._signer = MSKAuthTokenProvider
        self._credentials = credentials
        self._lock = threading.Lock()
        self._token = ""
        self._expires_ms = 0

    def token(self) -> str:
        with self._lock:
            if time.time() * 1000 >= self._expires_ms - TOKEN_REFRESH_MARGIN_S * 1000:
                if self._credentials is None:
                    self._token, self._expires_ms = self._signer.generate_auth_token(self.region)
                else:
                    self._token, self._expires_ms = self._signer.generate_auth_token_from_credentials_provider(
                        self.region, _configured_credentials(*self._credentials)
                    )
            return self._token


def _configured_credentials(access_key: str, secret_key: str) -> Any:  # botocore.credentials.CredentialProvider
    """The configured key pair as the botocore credential provider the signer takes."""
    from botocore.credentials import CredentialProvider, Credentials

    class _Configured(CredentialProvider):
        METHOD = "sfmlops-settings"

        def load(self) -> Credentials:
            return Credentials(access_key, secret_key, method=self.METHOD)

    return _Configured()


def kafka_client_config(settings: Settings, client_id: str, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments of a kafka-python client (producer, consumer or admin) named ``client_id``.

    Args:
        settings: ``kafka_bootstrap`` and ``kafka_auth`` (with ``aws_region`` and the AWS credentials for
            ``aws-msk-iam``).
        client_id: the client's name in the broker's logs and metrics (``sfmlops-<role>``).
        overrides: the caller's own options (timeouts, batching, ...), which win over the built ones.

    Returns:
        ``bootstrap_servers`` and ``client_id``; with ``kafka_auth=aws-msk-iam`` also ``security_protocol="SASL_SSL"``,
        ``sasl_mechanism="OAUTHBEARER"`` and ``sasl_oauth_token_provider`` (a :class:`MskIamTokenProvider`).
    """
    config: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap, "client_id": client_id}
    if settings.kafka_auth == "aws-msk-iam":
        credentials = None
        if settings.explicit_aws_keys:
            credentials = (settings.aws_access_key_id, settings.aws_secret_access_key.get_secret_value())
        config.update(
            security_protocol="SASL_SSL",
            sasl_mechanism="OAUTHBEARER",
            sasl_oauth_token_provider=MskIamTokenProvider(settings.aws_region, credentials),
        )
    config.update(overrides)
    return config
