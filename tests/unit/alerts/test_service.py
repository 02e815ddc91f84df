"""The alert service's wiring and its metrics, without a database connection."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.exceptions import ChannelConfigError
from alerts.service import AlertService
from core.db import Database
from core.settings import Settings

SECRET = "alert-service-test-signing-key-0123456789"


def service(tmp_path: Path, **kwargs: object) -> AlertService:
    settings = Settings(state_dir=tmp_path, secret_key=SECRET, **kwargs)  # type: ignore[arg-type]
    return AlertService(settings, Database(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"))


def test_the_rule_engines_unlatch_is_given_at_construction(tmp_path: Path) -> None:
    async def unlatch(device_id: str, rule: str) -> None:
        return None

    settings = Settings(state_dir=tmp_path, secret_key=SECRET)
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    assert AlertService(settings, database, unlatch=unlatch).unlatch is unlatch
    assert AlertService(settings, database).unlatch is None


def test_metrics_in_the_prometheus_text_format(tmp_path: Path) -> None:
    alerts = service(tmp_path)
    alerts.applied = 7
    alerts.dispatcher.metrics.sent = 3
    alerts.dispatcher.metrics.fallbacks = 1
    text = alerts.render_prometheus()
    assert text.endswith("\n")
    lines = text.splitlines()
    assert lines[:3] == [
        "# HELP carewatch_alerts_findings_total Findings applied to alerts.",
        "# TYPE carewatch_alerts_findings_total counter",
        "carewatch_alerts_findings_total 7",
    ]
    assert "carewatch_alerts_notifications_sent_total 3" in lines
    assert "carewatch_alerts_fallbacks_total 1" in lines
    assert "carewatch_alerts_uncertain_total 0" in lines
    assert len(lines) == 18


def test_a_channel_template_apprise_refuses_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ChannelConfigError, match="CAREWATCH_ALERTS__SMS_URL"):
        service(tmp_path, alerts={"sms_url": "nosuch://{phone}"})
