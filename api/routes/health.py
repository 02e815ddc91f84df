"""Health check and Prometheus metrics of the running service."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from api.deps import HealthDep, MetricsDep
from core.metrics import CONTENT_TYPE

# No prefix: probes and Prometheus expect /healthz and /metrics at the root.
router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Is the service connected and writing?")
async def healthz(health: HealthDep) -> JSONResponse:
    """200 while subscribed to the broker and InfluxDB (or the spool) takes writes, else 503."""
    state = health()
    body = {"status": "ok" if state.healthy else "degraded", "ingest": state.ingest}
    return JSONResponse(body, status_code=200 if state.healthy else 503)


@router.get(
    "/metrics",
    summary="Counters in the Prometheus text format",
    response_class=PlainTextResponse,
)
async def metrics(metrics: MetricsDep, request: Request) -> Response:
    """The process's counters (ingest, rules), then those of the API's alert service."""
    text = metrics()
    alerts = request.app.state.alerts
    if alerts is not None:
        text += alerts.render_prometheus()
    return Response(text, media_type=CONTENT_TYPE)
