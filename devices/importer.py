"""Residents and devices from a spreadsheet (CSV): parsed and validated, nothing written.

The way a community starts is a spreadsheet, so this module reads what Excel
and WPS write: UTF-8 with or without a byte-order mark, English or Chinese
column headers (姓名, 网格, 紧急联系人1电话, ...), Chinese list separators and
value aliases (手环, 厨余垃圾, 每周探访). Each data row is checked on its own:
a good row becomes a frozen `ResidentRow` or `DeviceRow`, a bad one gives
`RowError`s naming its spreadsheet row number (the header is row 1) and the
column as written in the file, in Chinese and English. Whole-file problems
(missing file, not UTF-8, no header, a required column missing) raise
`ImportFileError`. Writing to the registry is `carewatch.admin`'s job.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

from devices.dynsec_bootstrap import RESERVED_USERNAMES
from protocol.topics import DEVICE_ID_RE

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
    "normalise_phone",
    "parse_devices",
    "parse_residents",
    "read_text",
    "resident_identity",
    "residents_from_text",
]

MAX_CONTACTS: Final = 3
FIRST_BIRTH_YEAR: Final = 1900
MAX_INTERVAL_S: Final = 86_400

# Canonical value -> the spellings accepted for it (compared case-insensitively).
SERVICE_NEEDS: Final = {
    "daily_check": ("每日巡查", "每日检查", "每日问候"),
    "weekly_visit": ("每周探访", "每周走访"),
    "monthly_visit": ("每月探访", "每月走访"),
}
CHANNELS: Final = {"sms": ("短信",), "wechat": ("微信",)}
KINDS: Final = {"wristband": ("手环", "智能手环"), "bin": ("垃圾桶", "智能垃圾桶")}
CATEGORIES: Final = {
    "kitchen": ("厨余垃圾", "厨余", "湿垃圾"),
    "recyclable": ("可回收物", "可回收"),
    "hazardous": ("有害垃圾", "有害"),
    "other": ("其他垃圾", "其他", "干垃圾"),
}
GENDERS: Final = {"male": ("男", "m"), "female": ("女", "f")}

_MOBILE: Final = re.compile(r"(?:\+?86|0086)?(1[3-9]\d{9})")
_LANDLINE: Final = re.compile(r"0\d{2,3}-?\d{7,8}(?:-\d{1,6})?")
_EXCEL_NUMBER: Final = re.compile(r"\d(?:\.\d+)?[eE]\+?\d+")
_YEAR: Final = re.compile(r"(\d{4})(?:年|[-/.]\d{1,2}[-/.]\d{1,2}日?)?")
_LIST_SEPARATORS: Final = re.compile(r"[;；、,，]")
_HEADER_NOISE: Final = re.compile(r"[\s_\-()（）]")


class ImportFileError(Exception):
    """The file cannot be imported at all (exit code 2); `message` is Chinese."""

    def __init__(self, message: str, message_en: str) -> None:
        super().__init__(message_en)
        self.message = message
        self.message_en = message_en


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem in one cell: spreadsheet row (header = 1), column as written in the file."""

    row: int
    column: str
    value: str
    message: str
    message_en: str


@dataclass(frozen=True, slots=True)
class Column:
    """A column: its English key and the other headers accepted for it."""

    key: str
    aliases: tuple[str, ...] = ()
    required: bool = False


@dataclass(frozen=True, slots=True)
class ContactRow:
    name: str
    relation: str
    phone: str | None
    wechat: str | None
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ResidentRow:
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
        """The fields `devices.registry.create_resident` takes."""
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


@dataclass(frozen=True, slots=True)
class DeviceRow:
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


RowT = TypeVar("RowT")


@dataclass(slots=True)
class Parsed(Generic[RowT]):
    """Good rows, the problems of the bad ones, and how many data rows the file had."""

    rows: list[RowT] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    total: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # key -> header as written


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


