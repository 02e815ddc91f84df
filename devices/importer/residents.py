"""Residents (一人一档) from a spreadsheet: columns, accepted values, one row into a ResidentRow."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Final

from devices.importer.sheet import Cells, Column, Parsed, parse_rows, read_text, split_list

__all__ = [
    "CHANNELS",
    "MAX_CONTACTS",
    "RESIDENT_COLUMNS",
    "SERVICE_NEEDS",
    "ContactRow",
    "ResidentRow",
    "parse_residents",
    "resident_identity",
    "residents_from_text",
]

MAX_CONTACTS: Final = 3
FIRST_BIRTH_YEAR: Final = 1900

# Canonical value -> the spellings accepted for it (compared case-insensitively).
SERVICE_NEEDS: Final = {
    "daily_check": ("每日巡查", "每日检查", "每日问候"),
    "weekly_visit": ("每周探访", "每周走访"),
    "monthly_visit": ("每月探访", "每月走访"),
}
CHANNELS: Final = {"sms": ("短信",), "wechat": ("微信",)}
GENDERS: Final = {"male": ("男", "m"), "female": ("女", "f")}

_YEAR: Final = re.compile(r"(\d{4})(?:年|[-/.]\d{1,2}[-/.]\d{1,2}日?)?")


def _contact_columns(n: int) -> tuple[Column, ...]:
    zh = f"紧急联系人{n}"
    return (
        Column(f"contact{n}_name", (f"{zh}姓名", zh)),
        Column(f"contact{n}_relation", (f"{zh}关系",)),
        Column(f"contact{n}_phone", (f"{zh}电话", f"{zh}手机")),
        Column(f"contact{n}_wechat", (f"{zh}微信",)),
        Column(f"contact{n}_channels", (f"{zh}通知方式", f"{zh}渠道")),
    )


RESIDENT_COLUMNS: Final[tuple[Column, ...]] = (
    Column("name", ("姓名", "居民姓名"), required=True),
    Column("gender", ("性别",)),
    Column("birth_year", ("出生年份", "出生年")),
    Column("community", ("社区", "所属社区"), required=True),
    Column("grid", ("网格", "所属网格"), required=True),
    Column("building", ("楼栋", "楼号")),
    Column("unit", ("单元",)),
    Column("room", ("房间", "房号", "门牌号")),
    Column("phone", ("电话", "手机", "联系电话", "手机号")),
    Column("health_notes", ("健康备注", "健康状况")),
    Column("service_needs", ("服务需求",)),
    Column("tags", ("标签",)),
    *(c for n in range(1, MAX_CONTACTS + 1) for c in _contact_columns(n)),
)


@dataclass(frozen=True, slots=True)
class ContactRow:
    """An emergency contact as a row gave it."""

    name: str
    relation: str
    phone: str | None
    wechat: str | None
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ResidentRow:
    """A good resident row, its values canonical."""

    row: int
    name: str
    gender: str | None
    birth_year: int | None
    community: str
    grid: str
    building: str | None
    unit: str | None
    room: str | None
    phone: str | None
    health_notes: str
    service_needs: tuple[str, ...]
    tags: tuple[str, ...]
    contacts: tuple[ContactRow, ...]

    def profile(self, *, grid_id: int, building_id: int | None) -> dict[str, Any]:
        """The fields `devices.residents.create_resident` takes."""
        return {
            "grid_id": grid_id,
            "building_id": building_id,
            "name": self.name,
            "gender": self.gender,
            "birth_year": self.birth_year,
            "phone": self.phone,
            "unit": self.unit,
            "room": self.room,
            "health_notes": self.health_notes,
            "service_needs": list(self.service_needs),
            "tags": list(self.tags),
            "contacts": [
                {
                    "name": c.name,
                    "relation": c.relation,
                    "phone": c.phone,
                    "wechat": c.wechat,
                    "channels": list(c.channels),
                }
                for c in self.contacts
            ],
        }


def _birth_year(cells: Cells, this_year: int) -> int | None:
    value = cells.get("birth_year")
    if not value:
        return None
    match = _YEAR.fullmatch(value)
    if match and FIRST_BIRTH_YEAR <= int(match.group(1)) <= this_year:
        return int(match.group(1))
    cells.error(
        "birth_year",
        value,
        f"出生年份应为 {FIRST_BIRTH_YEAR} 到 {this_year} 之间的四位数字",
        f"birth year must be a 4-digit year {FIRST_BIRTH_YEAR}..{this_year}",
    )
    return None


def _check_reachable(cells: Cells, n: int, channels: tuple[str, ...]) -> None:
    """A contact needs a way to be told, and the address of each channel chosen."""
    key = f"contact{n}_"
    if not channels and not cells.get(key + "phone"):
        cells.error(
            key + "phone",
            "",
            f"紧急联系人{n}需要电话或微信，否则无法通知",
            f"contact {n} needs a phone or a WeChat id to be reachable",
        )
    if "sms" in channels and not cells.get(key + "phone"):
        cells.error(key + "phone", "", "选择了短信通知，但没有电话", "sms chosen but no phone")
    if "wechat" in channels and not cells.get(key + "wechat"):
        cells.error(
            key + "wechat", "", "选择了微信通知，但没有微信号", "wechat chosen but no WeChat id"
        )


def _contact(cells: Cells, n: int) -> ContactRow | None:
    key = f"contact{n}_"
    if not any(cells.get(key + part) for part in ("name", "relation", "phone", "wechat")):
        if cells.get(key + "channels"):
            cells.error(
                key + "channels",
                cells.get(key + "channels"),
                f"填了通知方式，但没有紧急联系人{n}",
                f"channels given but no contact {n}",
            )
        return None
    name = cells.text(key + "name", 100, required=True)
    relation = cells.text(key + "relation", 32) or ""
    phone = cells.phone(key + "phone")
    wechat = cells.text(key + "wechat", 200)
    channels = cells.choices(key + "channels", CHANNELS)
    if not channels:
        channels = tuple(c for c, have in (("sms", phone), ("wechat", wechat)) if have)
    _check_reachable(cells, n, channels)
    if name is None:
        return None
    return ContactRow(name, relation, phone, wechat, channels)


def _resident(cells: Cells, this_year: int) -> ResidentRow:
    contacts = [_contact(cells, n) for n in range(1, MAX_CONTACTS + 1)]
    return ResidentRow(
        row=cells.number,
        name=cells.text("name", 100, required=True) or "",
        gender=cells.choice("gender", GENDERS),
        birth_year=_birth_year(cells, this_year),
        community=cells.text("community", 100, required=True) or "",
        grid=cells.text("grid", 100, required=True) or "",
        building=cells.text("building", 100),
        unit=cells.text("unit", 32),
        room=cells.text("room", 32),
        phone=cells.phone("phone"),
        health_notes=cells.get("health_notes"),
        service_needs=cells.choices("service_needs", SERVICE_NEEDS),
        tags=tuple(dict.fromkeys(split_list(cells.get("tags")))),
        contacts=tuple(c for c in contacts if c is not None),
    )


def residents_from_text(text: str, *, today: date | None = None) -> Parsed[ResidentRow]:
    """Parse and check a residents CSV already read into text."""
    this_year = (today or date.today()).year
    seen: dict[tuple[object, ...], int] = {}

    def row(cells: Cells) -> ResidentRow | None:
        resident = _resident(cells, this_year)
        if cells.errors:
            return None
        first = seen.setdefault(resident_identity(resident), cells.number)
        if first != cells.number:
            cells.error(
                "name",
                resident.name,
                f"与第 {first} 行是同一位居民（同名、同网格、同住址、同出生年份）",
                f"the same resident as row {first} (name, grid, address and birth year)",
            )
            return None
        return resident

    return parse_rows(text, RESIDENT_COLUMNS, row)


def resident_identity(r: ResidentRow) -> tuple[object, ...]:
    """What makes two rows the same person: name, birth year and address within a grid."""
    return (r.community, r.grid, r.name, r.birth_year, r.building, r.unit, r.room)


def parse_residents(
    path: Path, *, encoding: str = "utf-8", today: date | None = None
) -> Parsed[ResidentRow]:
    """Read and parse a residents CSV file."""
    return residents_from_text(read_text(path, encoding), today=today)
