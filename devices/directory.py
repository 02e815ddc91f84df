"""Who a device is, from a CSV file: its kind and context (grid, building, bin category).

The file is the fleet manifest the simulators write, header `device_id,kind,grid,building,category`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from devices.exceptions import DirectoryError
from protocol.models import Category, Kind
from protocol.topics import DEVICE_ID_RE


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A device's kind and registry context, as the ingester and the rules see it."""

    device_id: str
    kind: Kind
    grid: str | None = None
    building: str | None = None
    category: Category | None = None


def load_devices_csv(path: Path) -> dict[str, DeviceInfo]:
    """Read a device CSV; raise DirectoryError naming the first bad row."""
    devices: dict[str, DeviceInfo] = {}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"device_id", "kind"} - set(reader.fieldnames or ())
            if missing:
                msg = f"{path}: the header lacks {', '.join(sorted(missing))}"
                raise DirectoryError(msg)
            for row_no, row in enumerate(reader, start=2):
                device_id = (row.get("device_id") or "").strip()
                if not DEVICE_ID_RE.fullmatch(device_id):
                    msg = f"{path}:{row_no}: device_id {device_id!r} is not 1-64 of A-Za-z0-9_-"
                    raise DirectoryError(msg)
                try:
                    kind = Kind((row.get("kind") or "").strip())
                    category_text = (row.get("category") or "").strip()
                    category = Category(category_text) if category_text else None
                except ValueError as exc:
                    msg = f"{path}:{row_no}: {exc}"
                    raise DirectoryError(msg) from exc
                devices[device_id] = DeviceInfo(
                    device_id,
                    kind,
                    grid=(row.get("grid") or "").strip() or None,
                    building=(row.get("building") or "").strip() or None,
                    category=category,
                )
    except OSError as exc:
        msg = f"cannot read the device file {path}: {exc}"
        raise DirectoryError(msg) from exc
    return devices
