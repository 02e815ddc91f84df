"""Wristbands and bins from a spreadsheet: columns, accepted values, one row into a DeviceRow."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from devices.broker.dynsec_bootstrap import RESERVED_USERNAMES
from devices.importer.sheet import Cells, Column, Parsed, parse_rows, read_text
from protocol.topics import DEVICE_ID_RE

__all__ = [
    "CATEGORIES",
    "DEVICE_COLUMNS",
    "KINDS",
    "DeviceRow",
    "devices_from_text",
    "parse_devices",
]

MAX_INTERVAL_S: Final = 86_400

# Canonical value -> the spellings accepted for it (compared case-insensitively).
KINDS: Final = {"wristband": ("手环", "智能手环"), "bin": ("垃圾桶", "智能垃圾桶")}
CATEGORIES: Final = {
    "kitchen": ("厨余垃圾", "厨余", "湿垃圾"),
    "recyclable": ("可回收物", "可回收"),
    "hazardous": ("有害垃圾", "有害"),
    "other": ("其他垃圾", "其他", "干垃圾"),
}

DEVICE_COLUMNS: Final[tuple[Column, ...]] = (
    Column("device_id", ("设备编号", "设备号", "设备ID"), required=True),
    Column("kind", ("类型", "设备类型"), required=True),
    Column("community", ("社区", "所属社区")),
    Column("grid", ("网格", "所属网格")),
    Column("building", ("楼栋", "楼号")),
    Column("category", ("分类", "垃圾分类")),
    Column("resident", ("居民", "居民姓名", "佩戴人")),
    Column("resident_id", ("居民编号", "居民ID", "档案编号")),
    Column("interval_s", ("上报间隔", "上报间隔秒", "interval")),
)


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """A good device row, its values canonical."""

    row: int
    device_id: str
    kind: str
    community: str | None
    grid: str | None
    building: str | None
    category: str | None
    resident: str | None
    resident_id: int | None
    interval_s: int


def _device_id(cells: Cells) -> str | None:
    value = cells.get("device_id")
    if not value:
        cells.error("device_id", value, "必填，不能为空", "required, may not be empty")
        return None
    if not DEVICE_ID_RE.fullmatch(value):
        cells.error(
            "device_id",
            value[:70],
            "设备编号只能由 1 到 64 个英文字母、数字、_ 或 - 组成",
            "a device id is 1 to 64 of A-Z a-z 0-9 _ -",
        )
        return None
    if value in RESERVED_USERNAMES:
        cells.error(
            "device_id",
            value,
            "这是系统保留的账号名，请换一个设备编号",
            "a reserved MQTT account name: give the device another id",
        )
        return None
    return value


def _required_for_bin(choices: Mapping[str, tuple[str, ...]]) -> tuple[str, str]:
    zh = "、".join(f"{a[0]}（{k}）" for k, a in choices.items())
    return f"垃圾桶必须填写分类：{zh}", f"required for a bin: {', '.join(choices)}"


def _check_bin(cells: Cells) -> None:
    """A bin stands in a building of a grid, with its category, and serves no resident."""
    for key in ("community", "grid", "building"):
        if not cells.get(key):
            cells.error(key, "", "垃圾桶必须填写此项", "required for a bin")
    if not cells.get("category"):
        cells.error("category", "", *_required_for_bin(CATEGORIES))
    cells.forbid("resident", "垃圾桶不绑定居民", "a bin is not bound to a resident")
    cells.forbid("resident_id", "垃圾桶不绑定居民", "a bin is not bound to a resident")


def _check_wristband(cells: Cells, resident: str | None) -> None:
    """A wristband has no category; its grid is named unless its resident's id is given."""
    cells.forbid("category", "手环没有垃圾分类", "a wristband has no category")
    if not cells.get("resident_id"):
        for key in ("community", "grid"):
            if not cells.get(key):
                cells.error(
                    key,
                    "",
                    "手环必须填写此项（或填写居民编号）",
                    "required for a wristband (unless resident_id is given)",
                )
    if resident and cells.get("resident_id"):
        cells.error(
            "resident",
            resident,
            "居民姓名和居民编号只填一个",
            "give either the resident's name or resident_id, not both",
        )


def _device(cells: Cells, device_id: str | None) -> DeviceRow | None:
    kind = cells.choice("kind", KINDS)
    if not cells.get("kind"):
        cells.error(
            "kind", "", "必填：手环（wristband）或垃圾桶（bin）", "required: wristband or bin"
        )
    row = DeviceRow(
        row=cells.number,
        device_id=device_id or "",
        kind=kind or "",
        community=cells.text("community", 100),
        grid=cells.text("grid", 100),
        building=cells.text("building", 100),
        category=cells.choice("category", CATEGORIES),
        resident=cells.text("resident", 100),
        resident_id=cells.integer("resident_id", 1, 2**31 - 1),
        interval_s=cells.integer("interval_s", 1, MAX_INTERVAL_S) or 60,
    )
    if kind == "bin":
        _check_bin(cells)
    elif kind == "wristband":
        _check_wristband(cells, row.resident)
    return row if device_id is not None and kind is not None else None


def devices_from_text(text: str) -> Parsed[DeviceRow]:
    """Parse and check a devices CSV already read into text."""
    seen: dict[str, int] = {}

    def row(cells: Cells) -> DeviceRow | None:
        device_id = _device_id(cells)
        device = _device(cells, device_id)
        if device_id is not None:
            first = seen.setdefault(device_id, cells.number)
            if first != cells.number:
                cells.error(
                    "device_id",
                    device_id,
                    f"设备编号与第 {first} 行重复",
                    f"duplicate device id: already on row {first}",
                )
        return None if cells.errors else device

    return parse_rows(text, DEVICE_COLUMNS, row)


def parse_devices(path: Path, *, encoding: str = "utf-8") -> Parsed[DeviceRow]:
    """Read and parse a devices CSV file."""
    return devices_from_text(read_text(path, encoding))
