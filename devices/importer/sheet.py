"""Reading a spreadsheet (CSV) as Excel and WPS write it: the file, the header, each row's cells.

Generic over the columns: `residents` and `devices` say which columns and how to read a row.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Generic, TypeVar

from core.phones import normalise_phone
from devices.exceptions import ImportFileError

__all__ = ["Cells", "Column", "Parsed", "RowError", "parse_rows", "read_text", "split_list"]

_EXCEL_NUMBER: Final = re.compile(r"\d(?:\.\d+)?[eE]\+?\d+")
_LIST_SEPARATORS: Final = re.compile(r"[;；、,，]")
_HEADER_NOISE: Final = re.compile(r"[\s_\-()（）]")

RowT = TypeVar("RowT")


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


@dataclass(slots=True)
class Parsed(Generic[RowT]):
    """Good rows, the problems of the bad ones, and how many data rows the file had."""

    rows: list[RowT] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    total: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # key -> header as written


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


# -- the header ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Table:
    header_row: int
    index: dict[str, int]
    headers: dict[str, str]
    ignored: list[str]
    width: int
    rows: list[tuple[int, list[str]]]


@dataclass(slots=True)
class _Header:
    """Which column key sits at which position, and the header as the file wrote it."""

    index: dict[str, int] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


def _read_header(header: list[str], columns: Sequence[Column]) -> _Header:
    lookup = {_squash(spelling): c.key for c in columns for spelling in (c.key, *c.aliases)}
    found = _Header()
    for position, raw in enumerate(header):
        written = raw.replace("\ufeff", "").strip()
        if not written:
            continue
        key = lookup.get(_squash(written))
        if key is None:
            found.ignored.append(written)
        elif key in found.index:
            raise ImportFileError(
                f"表头“{found.headers[key]}”和“{written}”是同一列 {key}",
                f"headers {found.headers[key]!r} and {written!r} both name column {key}",
            )
        else:
            found.index[key] = position
            found.headers[key] = written
    return found


def _table(text: str, columns: Sequence[Column]) -> _Table:
    records = _records(text)
    numbered = [(i, rec) for i, rec in enumerate(records, start=1) if any(c.strip() for c in rec)]
    if not numbered:
        raise ImportFileError("文件是空的：第一行应是表头", "the file is empty: no header row")
    header_row, header = numbered[0]
    found = _read_header(header, columns)
    missing = [c for c in columns if c.required and c.key not in found.index]
    if missing:
        names_zh = "、".join(f"{c.aliases[0]}（{c.key}）" for c in missing)
        names_en = ", ".join(c.key for c in missing)
        raise ImportFileError(
            f"第 {header_row} 行的表头缺少必填列：{names_zh}",
            f"the header (row {header_row}) lacks required columns: {names_en}",
        )
    return _Table(header_row, found.index, found.headers, found.ignored, len(header), numbered[1:])


# -- one row -------------------------------------------------------------------


class Cells:
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
        """The cell's text, stripped; empty when the column is missing."""
        position = self._table.index.get(key)
        if position is None or position >= len(self._cells):
            return ""
        return self._cells[position].strip()

    def column(self, key: str) -> str:
        """The column's header as the file wrote it."""
        return self._table.headers.get(key, key)

    def error(self, key: str, value: str, message: str, message_en: str) -> None:
        """Note a problem in this row's cell `key`."""
        self.errors.append(RowError(self.number, self.column(key), value, message, message_en))

    def text(self, key: str, max_len: int, *, required: bool = False) -> str | None:
        """A text cell of at most `max_len` characters; None when empty."""
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
        """One of the canonical values, by any of its spellings; None when empty."""
        value = self.get(key)
        if not value:
            return None
        found = _pick(value, choices)
        if found is None:
            self.error(key, value, *_unknown(choices))
        return found

    def choices(self, key: str, choices: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
        """A list of canonical values, each once, in the order written."""
        picked: list[str] = []
        for part in split_list(self.get(key)):
            found = _pick(part, choices)
            if found is None:
                self.error(key, part, *_unknown(choices))
            elif found not in picked:
                picked.append(found)
        return tuple(picked)

    def phone(self, key: str) -> str | None:
        """A phone number, normalised (core.phones); None when empty or not a number."""
        value = self.get(key)
        if not value:
            return None
        normal = normalise_phone(value)
        if normal is None and _EXCEL_NUMBER.fullmatch(value):
            self.error(
                key,
                value,
                "号码被 Excel 变成了科学计数法：把这一列设为“文本”格式后重新填写",
                "Excel turned the number into scientific notation: format the column as text",
            )
        elif normal is None:
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
        """A whole number in [low, high]; None when empty or out of range."""
        value = self.get(key)
        if not value:
            return None
        if value.isdigit() and low <= int(value) <= high:
            return int(value)
        self.error(
            key, value, f"应为 {low} 到 {high} 之间的整数", f"expected a whole number {low}..{high}"
        )
        return None

    def forbid(self, key: str, message: str, message_en: str) -> None:
        """Note a problem when the cell `key` is filled in."""
        if self.get(key):
            self.error(key, self.get(key), message, message_en)


def split_list(value: str) -> list[str]:
    """A cell's list items, split on Chinese or English separators."""
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


# -- the whole file --------------------------------------------------------------


def parse_rows(
    text: str, columns: Sequence[Column], row: Callable[[Cells], RowT | None]
) -> Parsed[RowT]:
    """Each data row through `row`: a row with problems is kept out, its problems listed."""
    table = _table(text, columns)
    parsed: Parsed[RowT] = Parsed(ignored_columns=table.ignored, headers=dict(table.headers))
    for number, cells in table.rows:
        parsed.total += 1
        reader = Cells(number, cells, table)
        result = row(reader)
        if reader.errors or result is None:
            parsed.errors.extend(reader.errors)
        else:
            parsed.rows.append(result)
    return parsed
