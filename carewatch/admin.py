"""`carewatch admin`: the registry's schema, its first users, and bulk imports from spreadsheets.

Run on the server by whoever holds the database, so it needs no login: this is
how the very first admin comes to exist. Imports act as an administrator
(`ADMIN_SCOPE`) through `devices.registry`; each good row commits on its own,
so one bad row never loses the others. Exit codes: 0 every row imported (or
already there), 1 some rows skipped or a refusal, 2 unusable input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import getpass
import logging
import os
import re
import sqlite3
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import ColumnElement, delete, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from carewatch.migrations import migrate
from core.db import Database
from core.secrets import hash_password, new_device_password
from core.settings import MqttTarget, Settings
from devices import registry
from devices.access import Role, Scope
from devices.importer import (
    DeviceRow,
    ImportFileError,
    Parsed,
    ResidentRow,
    RowError,
    normalise_phone,
    parse_devices,
    parse_residents,
)
from devices.provisioning import BrokerProvisioner, DynsecProvisioner, ProvisioningError
from devices.registry import RegistryError
from devices.tables import Building, Community, Device, Grid, Resident, User

__all__ = ["ADMIN_SCOPE", "MIN_PASSWORD_LENGTH", "add_arguments", "main"]

ADMIN_SCOPE: Final = Scope(user_id=0, role=Role.ADMIN, community_id=None, grid_ids=frozenset())
MIN_PASSWORD_LENGTH: Final = 8
EXIT_OK: Final = 0
EXIT_SKIPPED: Final = 1
EXIT_UNUSABLE: Final = 2
_USERNAME: Final = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_SHOWN_ERRORS: Final = 50  # the rest are in FILE.errors.csv
_ADMIN_PASSWORD_ENV: Final = "CAREWATCH_MQTT_ADMIN_PASSWORD"

SessionFactory = Callable[[], AsyncSession]
RowT = TypeVar("RowT", ResidentRow, DeviceRow)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the admin actions to a (sub)parser."""
    sub = parser.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    sub.add_parser("migrate", help="bring the registry database to the newest schema (Alembic)")
    user = sub.add_parser("create-user", help="create a user who logs in (no login needed)")
    user.add_argument("--username", required=True)
    user.add_argument("--role", required=True, choices=[r.value for r in Role])
    user.add_argument("--full-name", metavar="NAME", help="shown in the app; default: username")
    user.add_argument(
        "--community", metavar="NAME", help="a supervisor's community (required for supervisors)"
    )
    user.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="NAME",
        help="a grid of --community this grid worker serves (repeat for several)",
    )
    user.add_argument("--phone", help="mobile or landline, for escalations")
    user.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input instead of prompting",
    )
    residents = sub.add_parser("import-residents", help="residents (一人一档) from a CSV file")
    devices = sub.add_parser("import-devices", help="wristbands and bins from a CSV file")
    for command in (residents, devices):
        command.add_argument("file", type=Path, metavar="FILE.csv")
        command.add_argument(
            "--dry-run",
            action="store_true",
            help="check every row against (a copy of) the registry; write only the error report",
        )
        command.add_argument(
            "--encoding",
            default="utf-8",
            help="the file's encoding (default utf-8, with or without BOM; gb18030 for GBK files)",
        )
    devices.add_argument(
        "--credentials-out",
        type=Path,
        metavar="PATH",
        help="where to write device_id,password (default: FILE.credentials.csv next to FILE)",
    )
    devices.add_argument(
        "--broker-admin-url",
        metavar="URL",
        help="mqtt://carewatch-admin[:PASSWORD]@host:1883: add each device to the broker "
        "(dynamic security); default $CAREWATCH_MQTT_ADMIN_URL; without a password in it, "
        f"${_ADMIN_PASSWORD_ENV} gives it",
    )


