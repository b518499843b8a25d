"""``/v1/alerts``: Alertmanager's webhook receiver (alerts into Postgres) and the list the UI's health view shows.

Alertmanager (``monitoring/alertmanager.yml``) posts its webhook payload (version 4) to
``POST /v1/alerts/webhook`` with ``Authorization: Bearer <SFMLOPS_ALERT_WEBHOOK_TOKEN>`` (Alertmanager 0.25 can
send a bearer token from a file, not a custom header such as ``X-API-Key``). Every alert of the payload is
upserted by (fingerprint, starts_at): a repeated notification refreshes its row, a resolved one closes it.
``GET /v1/alerts`` (API key) lists them, firing first.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from app.api import db
from app.api.deps import ClientDep, SettingsDep
from app.api.errors import ApiError, error_responses
from app.config import PLACEHOLDER_SECRETS, Settings

router = APIRouter(prefix="/v1", tags=["alerts"])

#: Alertmanager writes this for an alert that has not ended yet.
_NEVER = datetime.fromisoformat("0001-01-01T00:00:00+00:00")


class WebhookAlert(BaseModel):
    """One alert of an Alertmanager notification."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(min_length=1, description="Must carry alertname")
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime  # Alertmanager's field names
    endsAt: datetime | None = None
    generatorURL: str | None = Field(None, max_length=4096)
    fingerprint: str = Field(min_length=1, max_length=64, pattern=r"^[0-9a-fA-F]+$")


class WebhookPayload(BaseModel):
    """Alertmanager's webhook body (``version`` 4)."""

    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = Field(max_length=200)
    alerts: list[WebhookAlert] = Field(min_length=1, max_length=1000)


class WebhookResult(BaseModel):
    recorded: int = Field(description="Alerts inserted or updated")


class Alert(BaseModel):
    """A recorded alert."""

    alertname: str
    severity: str | None
    status: str
    starts_at: datetime
    ends_at: datetime | None
    updated_at: datetime
    summary: str | None = None
    labels: dict[str, Any]
    annotations: dict[str, Any]
    fingerprint: str


class AlertsResponse(BaseModel):
    firing: int = Field(description="Alerts firing now")
    alerts: list[Alert]


def _check_token(settings: Settings, authorization: str | None) -> None:
    token = settings.alert_webhook_token.get_secret_value()
    if settings.profile != "local" and token.strip().lower() in PLACEHOLDER_SECRETS:
        raise ApiError(503, "The alert webhook is not configured (set SFMLOPS_ALERT_WEBHOOK_TOKEN)", expose=True)
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise ApiError(401, "Missing or wrong bearer token (SFMLOPS_ALERT_WEBHOOK_TOKEN)")


def record(settings: Settings, payload: WebhookPayload) -> int:
    """Upsert every alert of ``payload`` into ``settings.table_alerts``; returns how many."""
    sql = f"""
        INSERT INTO {settings.table_alerts} AS a (fingerprint, starts_at, alertname, severity, status, ends_at, labels,
                                                  annotations, generator_url, receiver)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (fingerprint, starts_at) DO UPDATE SET
            status = EXCLUDED.status, ends_at = EXCLUDED.ends_at, labels = EXCLUDED.labels,
            annotations = EXCLUDED.annotations, generator_url = EXCLUDED.generator_url,
            receiver = EXCLUDED.receiver, updated_at = now()"""  # table name from validated settings
    rows = []
    for alert in payload.alerts:
        ends = alert.endsAt if alert.endsAt is not None and alert.endsAt > _NEVER else None
        rows.append((
            alert.fingerprint.lower(), alert.startsAt, alert.labels.get("alertname", "unnamed"), alert.labels.get("severity"),
            alert.status, ends if alert.status == "resolved" else None, Jsonb(alert.labels), Jsonb(alert.annotations),
            alert.generatorURL, payload.receiver,
        ))
    with db.connection(settings) as conn, conn.cursor() as cur:
        cur.executemany(sql, rows)
    return len(rows)


@router.post(
    "/alerts/webhook", response_model=WebhookResult, summary="Alertmanager webhook receiver",
    responses=error_responses(401, 413, 422, 503),
)
async def alertmanager_webhook(
    payload: WebhookPayload,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header(description="Bearer SFMLOPS_ALERT_WEBHOOK_TOKEN")] = None,
) -> WebhookResult:
    """Record the notification's alerts (firing or resolved) in Postgres."""
    _check_token(settings, authorization)
    if any("alertname" not in a.labels for a in payload.alerts):
        raise ApiError(422, "Every alert needs an alertname label")
    return WebhookResult(recorded=await run_in_threadpool(record, settings, payload))


def list_alerts(settings: Settings, status: str | None, limit: int) -> AlertsResponse:
    where = "WHERE status = %s" if status else ""
    params: tuple[Any, ...] = (status, limit) if status else (limit,)
    with db.connection(settings) as conn, db.cursor(conn) as cur:
        cur.execute(
            f"SELECT fingerprint, alertname, severity, status, starts_at, ends_at, updated_at, labels, annotations"
            f" FROM {settings.table_alerts} {where} ORDER BY status = 'firing' DESC, updated_at DESC LIMIT %s",
            params,
        )
        rows = cur.fetchall()
        cur.execute(f"SELECT count(*) AS n FROM {settings.table_alerts} WHERE status = 'firing'")
        firing = db.one_row(cur)["n"]
    alerts = [Alert(**r, summary=(r["annotations"] or {}).get("summary")) for r in rows]
    return AlertsResponse(firing=firing, alerts=alerts)


@router.get("/alerts", response_model=AlertsResponse, summary="Recorded alerts, firing first", responses=error_responses(401, 503))
async def get_alerts(
    settings: SettingsDep,
    client: ClientDep,
    status: Annotated[Literal["firing", "resolved"] | None, Query(description="Only alerts in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AlertsResponse:
    """The newest alerts Alertmanager sent (``firing`` counts those open now)."""
    return await run_in_threadpool(list_alerts, settings, status, limit)
