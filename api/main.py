"""The FastAPI application: routers gathered here, parts passed in."""

from __future__ import annotations

from fastapi import FastAPI

from api.routes import health
from carewatch.settings import Settings
from ingest.service import IngestService


def create_app(settings: Settings, ingest: IngestService | None = None) -> FastAPI:
    app = FastAPI(
        title="CareWatch",
        summary="Wristbands and smart bins for community elderly care: status, telemetry, alerts.",
        version="0.1.0",
    )
    app.state.settings = settings
    app.state.ingest = ingest
    app.include_router(health.router)
    return app