def main(
    args: argparse.Namespace,
    settings: Settings,
    *,
    provisioner: BrokerProvisioner | None = None,
) -> int:
    """Run one admin action; returns the exit code."""
    command = args.admin_command
    # Alembic's INFO lines mean nothing to someone importing a spreadsheet; `migrate`
    # keeps those that name the revisions applied.
    quiet = "alembic.runtime.plugins" if command == "migrate" else "alembic"
    logging.getLogger(quiet).setLevel(logging.WARNING)
    url = settings.database_url_resolved
    try:
        if command == "migrate":
            return asyncio.run(_migrate(url))
        if command == "create-user":
            return _create_user(args, url)
        if command == "import-residents":
            return asyncio.run(_import_residents(args, url))
        if command == "import-devices":
            broker_url = args.broker_admin_url or settings.mqtt_admin_url
            if provisioner is None and broker_url:
                provisioner = _dynsec(broker_url)
            return asyncio.run(_import_devices(args, url, provisioner))
    except _Refused as exc:
        _say(f"carewatch admin: {exc.message} / {exc.message_en}", sys.stderr)
        return exc.code
    except SQLAlchemyError as exc:
        _say(f"carewatch admin: 数据库出错 / database error ({_safe(url)}): {exc}", sys.stderr)
        return EXIT_UNUSABLE
    except OSError as exc:
        _say(f"carewatch admin: 文件出错 / file error: {exc}", sys.stderr)
        return EXIT_UNUSABLE
    msg = f"unknown admin action {command!r}"
    raise ValueError(msg)


class _Refused(Exception):
    def __init__(self, message: str, message_en: str, code: int = EXIT_SKIPPED) -> None:
        super().__init__(message_en)
        self.message = message
        self.message_en = message_en
        self.code = code


def _say(text: str, stream: TextIO | None = None) -> None:
    print(text, file=stream or sys.stdout, flush=True)


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


async def _migrate(url: str) -> int:
    database = Database(url)
    try:
        await migrate(database)
    finally:
        await database.dispose()
    _say(f"数据库已是最新结构 / registry schema is up to date: {_safe(url)}")
    return EXIT_OK


# -- users ---------------------------------------------------------------------


def _create_user(args: argparse.Namespace, url: str) -> int:
    username: str = args.username.strip()
    if not _USERNAME.fullmatch(username):
        raise _Refused(
            "用户名只能由 1 到 64 个英文字母、数字或 _ . @ - 组成",
            "a username is 1 to 64 of A-Z a-z 0-9 _ . @ -",
        )
    role = Role(args.role)
    if role is Role.SUPERVISOR and not args.community:
        raise _Refused("主管必须用 --community 指定社区", "a supervisor needs --community")
    if args.grid and not args.community:
        raise _Refused("--grid 需要同时给出 --community", "--grid needs --community")
    if args.grid and role is not Role.GRID_WORKER:
        raise _Refused("只有网格员属于网格（--grid）", "only a grid worker serves grids (--grid)")
    phone = normalise_phone(args.phone) if args.phone else None
    if args.phone and phone is None:
        raise _Refused(f"电话号码无效：{args.phone}", f"not a phone number: {args.phone}")
    password = _read_password(args.password_stdin)
    return asyncio.run(_store_user(url, args, username, role, phone, password))


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        try:
            password = getpass.getpass("密码 / password: ")
            again = getpass.getpass("再输一次 / again: ")
        except EOFError:
            raise _Refused(
                "没有终端可以输入密码：请用 --password-stdin",
                "no terminal to type a password on: use --password-stdin",
            ) from None
        if password != again:
            raise _Refused("两次输入的密码不一致", "the two passwords differ")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise _Refused(
            f"密码太短：至少 {MIN_PASSWORD_LENGTH} 个字符",
            f"password too short: at least {MIN_PASSWORD_LENGTH} characters",
        )
    return password


async def _store_user(
    url: str,
    args: argparse.Namespace,
    username: str,
    role: Role,
    phone: str | None,
    password: str,
) -> int:
    database = Database(url)
    try:
        await migrate(database)
        async with database.sessions() as session:
            if await session.scalar(select(User.id).where(User.username == username)):
                raise _Refused(f"用户名 {username} 已存在", f"user {username!r} exists")
            community = None
            if args.community:
                community = await session.scalar(
                    select(Community).where(Community.name == args.community)
                )
                if community is None:
                    known = (await session.scalars(select(Community.name))).all()
                    raise _Refused(
                        f"没有叫“{args.community}”的社区（现有：{'、'.join(known) or '无'}）",
                        f"no community {args.community!r} (known: {', '.join(known) or 'none'}); "
                        "import residents first",
                    )
            grids = []
            for name in dict.fromkeys(args.grid):
                assert community is not None
                grid = await session.scalar(
                    select(Grid).where(Grid.community_id == community.id, Grid.name == name)
                )
                if grid is None:
                    raise _Refused(
                        f"社区“{community.name}”没有网格“{name}”",
                        f"community {community.name!r} has no grid {name!r}",
                    )
                grids.append(grid)
            user = User(
                username=username,
                full_name=(args.full_name or username).strip(),
                phone=phone,
                role=role.value,
                community_id=community.id if community else None,
                password_hash=hash_password(password),
                is_active=True,
            )
            session.add(user)
            await session.flush()
            for grid in grids:
                grid.workers.append(user)
            try:
                await session.commit()
            except IntegrityError:
                raise _Refused(f"用户名 {username} 已存在", f"user {username!r} exists") from None
            _say(f"已创建用户 / created {role.value} {username!r} (id {user.id})")
            if role is Role.GRID_WORKER and not grids:
                _say("提示：此网格员还没有网格，看不到任何居民 / note: no grids yet, sees nothing")
    finally:
        await database.dispose()
    return EXIT_OK


