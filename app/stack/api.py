"""The API under uvicorn (`sfmlops api`) as a background service of the local stack, for the UI and scripts."""

from __future__ import annotations

import sys

from app.stack.base import Service, http_ok


class ApiServer(Service):
    name = "api"
    start_timeout = 90.0

    def ports(self) -> list[int]:
        return [self.settings.api_port]

    @property
    def address(self) -> str:
        return self.settings.api_base_url

    def command(self) -> list[str]:
        return [sys.executable, "-m", "app.cli", "api"]

    def expected_cmd_fragment(self) -> str:
        return "app.cli api"

    def healthy(self) -> bool:
        # /healthz answers 200 when every dependency is reachable and 503 otherwise; both mean "serving".
        import urllib.error

        try:
            return http_ok(f"{self.address}/healthz")
        except urllib.error.HTTPError as exc:
            return exc.code == 503


class UiServer(Service):
    """The Streamlit operator UI (`sfmlops ui`) as a background service; it talks only to the API."""

    name = "ui"
    start_timeout = 90.0

    def ports(self) -> list[int]:
        return [self.settings.ui_port]

    @property
    def address(self) -> str:
        return f"http://{self.settings.bind_host}:{self.settings.ui_port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "app.cli", "ui"]

    def expected_cmd_fragment(self) -> str:
        return "app.cli ui"

    def healthy(self) -> bool:
        return http_ok(f"{self.address}/_stcore/health")
