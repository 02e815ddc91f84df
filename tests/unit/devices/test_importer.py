"""Spreadsheet imports and `carewatch admin`: parsing, per-row errors, a real SQLite registry."""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import sqlite3
import stat
from datetime import date
from pathlib import Path

import pytest

from carewatch import admin
from core.secrets import verify_password
from core.settings import Settings
from devices.importer import (
    ImportFileError,
    devices_from_text,
    normalise_phone,
    parse_residents,
    residents_from_text,
)
from devices.provisioning import ProvisioningError

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


# -- the command ---------------------------------------------------------------


def _run(tmp_path: Path, *argv: str, provisioner: object = None) -> int:
    parser = argparse.ArgumentParser()
    admin.add_arguments(parser)
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/r.db", mqtt_admin_url=None)
    return admin.main(parser.parse_args(argv), settings, provisioner=provisioner)  # type: ignore[arg-type]


def _rows(tmp_path: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(tmp_path / "r.db") as db:
        return db.execute(query).fetchall()


def _copy(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copy(DATA / name, tmp_path / name))


class RecordingProvisioner:
    def __init__(self, fail_on: str | None = None) -> None:
        self.added: dict[str, str] = {}
        self.fail_on = fail_on

    async def add_device(self, device_id: str, password: str) -> None:
        if device_id == self.fail_on:
            msg = "cannot reach the MQTT broker"
            raise ProvisioningError(msg)
        self.added[device_id] = password


def test_import_residents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _copy(tmp_path, "residents_zh.csv")
    assert _run(tmp_path, "import-residents", str(source)) == 1
    out = capsys.readouterr().out
    assert "第 3 行 row 3 · 电话 (phone) '1380013800'" in out
    assert "已导入 imported: 2" in out
    assert "社区 communities: 阳光社区、幸福社区" in out
    residents = _rows(tmp_path, "SELECT name, phone, service_needs FROM residents ORDER BY id")
    assert residents == [
        ("张桂英", "13800138000", '["daily_check", "weekly_visit"]'),
        ("陈德明", None, '["monthly_visit"]'),
    ]
    contacts = _rows(tmp_path, "SELECT position, name, relation FROM emergency_contacts")
    assert sorted(contacts) == [(0, "李明", "儿子"), (0, "陈静", "女儿"), (1, "王芳", "女儿")]
    # A row with errors creates nothing, not even its grid (二网格).
    assert _rows(tmp_path, "SELECT name FROM grids ORDER BY id") == [("一网格",), ("一网格",)]
    with (tmp_path / "residents_zh.errors.csv").open(encoding="utf-8-sig", newline="") as f:
        report = list(csv.DictReader(f))
    assert [(r["row"], r["column"]) for r in report] == [
        ("3", "电话"),
        ("4", "服务需求"),
        ("7", "出生年份"),
    ]
    assert all(r["error_zh"] and r["error_en"] for r in report)

    # Once fixed, the whole file imports again: rows already there are left alone.
    fixed = source.read_text(encoding="utf-8-sig").replace(",1380013800,", ",13800138001,")
    fixed = fixed.replace("每年体检", "每月探访").replace("1890", "1930")
    source.write_text(fixed, encoding="utf-8-sig")
    assert _run(tmp_path, "import-residents", str(source)) == 0
    out = capsys.readouterr().out
    assert "已导入 imported: 3" in out
    assert "already registered, unchanged: 2 (rows 2, 6)" in out
    assert len(_rows(tmp_path, "SELECT id FROM residents")) == 5
    assert not (tmp_path / "residents_zh.errors.csv").exists()


def test_dry_run_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _copy(tmp_path, "residents_zh.csv")
    assert _run(tmp_path, "import-residents", str(source), "--dry-run") == 1
    out = capsys.readouterr().out
    assert "dry run, nothing written" in out
    assert "可导入 would import: 2" in out
    assert not (tmp_path / "r.db").exists()
    assert (tmp_path / "residents_zh.errors.csv").exists()  # the report is the point of it

    assert _run(tmp_path, "migrate") == 0
    before = (tmp_path / "r.db").read_bytes()
    devices = _copy(tmp_path, "devices.csv")
    assert _run(tmp_path, "import-residents", str(source), "--dry-run") == 1
    assert _run(tmp_path, "import-devices", str(devices), "--dry-run") == 1
    assert _rows(tmp_path, "SELECT count(*) FROM communities") == [(0,)]
    assert (tmp_path / "r.db").read_bytes() == before
    assert not (tmp_path / "devices.credentials.csv").exists()


def test_import_devices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path, "import-residents", str(_copy(tmp_path, "residents_zh.csv"))) == 1
    broker = RecordingProvisioner()
    devices = _copy(tmp_path, "devices.csv")
    capsys.readouterr()
    assert _run(tmp_path, "import-devices", str(devices), provisioner=broker) == 1
    out = capsys.readouterr().out
    assert "第 5 行 row 5 · device_id 'wb-0001'" in out
    assert "第 8 行 row 8 · resident '不存在'" in out
    assert "broker updated: 4" in out
    registered = _rows(tmp_path, "SELECT id, kind FROM devices ORDER BY id")
    assert registered == [
        ("bin-0001", "bin"),
        ("bin-0002", "bin"),
        ("wb-0001", "wristband"),
        ("wb-0003", "wristband"),
    ]
    bindings = _rows(
        tmp_path,
        "SELECT b.device_id, r.name, b.category FROM device_bindings b "
        "LEFT JOIN residents r ON r.id = b.resident_id ORDER BY b.device_id",
    )
    assert bindings == [
        ("bin-0001", None, "kitchen"),
        ("bin-0002", None, "recyclable"),
        ("wb-0001", "张桂英", None),
        ("wb-0003", "陈德明", None),
    ]
    secrets = tmp_path / "devices.credentials.csv"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    with secrets.open(newline="") as f:
        assert dict(csv.reader(f)) == {"device_id": "password", **broker.added}
    with (tmp_path / "devices.errors.csv").open(encoding="utf-8-sig") as f:
        assert [r["row"] for r in csv.DictReader(f)] == ["5", "6", "8"]

    # Again, with the broker left out: nothing new, so no new passwords.
    assert _run(tmp_path, "import-devices", str(devices)) == 1
    assert "already registered, unchanged: 4" in capsys.readouterr().out
    assert len(secrets.read_text().splitlines()) == 5