# -- the registry to import into ---------------------------------------------------


@asynccontextmanager
async def _registry(url: str, *, dry_run: bool) -> AsyncIterator[SessionFactory]:
    """Registry sessions; a dry run gets a copy (SQLite) or a transaction rolled back at the end."""
    if not dry_run:
        database = Database(url)
        try:
            await migrate(database)
            yield database.sessions
        finally:
            await database.dispose()
        return
    if url.startswith("sqlite"):
        # A copy, not a long transaction: that would lock the live service's writes out.
        with tempfile.TemporaryDirectory(prefix="carewatch-dry-run-") as tmp:
            copy = Path(tmp) / "registry.db"
            source = make_url(url).database
            if source and source != ":memory:" and Path(source).is_file():
                await asyncio.to_thread(_sqlite_copy, Path(source), copy)
            async with _registry(f"sqlite+aiosqlite:///{copy}", dry_run=False) as sessions:
                yield sessions
        return
    database = Database(url)
    try:
        async with database.engine.connect() as connection:
            outer = await connection.begin()
            try:
                if not await connection.run_sync(lambda c: inspect(c).has_table("devices")):
                    raise _Refused(
                        "数据库还没有建表：请先运行 carewatch admin migrate",
                        "the registry has no schema yet: run `carewatch admin migrate` first",
                        EXIT_UNUSABLE,
                    )
                # The registry's commits become savepoint releases; all is rolled back at the end.
                yield lambda: AsyncSession(
                    bind=connection,
                    join_transaction_mode="create_savepoint",
                    expire_on_commit=False,
                )
            finally:
                await outer.rollback()
    finally:
        await database.dispose()


def _sqlite_copy(source: Path, target: Path) -> None:
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)


class _Skip(Exception):
    """This row cannot be imported; `key` is the column to blame."""

    def __init__(self, key: str, value: str, message: str, message_en: str) -> None:
        super().__init__(message_en)
        self.key, self.value, self.message, self.message_en = key, value, message, message_en

    @classmethod
    def of(cls, key: str, value: str, exc: RegistryError) -> _Skip:
        return cls(key, value, exc.message, exc.message_en)


def _matches(column: Any, value: object) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value  # type: ignore[no-any-return]


