"""The FastAPI application: routers gathered here, parts passed in."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from alerts.service import AlertService
from api import errors
from api.deps import Health, HealthCheck, MetricsText
from api.routes import alerts as alert_routes
from api.routes import auth, devices, links, notices, org, residents
from api.routes import health as health_routes
from api.throttle import LoginThrottle
from core.db import Database
from core.influx import InfluxClient
from core.secrets import load_or_create_secret
from core.settings import Settings
from devices.broker.provisioning import BrokerProvisioner

DESCRIPTION = """\
CareWatch manages resident files (一人一档), grids (网格) and their workers, wristbands
and smart bins, and answers supervisors about device status.

Log in at `POST /api/v1/auth/token` (OAuth2 password flow) and send
`Authorization: Bearer <token>`, or send `X-API-Key: <key>` from a machine client.
Errors are JSON: `{"error": {"code", "message" (中文), "message_en"}}`.
"""


def _no_metrics() -> str:
    return ""


def create_app(
    settings: Settings,
    *,
    database: Database,
    provisioner: BrokerProvisioner,
    influx: InfluxClient | None = None,
    alerts: AlertService | None = None,
    health: HealthCheck | None = None,
    metrics: MetricsText | None = None,
) -> FastAPI:
    """The API over the parts the root hands in; `health` and `metrics` speak for the rest."""
    app = FastAPI(
        title="CareWatch",
        summary="Wristbands and smart bins for community elderly care: residents, devices, status.",
        description=DESCRIPTION,
        version="0.2.0",
    )
    app.state.settings = settings
    # An API-only process: healthy while it answers, and no counters beyond the alerts'.
    app.state.health = health or Health
    app.state.metrics = metrics or _no_metrics
    app.state.database = database
    app.state.provisioner = provisioner
    app.state.influx = influx or InfluxClient(
        settings.influx_url, settings.influx_database, settings.influx_token
    )
    app.state.secret_key = settings.secret_key or load_or_create_secret(settings.state_dir)
    app.state.login_throttle = LoginThrottle()
    # In an API-only process the alert verbs work on the shared database; the dispatcher of
    # the ingest process sends what they queue.
    app.state.alerts = alerts or AlertService(settings, database)
    errors.install(app)
    app.include_router(health_routes.router)
    app.include_router(links.router)  # ack links: no login, outside the OpenAPI document
    v1 = APIRouter(prefix="/api/v1")
    for module in (auth, org, residents, devices, alert_routes, notices):
        v1.include_router(module.router)
    app.include_router(v1)
    return app
