"""Dependency aliases of the API: the settings and the running parts, overridable in tests."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from carewatch.settings import Settings
from ingest.service import IngestService


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_ingest(request: Request) -> IngestService | None:
    ingest: IngestService | None = request.app.state.ingest
    return ingest


SettingsDep = Annotated[Settings, Depends(get_settings)]
IngestDep = Annotated[IngestService | None, Depends(get_ingest)]