class _Places:
    """Communities, grids and buildings by name; missing ones are created (as the admin)."""

    def __init__(self) -> None:
        self._communities: dict[str, int] = {}
        self._grids: dict[tuple[int, str], int] = {}
        self._buildings: dict[tuple[int, str], tuple[int, int]] = {}
        self.created: dict[str, list[str]] = {"community": [], "grid": [], "building": []}

    async def community(self, session: AsyncSession, name: str, *, create: bool) -> int | None:
        if name in self._communities:
            return self._communities[name]
        found = await session.scalar(select(Community.id).where(Community.name == name))
        if found is None and create:
            try:
                found = (await registry.create_community(session, ADMIN_SCOPE, name=name)).id
            except RegistryError as exc:
                raise _Skip.of("community", name, exc) from exc
            self.created["community"].append(name)
        if found is not None:
            self._communities[name] = found
        return found

    async def grid(
        self, session: AsyncSession, community: str, name: str, *, create: bool
    ) -> int | None:
        community_id = await self.community(session, community, create=create)
        if community_id is None:
            return None
        key = (community_id, name)
        if key in self._grids:
            return self._grids[key]
        found = await session.scalar(
            select(Grid.id).where(Grid.community_id == community_id, Grid.name == name)
        )
        if found is None and create:
            try:
                grid = await registry.create_grid(
                    session, ADMIN_SCOPE, community_id=community_id, name=name
                )
            except RegistryError as exc:
                raise _Skip.of("grid", name, exc) from exc
            found = grid.id
            self.created["grid"].append(f"{community} / {name}")
        if found is not None:
            self._grids[key] = found
        return found

    async def building(
        self, session: AsyncSession, community: str, grid: str, name: str, *, create: bool
    ) -> int | None:
        grid_id = await self.grid(session, community, grid, create=create)
        if grid_id is None:
            return None
        key = (self._communities[community], name)
        if key not in self._buildings:
            row = (
                await session.execute(
                    select(Building.id, Building.grid_id).where(
                        Building.community_id == key[0], Building.name == name
                    )
                )
            ).first()
            if row is not None:
                self._buildings[key] = (row[0], row[1])
            elif not create:
                return None
            else:
                try:
                    building = await registry.create_building(
                        session, ADMIN_SCOPE, grid_id=grid_id, name=name
                    )
                except RegistryError as exc:
                    raise _Skip.of("building", name, exc) from exc
                self._buildings[key] = (building.id, grid_id)
                self.created["building"].append(f"{community} / {name}")
        building_id, in_grid = self._buildings[key]
        if in_grid != grid_id:
            other = await session.scalar(select(Grid.name).where(Grid.id == in_grid))
            raise _Skip(
                "building",
                name,
                f"楼栋“{name}”属于网格“{other}”，不是“{grid}”",
                f"building {name!r} is in grid {other!r}, not {grid!r}",
            )
        return building_id


@dataclass(slots=True)
class _Run:
    """What an import did, row by row."""

    imported: int = 0
    unchanged: list[int] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


async def _each_row(
    rows: Sequence[RowT],
    parsed: Parsed[RowT],
    label: str,
    handle: Callable[[RowT], Awaitable[bool]],
) -> _Run:
    """Import rows one by one (`handle` says True: imported, False: already there)."""
    run = _Run(errors=list(parsed.errors))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    progress = Progress(*columns, TimeElapsedColumn(), console=Console(stderr=True))
    with progress:
        task = progress.add_task(label, total=len(rows))
        for row in rows:
            try:
                if await handle(row):
                    run.imported += 1
                else:
                    run.unchanged.append(row.row)
            except _Skip as skip:
                column = parsed.headers.get(skip.key, skip.key)
                run.errors.append(
                    RowError(row.row, column, skip.value, skip.message, skip.message_en)
                )
            except SQLAlchemyError as exc:
                detail = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
                run.errors.append(
                    RowError(
                        row.row, "", "", f"数据库拒绝了这一行：{detail}", f"database: {detail}"
                    )
                )
            progress.advance(task)
    run.errors.sort(key=lambda e: e.row)
    return run


# -- residents -----------------------------------------------------------------


async def _import_residents(args: argparse.Namespace, url: str) -> int:
    parsed = _parse(lambda: parse_residents(args.file, encoding=args.encoding))
    places = _Places()
    async with _registry(url, dry_run=args.dry_run) as sessions:

        async def handle(row: ResidentRow) -> bool:
            async with sessions() as session:
                grid_id = await places.grid(session, row.community, row.grid, create=True)
                assert grid_id is not None
                building_id = None
                if row.building:
                    building_id = await places.building(
                        session, row.community, row.grid, row.building, create=True
                    )
                existing = await session.scalar(
                    select(Resident.id)
                    .where(
                        Resident.grid_id == grid_id,
                        Resident.name == row.name,
                        _matches(Resident.birth_year, row.birth_year),
                        _matches(Resident.building_id, building_id),
                        _matches(Resident.unit, row.unit),
                        _matches(Resident.room, row.room),
                    )
                    .limit(1)
                )
                if existing is not None:
                    return False
                profile = row.profile(grid_id=grid_id, building_id=building_id)
                try:
                    await registry.create_resident(session, ADMIN_SCOPE, profile)
                except RegistryError as exc:
                    raise _Skip.of("name", row.name, exc) from exc
                return True

        run = await _each_row(parsed.rows, parsed, "居民 residents", handle)
    return _report(args, parsed, run, places, "居民 residents", [])


# -- devices -------------------------------------------------------------------