def test_without_a_broker_the_summary_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "bins.csv"
    source.write_text(
        "设备编号,类型,社区,网格,楼栋,分类\nbin-9,垃圾桶,阳光,一网格,1号楼,有害垃圾\n"
    )
    out_path = tmp_path / "secret" / "pw.csv"
    out_path.parent.mkdir()
    assert _run(tmp_path, "import-devices", str(source), "--credentials-out", str(out_path)) == 0
    out = capsys.readouterr().out
    assert "broker NOT updated" in out
    assert "bin-9," in out_path.read_text()
    assert _rows(tmp_path, "SELECT category FROM device_bindings") == [("hazardous",)]


def test_a_broker_failure_stops_the_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "bins.csv"
    rows = "".join(f"bin-{i},bin,阳光,一网格,1号楼,other\n" for i in range(4))
    source.write_text("device_id,kind,community,grid,building,category\n" + rows)
    broker = RecordingProvisioner(fail_on="bin-1")
    assert _run(tmp_path, "import-devices", str(source), provisioner=broker) == 1
    out = capsys.readouterr().out
    assert "cannot reach the MQTT broker" in out
    assert "the import stopped after row 3" in out
    assert _rows(tmp_path, "SELECT id FROM devices") == [("bin-0",)]
    assert _rows(tmp_path, "SELECT device_id FROM device_bindings") == [("bin-0",)]
    assert list(broker.added) == ["bin-0"]
    lines = (tmp_path / "bins.credentials.csv").read_text().splitlines()
    assert lines == ["device_id,password", f"bin-0,{broker.added['bin-0']}"]


@pytest.mark.parametrize(
    ("data", "args"),
    [
        (None, ()),
        (b"", ()),
        ("姓名,社区,网格\n张三,阳光,一网格\n".encode("gbk"), ()),
        (b"name,community,grid\n", ()),
        (b"name,community,grid\n", ("--encoding", "klingon")),
    ],
)
def test_unusable_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes | None, args: tuple[str, ...]
) -> None:
    source = tmp_path / "r.csv"
    if data is not None:
        source.write_bytes(data)
    assert _run(tmp_path, "import-residents", str(source), *args) == 2
    assert "carewatch admin:" in capsys.readouterr().err
    assert not (tmp_path / "r.db").exists()


def test_create_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
    argv = ("create-user", "--username", "admin", "--role", "admin", "--password-stdin")
    assert _run(tmp_path, *argv) == 0
    assert "created admin 'admin'" in capsys.readouterr().out
    ((role, full_name, password_hash, active),) = _rows(
        tmp_path, "SELECT role, full_name, password_hash, is_active FROM users"
    )
    assert (role, full_name, active) == ("admin", "admin", 1)
    assert verify_password("correct horse", str(password_hash))

    monkeypatch.setattr("sys.stdin", io.StringIO("another one\n"))
    assert _run(tmp_path, *argv) == 1
    assert "exists" in capsys.readouterr().err


def test_create_user_refuses_short_passwords(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    argv = ("create-user", "--username", "admin", "--role", "admin", "--password-stdin")
    assert _run(tmp_path, *argv) == 1
    assert "at least 8 characters" in capsys.readouterr().err
    assert not (tmp_path / "r.db").exists()

    typed = iter(["long enough", "long enougH"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(typed))
    assert _run(tmp_path, "create-user", "--username", "admin", "--role", "admin") == 1
    assert "differ" in capsys.readouterr().err


def test_grid_worker_and_supervisor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("getpass.getpass", lambda prompt: "long enough")
    supervisor = ("create-user", "--username", "sup", "--role", "supervisor")
    assert _run(tmp_path, *supervisor) == 1  # no --community
    assert _run(tmp_path, *supervisor, "--community", "阳光社区") == 1  # not there yet
    assert "import residents first" in capsys.readouterr().err
    assert _run(tmp_path, "import-residents", str(_copy(tmp_path, "residents_zh.csv"))) == 1
    assert _run(tmp_path, *supervisor, "--community", "阳光社区") == 0
    worker = ("create-user", "--username", "w1", "--role", "grid_worker", "--full-name", "小王")
    assert _run(tmp_path, *worker, "--community", "阳光社区", "--grid", "一网格") == 0
    served = _rows(
        tmp_path,
        "SELECT u.full_name, g.name FROM grid_workers w "
        "JOIN users u ON u.id = w.user_id JOIN grids g ON g.id = w.grid_id",
    )
    assert served == [("小王", "一网格")]


def test_the_configured_broker_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CAREWATCH_MQTT_ADMIN_PASSWORD", raising=False)
    parser = argparse.ArgumentParser()
    admin.add_arguments(parser)
    args = parser.parse_args(["import-devices", str(_copy(tmp_path, "devices.csv"))])
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/r.db",
        mqtt_admin_url="mqtt://127.0.0.1:1883",  # no account: refused before any row
    )
    assert admin.main(args, settings) == 2
    assert "username and password" in capsys.readouterr().err
    assert not (tmp_path / "r.db").exists()
