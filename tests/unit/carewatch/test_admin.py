"""`carewatch admin`: imports into a real SQLite registry, per-row errors, create-user."""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import sqlite3
import stat
from pathlib import Path

import pytest

from carewatch import admin
from core.secrets import verify_password
from core.settings import Settings
from devices.exceptions import ProvisioningError

DATA = Path(__file__).resolve().parents[2] / "data"


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