class _Credentials:
    """device_id,password lines (mode 0600), appended and flushed as each device is made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0
        self._new = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8", newline="")
        self._csv = csv.writer(self._file, lineterminator="\n")
        if os.fstat(fd).st_size == 0:
            self._csv.writerow(["device_id", "password"])

    def add(self, device_id: str, password: str) -> None:
        self._csv.writerow([device_id, password])
        self._file.flush()
        os.fsync(self._file.fileno())
        self.written += 1

    def close(self) -> None:
        self._file.close()
        if self._new and self.written == 0:
            self.path.unlink(missing_ok=True)


def _dynsec(url: str) -> BrokerProvisioner:
    if not url.startswith(("mqtt://", "mqtts://")):
        raise _Refused(
            "--broker-admin-url 应形如 mqtt://carewatch-admin@127.0.0.1:1883",
            "--broker-admin-url must look like mqtt://carewatch-admin@127.0.0.1:1883",
            EXIT_UNUSABLE,
        )
    target = MqttTarget.from_url(url)
    if target.password is None and os.environ.get(_ADMIN_PASSWORD_ENV):
        target = target.model_copy(update={"password": os.environ[_ADMIN_PASSWORD_ENV]})
    try:
        return DynsecProvisioner(target)
    except ProvisioningError as exc:
        raise _Refused(f"消息代理配置有误：{exc}", str(exc), EXIT_UNUSABLE) from None


async def _device_target(
    session: AsyncSession, places: _Places, row: DeviceRow
) -> tuple[int | None, int | None, int | None]:
    """(grid id, building id, resident id) of a new device; missing places are created."""
    if row.kind == "bin":
        assert row.community and row.grid and row.building
        grid_id = await places.grid(session, row.community, row.grid, create=True)
        building_id = await places.building(
            session, row.community, row.grid, row.building, create=True
        )
        return grid_id, building_id, None
    if row.resident_id is not None:
        resident = await session.get(Resident, row.resident_id)
        if resident is None:
            raise _Skip(
                "resident_id",
                str(row.resident_id),
                f"没有编号为 {row.resident_id} 的居民档案",
                f"no resident with id {row.resident_id}",
            )
        if row.community and row.grid:
            named = await places.grid(session, row.community, row.grid, create=False)
            if named != resident.grid_id:
                raise _Skip(
                    "grid",
                    row.grid,
                    f"居民 {row.resident_id} 不在网格“{row.grid}”",
                    f"resident {row.resident_id} is not in grid {row.grid!r}",
                )
        return resident.grid_id, None, resident.id
    assert row.community and row.grid
    if not row.resident:  # a wristband in stock: registered, bound later
        return await places.grid(session, row.community, row.grid, create=True), None, None
    grid_id = await places.grid(session, row.community, row.grid, create=False)
    if grid_id is None:
        raise _Skip(
            "grid",
            row.grid,
            f"社区“{row.community}”没有网格“{row.grid}”：请先导入居民",
            f"no grid {row.grid!r} in community {row.community!r}: import the residents first",
        )
    query = select(Resident.id).where(Resident.grid_id == grid_id, Resident.name == row.resident)
    if row.building:
        building_id = await places.building(
            session, row.community, row.grid, row.building, create=False
        )
        if building_id is None:
            raise _Skip(
                "building",
                row.building,
                f"网格“{row.grid}”没有楼栋“{row.building}”",
                f"no building {row.building!r} in grid {row.grid!r}",
            )
        query = query.where(Resident.building_id == building_id)
    ids = (await session.scalars(query.order_by(Resident.id))).all()
    if not ids:
        raise _Skip(
            "resident",
            row.resident,
            f"网格“{row.grid}”没有叫“{row.resident}”的居民",
            f"no resident named {row.resident!r} in grid {row.grid!r}",
        )
    if len(ids) > 1:
        listed = ", ".join(map(str, ids))
        raise _Skip(
            "resident",
            row.resident,
            f"有 {len(ids)} 位同名居民（编号 {listed}）：请改填居民编号 resident_id",
            f"{len(ids)} residents have this name (ids {listed}): give resident_id instead",
        )
    return grid_id, None, ids[0]


async def _check_registered(
    session: AsyncSession, places: _Places, row: DeviceRow, device: Device
) -> None:
    """Pass when the registered device is this row's (same kind and grid), else raise _Skip."""
    grid_id = device.grid_id
    if row.community and row.grid:
        grid_id = await places.grid(session, row.community, row.grid, create=False)
    if device.kind == row.kind and grid_id == device.grid_id:
        return
    raise _Skip(
        "device_id",
        row.device_id,
        f"设备 {row.device_id} 已登记，但类型或网格与这一行不同（{device.kind}）：改动请用 API",
        f"device {row.device_id} is already registered with another kind or grid "
        f"({device.kind}): change it through the API",
    )


