"""Health check and Prometheus metrics of the running service."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from api.deps import IngestDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Is the service connected and writing?")
async def healthz(ingest: IngestDep) -> JSONResponse:
    """200 while subscribed to the broker and InfluxDB (or the spool) takes writes, else 503."""
    if ingest is None:
        return JSONResponse({"status": "ok", "ingest": None})
    snapshot = ingest.metrics.snapshot()
    healthy = bool(snapshot["mqtt_connected"])
    body = {"status": "ok" if healthy else "degraded", "ingest": snapshot}
    return JSONResponse(body, status_code=200 if healthy else 503)


@router.get(
    "/metrics",
    summary="Counters in the Prometheus text format",
    response_class=PlainTextResponse,
)
async def metrics(ingest: IngestDep, request: Request) -> Response:
    text = ""
    if ingest is not None:
        text = ingest.metrics.render_prometheus()
        if ingest.rules is not None:
            text += ingest.rules.render_prometheus()
    alerts = request.app.state.alerts
    if alerts is not None:
        text += alerts.render_prometheus()
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")
