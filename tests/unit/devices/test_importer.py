"""Spreadsheet imports: parsing, accepted spellings, per-row errors, unusable files."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from core.phones import normalise_phone
from devices.exceptions import ImportFileError
from devices.importer import devices_from_text, parse_residents, residents_from_text

DATA = Path(__file__).resolve().parents[2] / "data"
TODAY = date(2025, 6, 1)


# -- pure parsing --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13800138000", "13800138000"),
        ("138 0013 8000", "13800138000"),
        ("138-0013-8000", "13800138000"),
        ("+86 13800138000", "13800138000"),
        ("0571-87654321", "0571-87654321"),
        ("010-12345678-123", "010-12345678-123"),
        ("02112345678", "02112345678"),
        ("1380013800", None),  # ten digits
        ("12800138000", None),  # no mobile starts 12
        ("12345", None),
        ("1.38001E+10", None),  # what Excel makes of a long number
        ("call me", None),
    ],
)
def test_phone_numbers(raw: str, expected: str | None) -> None:
    assert normalise_phone(raw) == expected


def test_chinese_headers_bom_and_row_numbers() -> None:
    parsed = parse_residents(DATA / "residents_zh.csv", today=TODAY)
    assert parsed.total == 5  # the blank line is not a row
    assert [r.row for r in parsed.rows] == [2, 6]
    first = parsed.rows[0]
    assert (first.name, first.gender, first.birth_year) == ("张桂英", "female", 1938)
    assert (first.community, first.grid, first.building) == ("阳光社区", "一网格", "3号楼")
    assert first.health_notes == "高血压, 糖尿病"
    assert first.service_needs == ("daily_check", "weekly_visit")
    assert first.tags == ("独居", "低保")
    assert [(c.name, c.phone, c.channels) for c in first.contacts] == [
        ("李明", "13900139000", ("sms", "wechat")),
        ("王芳", "0571-87654321", ("sms",)),
    ]
    assert parsed.rows[1].birth_year == 1936  # "1936年"
    problems = {(e.row, e.column, e.value) for e in parsed.errors}
    assert problems == {
        (3, "电话", "1380013800"),
        (4, "服务需求", "每年体检"),
        (7, "出生年份", "1890"),
    }
    assert all(e.message and e.message_en for e in parsed.errors)


@pytest.mark.parametrize(
    ("cells", "column", "fragment"),
    [
        ("张三,一网格,阳光,2026,,", "birth_year", "1900..2025"),
        ("张三,一网格,阳光,1950,daily_check;yearly,", "service_needs", "unknown value"),
        ("张三,一网格,阳光,,,李四", "contact1_phone", "phone or a WeChat"),
        (",一网格,阳光,,,", "name", "required"),
        ("张三,,阳光,,,", "grid", "required"),
    ],
)
def test_resident_row_errors(cells: str, column: str, fragment: str) -> None:
    text = f"name,grid,community,birth_year,service_needs,contact1_name\n{cells}\n"
    parsed = residents_from_text(text, today=TODAY)
    assert parsed.rows == []
    assert any(e.column == column and fragment in e.message_en for e in parsed.errors), (
        parsed.errors
    )


def test_contact_channels_need_their_address() -> None:
    text = (
        "name,community,grid,contact1_name,contact1_phone,contact1_channels\n"
        "张三,阳光,一网格,李四,13900139000,wechat\n"
    )
    (error,) = residents_from_text(text, today=TODAY).errors
    assert "no WeChat id" in error.message_en


def test_same_resident_twice_in_a_file() -> None:
    rows = ("张三,阳光,一网格,301", "张三,阳光,一网格,302", "张三,阳光,一网格,301")
    text = "name,community,grid,room\n" + "\n".join(rows) + "\n"
    parsed = residents_from_text(text, today=TODAY)
    assert [r.row for r in parsed.rows] == [2, 3]
    assert [(e.row, "row 2" in e.message_en) for e in parsed.errors] == [(4, True)]


def test_device_rows() -> None:
    parsed = devices_from_text((DATA / "devices.csv").read_text(encoding="utf-8"))
    kinds = {r.device_id: (r.kind, r.category, r.interval_s) for r in parsed.rows}
    assert kinds["bin-0002"] == ("bin", "recyclable", 60)
    assert kinds["wb-0001"] == ("wristband", None, 30)
    assert kinds["wb-0003"] == ("wristband", None, 60)
    assert {(e.row, e.column) for e in parsed.errors} == {(5, "device_id"), (6, "device_id")}
    duplicate = next(e for e in parsed.errors if e.row == 5)
    assert "row 2" in duplicate.message_en


@pytest.mark.parametrize(
    ("row", "column"),
    [
        ("b1,bin,阳光,一网格,,kitchen,", "building"),
        ("b1,bin,阳光,一网格,3号楼,,", "category"),
        ("b1,bin,阳光,一网格,3号楼,glass,", "category"),
        ("b1,bin,阳光,一网格,3号楼,kitchen,张三", "resident"),
        ("w1,wristband,阳光,一网格,,kitchen,", "category"),
        ("w1,wristband,,,,,张三", "community"),
        ("w1,watch,阳光,一网格,,,", "kind"),
        ("carewatch-admin,wristband,阳光,一网格,,,", "device_id"),
        ("x" * 65 + ",wristband,阳光,一网格,,,", "device_id"),
    ],
)
def test_device_row_errors(row: str, column: str) -> None:
    text = f"device_id,kind,community,grid,building,category,resident\n{row}\n"
    parsed = devices_from_text(text)
    assert parsed.rows == []
    assert column in {e.column for e in parsed.errors}, parsed.errors


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (b"\n\n", "empty"),
        (b"name,grid\n", "community"),  # a required column is missing
        ("姓名,社区,网格\n张三,阳光,一网格\n".encode("gbk"), "not utf-8"),
        (b"name,\xe5\xa7\x93\xe5\x90\x8d,community,grid\n", "both name column name"),
    ],
)
def test_unusable_files(tmp_path: Path, data: bytes, fragment: str) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(data)
    with pytest.raises(ImportFileError) as caught:
        parse_residents(path)
    assert fragment in caught.value.message_en
    assert caught.value.message


def test_gbk_file_with_its_encoding(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes("姓名,社区,网格\n张三,阳光,一网格\n".encode("gbk"))
    assert parse_residents(path, encoding="gb18030").rows[0].name == "张三"