async def _forget(session: AsyncSession, device_id: str) -> None:
    """Undo a half-imported device (its bindings go with it: ON DELETE CASCADE)."""
    await session.rollback()
    await session.execute(delete(Device).where(Device.id == device_id))
    await session.commit()


class _DeviceImport:
    """Registers, binds and provisions one device row at a time; stops at a broker failure."""

    def __init__(
        self,
        sessions: SessionFactory,
        provisioner: BrokerProvisioner | None,
        credentials: _Credentials | None,
    ) -> None:
        self.places = _Places()
        self.sessions = sessions
        self.provisioner = provisioner
        self.credentials = credentials  # None: a dry run
        self.provisioned = 0
        self.stopped_at = 0  # the row whose device the broker or the disk refused

    async def row(self, row: DeviceRow) -> bool:
        if self.stopped_at:
            raise _Skip(
                "device_id",
                row.device_id,
                f"未导入：第 {self.stopped_at} 行出错后停止导入，修好后重新导入",
                f"not imported: the import stopped after row {self.stopped_at}; "
                "fix that and import again",
            )
        async with self.sessions() as session:
            existing = await session.get(Device, row.device_id)
            if existing is not None:
                await _check_registered(session, self.places, row, existing)
                return False
            grid_id, building_id, resident_id = await _device_target(session, self.places, row)
            try:
                await registry.register_device(
                    session,
                    ADMIN_SCOPE,
                    device_id=row.device_id,
                    kind=row.kind,
                    grid_id=grid_id,
                    interval_s=row.interval_s,
                )
            except RegistryError as exc:
                raise _Skip.of("device_id", row.device_id, exc) from exc
            if resident_id is not None or building_id is not None:
                try:
                    await registry.bind_device(
                        session,
                        ADMIN_SCOPE,
                        row.device_id,
                        resident_id=resident_id,
                        building_id=building_id,
                        category=row.category,
                    )
                except RegistryError as exc:
                    await _forget(session, row.device_id)
                    raise _Skip.of("resident" if resident_id else "building", "", exc) from exc
            if self.credentials is not None:
                await self._hand_out_password(session, row)
            return True

    async def _hand_out_password(self, session: AsyncSession, row: DeviceRow) -> None:
        # Broker first, file second: a password the file lacks is one nobody can use.
        password = new_device_password()
        assert self.credentials is not None
        try:
            if self.provisioner is not None:
                await self.provisioner.add_device(row.device_id, password)
                self.provisioned += 1
            self.credentials.add(row.device_id, password)
        except (ProvisioningError, OSError) as exc:
            await _forget(session, row.device_id)
            self.stopped_at = row.row
            if isinstance(exc, ProvisioningError):
                zh, en = "消息代理", "the broker"
            else:
                zh, en = "密码文件", "the credentials file"
            raise _Skip(
                "device_id",
                row.device_id,
                f"{zh}出错，此设备未导入：{exc}",
                f"not imported, {en} failed: {exc}",
            ) from exc


