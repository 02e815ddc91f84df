"""Residents and devices from a spreadsheet (CSV): parsed and checked, nothing written.

What it accepts and how it reports problems: docs/registry.md (spreadsheet imports).
"""

from __future__ import annotations

from devices.exceptions import ImportFileError
from devices.importer.devices import (
    CATEGORIES,
    DEVICE_COLUMNS,
    KINDS,
    DeviceRow,
    devices_from_text,
    parse_devices,
)
from devices.importer.residents import (
    CHANNELS,
    MAX_CONTACTS,
    RESIDENT_COLUMNS,
    SERVICE_NEEDS,
    ContactRow,
    ResidentRow,
    parse_residents,
    resident_identity,
    residents_from_text,
)
from devices.importer.sheet import Column, Parsed, RowError, read_text

__all__ = [
    "CATEGORIES",
    "CHANNELS",
    "DEVICE_COLUMNS",
    "KINDS",
    "MAX_CONTACTS",
    "RESIDENT_COLUMNS",
    "SERVICE_NEEDS",
    "Column",
    "ContactRow",
    "DeviceRow",
    "ImportFileError",
    "Parsed",
    "ResidentRow",
    "RowError",
    "devices_from_text",
    "parse_devices",
    "parse_residents",
    "read_text",
    "resident_identity",
    "residents_from_text",
]
