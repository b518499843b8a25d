"""AWS Lambda entry point: the sfmlops FastAPI app behind API Gateway (HTTP API, payload v2) via Mangum.

Handler setting: ``handler.handler``. Settings come from the function's SFMLOPS_* environment variables.
The app is built once per container (cold start) and reused by warm invocations.
"""

from __future__ import annotations

from mangum import Mangum

from app.api.main import create_app
from app.config import get_settings

_settings = get_settings()
app = create_app(_settings)
handler = Mangum(app, lifespan="off", api_gateway_base_path=_settings.api_root_path or "/")