async def _import_devices(
    args: argparse.Namespace, url: str, provisioner: BrokerProvisioner | None
) -> int:
    parsed = _parse(lambda: parse_devices(args.file, encoding=args.encoding))
    provisioner = None if args.dry_run else provisioner
    credentials: _Credentials | None = None
    async with AsyncExitStack() as stack:
        if not args.dry_run:
            out = args.credentials_out or args.file.with_suffix(".credentials.csv")
            try:
                credentials = _Credentials(out)
            except OSError as exc:
                raise _Refused(
                    f"无法写入密码文件 {out}：{exc.strerror}",
                    f"cannot write the credentials file {out}: {exc.strerror}",
                    EXIT_UNUSABLE,
                ) from None
            stack.callback(credentials.close)
        if isinstance(provisioner, AbstractAsyncContextManager):
            await stack.enter_async_context(provisioner)  # one broker connection for all rows
        sessions = await stack.enter_async_context(_registry(url, dry_run=args.dry_run))
        devices = _DeviceImport(sessions, provisioner, credentials)
        run = await _each_row(parsed.rows, parsed, "设备 devices", devices.row)
    extra: list[str] = []
    if credentials is not None and credentials.written:
        extra.append(
            f"  MQTT 密码 passwords: {credentials.path} (0600)："
            "只显示这一次，请妥善保管，设备配置后删除 "
            "/ shown only this once: keep it secret, delete it once the devices are set up"
        )
    if args.dry_run:
        extra.append(
            "  试运行：没有生成密码，消息代理未动 / dry run: no passwords, broker untouched"
        )
    elif provisioner is not None:
        extra.append(f"  消息代理已添加 broker updated: {devices.provisioned} 台 devices")
    elif run.imported:
        extra.append(
            "  消息代理未更新 broker NOT updated: "
            "没有设置 CAREWATCH_MQTT_ADMIN_URL 或 --broker-admin-url，设备连接前须在代理上添加 "
            "/ neither CAREWATCH_MQTT_ADMIN_URL nor --broker-admin-url is set: add each device "
            "to the broker before it connects (mosquitto/README.md)"
        )
    return _report(args, parsed, run, devices.places, "设备 devices", extra)


# -- reporting -----------------------------------------------------------------


def _parse(read: Callable[[], Parsed[RowT]]) -> Parsed[RowT]:
    try:
        parsed = read()
    except ImportFileError as exc:
        raise _Refused(exc.message, exc.message_en, EXIT_UNUSABLE) from None
    if parsed.total == 0:
        raise _Refused(
            "文件只有表头，没有数据行", "the file has a header but no rows", EXIT_UNUSABLE
        )
    return parsed


def _report(
    args: argparse.Namespace,
    parsed: Parsed[RowT],
    run: _Run,
    places: _Places,
    what: str,
    extra: list[str],
) -> int:
    keys = {written: key for key, written in parsed.headers.items()}
    for error in run.errors[:_SHOWN_ERRORS]:
        column = error.column
        if column in keys and keys[column] != column:
            column = f"{column} ({keys[column]})"
        where = f"第 {error.row} 行 row {error.row}" + (f" · {column}" if column else "")
        value = f" {error.value!r}" if error.value else ""
        _say(f"{where}{value}: {error.message} / {error.message_en}")
    if len(run.errors) > _SHOWN_ERRORS:
        _say(f"…… 还有 {len(run.errors) - _SHOWN_ERRORS} 条 / and more")
    errors_path = args.file.with_suffix(".errors.csv")
    if run.errors:
        with errors_path.open("w", encoding="utf-8-sig", newline="") as f:  # BOM: Excel reads UTF-8
            writer = csv.writer(f)
            writer.writerow(["row", "column", "value", "error_zh", "error_en"])
            for e in run.errors:
                writer.writerow([e.row, e.column, e.value, e.message, e.message_en])
    else:
        errors_path.unlink(missing_ok=True)  # an old report would mislead
    skipped = len({e.row for e in run.errors})
    dry = "试运行，数据库未改动 / dry run, nothing written: " if args.dry_run else ""
    _say(f"{dry}{what} ← {args.file}")
    _say(f"  {'可导入 would import' if args.dry_run else '已导入 imported'}: {run.imported}")
    if run.unchanged:
        rows = ", ".join(map(str, run.unchanged[:20])) + (" …" if len(run.unchanged) > 20 else "")
        _say(f"  已登记、未改动 already registered, unchanged: {len(run.unchanged)} (rows {rows})")
    if skipped:
        _say(f"  跳过 skipped: {skipped} → {errors_path}")
    made = "将新建 would create" if args.dry_run else "新建 created"
    for key, zh, en in (
        ("community", "社区", "communities"),
        ("grid", "网格", "grids"),
        ("building", "楼栋", "buildings"),
    ):
        if names := places.created[key]:
            more = f" …（共 {len(names)} / {len(names)} in all）" if len(names) > 10 else ""
            _say(f"  {made} {zh} {en}: {'、'.join(names[:10])}{more}")
    if parsed.ignored_columns:
        _say(f"  忽略的列 columns ignored: {', '.join(parsed.ignored_columns)}")
    for line in extra:
        _say(line)
    return EXIT_SKIPPED if run.errors else EXIT_OK