# -- the file ------------------------------------------------------------------


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """The file's text; a UTF-8 byte-order mark (Excel's "CSV UTF-8") is dropped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImportFileError(f"找不到文件 {path}", f"no such file: {path}") from None
    except OSError as exc:
        raise ImportFileError(
            f"无法读取文件 {path}：{exc.strerror}", f"cannot read {path}: {exc.strerror}"
        ) from None
    codec = "utf-8-sig" if encoding.replace("_", "-").lower() in ("utf-8", "utf8") else encoding
    try:
        return data.decode(codec)
    except LookupError:
        raise ImportFileError(
            f"不认识的编码 {encoding!r}", f"unknown encoding {encoding!r}"
        ) from None
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            f"文件不是 {encoding} 编码（第 {exc.start} 字节）："
            "在 Excel 中请另存为“CSV UTF-8（逗号分隔）”，或用 --encoding gb18030 读取 GBK 文件",
            f"the file is not {encoding} (byte {exc.start}): save it from Excel as "
            "'CSV UTF-8 (comma delimited)', or read a GBK file with --encoding gb18030",
        ) from None


def _squash(header: str) -> str:
    return _HEADER_NOISE.sub("", header.replace("\ufeff", "")).casefold()


def _records(text: str) -> list[list[str]]:
    if "\x00" in text:
        raise ImportFileError(
            "文件含有空字节：不是 UTF-8 文本的 CSV（可能是 UTF-16 或 xlsx）",
            "the file holds NUL bytes: not a UTF-8 CSV (UTF-16 text or an .xlsx?)",
        )
    try:
        return list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise ImportFileError(f"CSV 格式错误：{exc}", f"malformed CSV: {exc}") from None


@dataclass(frozen=True, slots=True)
class _Table:
    header_row: int
    index: dict[str, int]
    headers: dict[str, str]
    ignored: list[str]
    width: int
    rows: list[tuple[int, list[str]]]


def _table(text: str, columns: Sequence[Column]) -> _Table:
    records = _records(text)
    numbered = [(i, rec) for i, rec in enumerate(records, start=1) if any(c.strip() for c in rec)]
    if not numbered:
        raise ImportFileError("文件是空的：第一行应是表头", "the file is empty: no header row")
    header_row, header = numbered[0]
    lookup: dict[str, str] = {}
    for col in columns:
        for spelling in (col.key, *col.aliases):
            lookup[_squash(spelling)] = col.key
    index: dict[str, int] = {}
    headers: dict[str, str] = {}
    ignored: list[str] = []
    for position, raw in enumerate(header):
        written = raw.replace("\ufeff", "").strip()
        if not written:
            continue
        key = lookup.get(_squash(written))
        if key is None:
            ignored.append(written)
        elif key in index:
            raise ImportFileError(
                f"表头“{headers[key]}”和“{written}”是同一列 {key}",
                f"headers {headers[key]!r} and {written!r} both name column {key}",
            )
        else:
            index[key] = position
            headers[key] = written
    missing = [c for c in columns if c.required and c.key not in index]
    if missing:
        names_zh = "、".join(f"{c.aliases[0]}（{c.key}）" for c in missing)
        names_en = ", ".join(c.key for c in missing)
        raise ImportFileError(
            f"第 {header_row} 行的表头缺少必填列：{names_zh}",
            f"the header (row {header_row}) lacks required columns: {names_en}",
        )
    return _Table(header_row, index, headers, ignored, len(header), numbered[1:])


class _Cells:
    """One data row: its cells by column key, and the problems found so far."""

    def __init__(self, number: int, cells: list[str], table: _Table) -> None:
        self.number = number
        self._cells = cells
        self._table = table
        self.errors: list[RowError] = []
        extra = [c for c in cells[table.width :] if c.strip()]
        if extra:
            self.errors.append(
                RowError(
                    number,
                    "",
                    extra[0],
                    "这一行的单元格比表头多：是否有没加引号的逗号？",
                    "this row has more cells than the header: an unquoted comma?",
                )
            )

    def get(self, key: str) -> str:
        position = self._table.index.get(key)
        if position is None or position >= len(self._cells):
            return ""
        return self._cells[position].strip()

    def column(self, key: str) -> str:
        return self._table.headers.get(key, key)

    def error(self, key: str, value: str, message: str, message_en: str) -> None:
        self.errors.append(RowError(self.number, self.column(key), value, message, message_en))

    def text(self, key: str, max_len: int, *, required: bool = False) -> str | None:
        value = self.get(key)
        if not value:
            if required:
                self.error(key, value, "必填，不能为空", "required, may not be empty")
            return None
        if len(value) > max_len:
            self.error(
                key,
                value[:40],
                f"太长：最多 {max_len} 个字",
                f"too long: at most {max_len} characters",
            )
            return None
        return value

    def choice(self, key: str, choices: Mapping[str, tuple[str, ...]]) -> str | None:
        value = self.get(key)
        if not value:
            return None
        found = _pick(value, choices)
        if found is None:
            self.error(key, value, *_unknown(choices))
        return found

    def choices(self, key: str, choices: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
        picked: list[str] = []
        for part in _split(self.get(key)):
            found = _pick(part, choices)
            if found is None:
                self.error(key, part, *_unknown(choices))
            elif found not in picked:
                picked.append(found)
        return tuple(picked)

    def phone(self, key: str) -> str | None:
        value = self.get(key)
        if not value:
            return None
        normal = normalise_phone(value)
        if normal is None:
            if _EXCEL_NUMBER.fullmatch(value):
                self.error(
                    key,
                    value,
                    "号码被 Excel 变成了科学计数法：把这一列设为“文本”格式后重新填写",
                    "Excel turned the number into scientific notation: format the column as text",
                )
            else:
                self.error(
                    key,
                    value,
                    "不是有效的电话号码：应为 11 位手机号（1[3-9] 开头）"
                    "或带区号的座机号（如 0571-87654321）",
                    "not a phone number: a Chinese mobile (11 digits, 1[3-9]...) "
                    "or a landline with area code (0571-87654321)",
                )
        return normal

    def integer(self, key: str, low: int, high: int) -> int | None:
        value = self.get(key)
        if not value:
            return None
        if value.isdigit() and low <= int(value) <= high:
            return int(value)
        self.error(
            key, value, f"应为 {low} 到 {high} 之间的整数", f"expected a whole number {low}..{high}"
        )
        return None


def _split(value: str) -> list[str]:
    return [p.strip() for p in _LIST_SEPARATORS.split(value) if p.strip()]


def _pick(value: str, choices: Mapping[str, tuple[str, ...]]) -> str | None:
    wanted = value.casefold()
    for key, aliases in choices.items():
        if wanted == key or wanted in (a.casefold() for a in aliases):
            return key
    return None


def _unknown(choices: Mapping[str, tuple[str, ...]]) -> tuple[str, str]:
    zh = "、".join(f"{a[0]}（{k}）" if a else k for k, a in choices.items())
    return f"不认识的值，可以填：{zh}", f"unknown value, expected one of: {', '.join(choices)}"


def normalise_phone(value: str) -> str | None:
    """A Chinese mobile as 11 digits, or a landline as written; None when it is neither."""
    compact = re.sub(r"\s", "", value)
    mobile = _MOBILE.fullmatch(compact.replace("-", ""))
    if mobile:
        return mobile.group(1)
    if _LANDLINE.fullmatch(compact):
        return compact
    return None


def _parse(
    text: str, columns: Sequence[Column], row: Callable[[_Cells], RowT | None]
) -> Parsed[RowT]:
    table = _table(text, columns)
    parsed: Parsed[RowT] = Parsed(ignored_columns=table.ignored, headers=dict(table.headers))
    for number, cells in table.rows:
        parsed.total += 1
        reader = _Cells(number, cells, table)
        result = row(reader)
        if reader.errors or result is None:
            parsed.errors.extend(reader.errors)
        else:
            parsed.rows.append(result)
    return parsed


# -- residents -----------------------------------------------------------------


def _birth_year(cells: _Cells, this_year: int) -> int | None:
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


def _contact(cells: _Cells, n: int) -> ContactRow | None:
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
    if name is None:
        return None
    return ContactRow(name, relation, phone, wechat, channels)


def residents_from_text(text: str, *, today: date | None = None) -> Parsed[ResidentRow]:
    """Parse and check a residents CSV already read into text."""
    this_year = (today or date.today()).year
    seen: dict[tuple[object, ...], int] = {}

    def row(cells: _Cells) -> ResidentRow | None:
        contacts = [_contact(cells, n) for n in range(1, MAX_CONTACTS + 1)]
        resident = ResidentRow(
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
            tags=tuple(dict.fromkeys(_split(cells.get("tags")))),
            contacts=tuple(c for c in contacts if c is not None),
        )
        if cells.errors:
            return None
        identity = resident_identity(resident)
        first = seen.setdefault(identity, cells.number)
        if first != cells.number:
            cells.error(
                "name",
                resident.name,
                f"与第 {first} 行是同一位居民（同名、同网格、同住址、同出生年份）",
                f"the same resident as row {first} (name, grid, address and birth year)",
            )
            return None
        return resident

    return _parse(text, RESIDENT_COLUMNS, row)


def resident_identity(r: ResidentRow) -> tuple[object, ...]:
    """What makes two rows the same person: name, birth year and address within a grid."""
    return (r.community, r.grid, r.name, r.birth_year, r.building, r.unit, r.room)


def parse_residents(
    path: Path, *, encoding: str = "utf-8", today: date | None = None
) -> Parsed[ResidentRow]:
    return residents_from_text(read_text(path, encoding), today=today)


# -- devices -------------------------------------------------------------------


def _device_id(cells: _Cells) -> str | None:
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


def _forbid(cells: _Cells, key: str, message: str, message_en: str) -> None:
    if cells.get(key):
        cells.error(key, cells.get(key), message, message_en)


def devices_from_text(text: str) -> Parsed[DeviceRow]:
    """Parse and check a devices CSV already read into text."""
    seen: dict[str, int] = {}

    def row(cells: _Cells) -> DeviceRow | None:
        device_id = _device_id(cells)
        kind = cells.choice("kind", KINDS)
        if not cells.get("kind"):
            cells.error(
                "kind", "", "必填：手环（wristband）或垃圾桶（bin）", "required: wristband or bin"
            )
        community = cells.text("community", 100)
        grid = cells.text("grid", 100)
        building = cells.text("building", 100)
        category = cells.choice("category", CATEGORIES)
        resident = cells.text("resident", 100)
        resident_id = cells.integer("resident_id", 1, 2**31 - 1)
        interval_s = cells.integer("interval_s", 1, MAX_INTERVAL_S) or 60
        if kind == "bin":
            for key in ("community", "grid", "building"):
                if not cells.get(key):
                    cells.error(key, "", "垃圾桶必须填写此项", "required for a bin")
            if not cells.get("category"):
                cells.error("category", "", *_required_for_bin(CATEGORIES))
            _forbid(cells, "resident", "垃圾桶不绑定居民", "a bin is not bound to a resident")
            _forbid(cells, "resident_id", "垃圾桶不绑定居民", "a bin is not bound to a resident")
        elif kind == "wristband":
            _forbid(cells, "category", "手环没有垃圾分类", "a wristband has no category")
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
        if device_id is not None:
            first = seen.setdefault(device_id, cells.number)
            if first != cells.number:
                cells.error(
                    "device_id",
                    device_id,
                    f"设备编号与第 {first} 行重复",
                    f"duplicate device id: already on row {first}",
                )
        if cells.errors or device_id is None or kind is None:
            return None
        return DeviceRow(
            row=cells.number,
            device_id=device_id,
            kind=kind,
            community=community,
            grid=grid,
            building=building,
            category=category,
            resident=resident,
            resident_id=resident_id,
            interval_s=interval_s,
        )

    return _parse(text, DEVICE_COLUMNS, row)


def _required_for_bin(choices: Mapping[str, tuple[str, ...]]) -> tuple[str, str]:
    zh = "、".join(f"{a[0]}（{k}）" for k, a in choices.items())
    return f"垃圾桶必须填写分类：{zh}", f"required for a bin: {', '.join(choices)}"


def parse_devices(path: Path, *, encoding: str = "utf-8") -> Parsed[DeviceRow]:
    return devices_from_text(read_text(path, encoding))
