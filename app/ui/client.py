"""The UI's only way out: the sfmlops API client (:mod:`app.common.api_client`) set up from the UI's settings.

Every failure is an :class:`ApiProblem` whose message says what happened and which setting to check, so
the pages never show a stack trace.
"""

from __future__ import annotations

import httpx

from app.common.api_client import ApiClient, ApiProblem
from app.config import Settings

__all__ = ["ApiClient", "ApiProblem", "ui_client"]

UNREACHABLE_HINT = "Is it running (`sfmlops api`)? Check SFMLOPS_API_URL / SFMLOPS_API_PORT."
KEY_HINT = "Set SFMLOPS_API_KEY to a key issued with `sfmlops api-key create NAME`."


def ui_client(settings: Settings, transport: httpx.BaseTransport | None = None) -> ApiClient:
    """The client of ``settings.api_base_url`` with ``settings.api_key`` and the UI's timeout."""
    return ApiClient(
        settings.api_base_url,
        settings.api_key.get_secret_value(),
        timeout_s=settings.ui_api_timeout_s,
        user_agent="sfmlops-ui",
        unreachable_hint=UNREACHABLE_HINT,
        key_hint=KEY_HINT,
        transport=transport,
    )
