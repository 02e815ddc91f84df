"""`carewatch admin import-devices`: wristbands and bins from a spreadsheet, bound and provisioned.

Broker first, credentials file second; a failure of either stops the import (docs/registry.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from carewatch.admin.common import ADMIN_SCOPE, EXIT_UNUSABLE, Refused, SessionFactory
from carewatch.admin.credentials import Credentials
from carewatch.admin.database import open_registry
from carewatch.admin.places import Places, Skip
from carewatch.admin.rows import Run, each_row, parse_file, report
from core.secrets import new_device_password
from devices import bindings
from devices.broker.provisioning import BrokerProvisioner
from devices.exceptions import ProvisioningError, RegistryError
from devices.importer import DeviceRow, parse_devices
from devices.tables import Device, Resident

__all__ = ["import_devices"]

_Target = tuple[int | None, int | None, int | None]  # grid id, building id, resident id


async def _bin_target(session: AsyncSession, places: Places, row: DeviceRow) -> _Target:
    assert row.community and row.grid and row.building
    grid_id = await places.grid(session, row.community, row.grid, create=True)
    building_id = await places.building(session, row.community, row.grid, row.building, create=True)
    return grid_id, building_id, None


async def _resident_by_id(
    session: AsyncSession, places: Places, row: DeviceRow, resident_id: int
) -> _Target:
    resident = await session.get(Resident, resident_id)
    if resident is None:
        raise Skip(
            "resident_id",
            str(resident_id),
            f"没有编号为 {resident_id} 的居民档案",
            f"no resident with id {resident_id}",
        )
    if row.community and row.grid:
        named = await places.grid(session, row.community, row.grid, create=False)
        if named != resident.grid_id:
            raise Skip(
                "grid",
                row.grid,
                f"居民 {resident_id} 不在网格“{row.grid}”",
                f"resident {resident_id} is not in grid {row.grid!r}",
            )
    return resident.grid_id, None, resident.id


async def _resident_by_name(
    session: AsyncSession, places: Places, row: DeviceRow, name: str
) -> _Target:
    assert row.community and row.grid
    grid_id = await places.grid(session, row.community, row.grid, create=False)
    if grid_id is None:
        raise Skip(
            "grid",
            row.grid,
            f"社区“{row.community}”没有网格“{row.grid}”：请先导入居民",
            f"no grid {row.grid!r} in community {row.community!r}: import the residents first",
        )
    query = select(Resident.id).where(Resident.grid_id == grid_id, Resident.name == name)
    if row.building:
        building_id = await places.building(
            session, row.community, row.grid, row.building, create=False
        )
        if building_id is None:
            raise Skip(
                "building",
                row.building,
                f"网格“{row.grid}”没有楼栋“{row.building}”",
                f"no building {row.building!r} in grid {row.grid!r}",
            )
        query = query.where(Resident.building_id == building_id)
    ids = (await session.scalars(query.order_by(Resident.id))).all()
    if len(ids) != 1:
        raise _no_single_resident(row, name, ids)
    return grid_id, None, ids[0]


def _no_single_resident(row: DeviceRow, name: str, ids: Sequence[int]) -> Skip:
    if not ids:
        return Skip(
            "resident",
            name,
            f"网格“{row.grid}”没有叫“{name}”的居民",
            f"no resident named {name!r} in grid {row.grid!r}",
        )
    listed = ", ".join(map(str, ids))
    return Skip(
        "resident",
        name,
        f"有 {len(ids)} 位同名居民（编号 {listed}）：请改填居民编号 resident_id",
        f"{len(ids)} residents have this name (ids {listed}): give resident_id instead",
    )


async def _device_target(session: AsyncSession, places: Places, row: DeviceRow) -> _Target:
    """(grid id, building id, resident id) of a new device; missing places are created."""
    if row.kind == "bin":
        return await _bin_target(session, places, row)
    if row.resident_id is not None:
        return await _resident_by_id(session, places, row, row.resident_id)
    assert row.community and row.grid
    if not row.resident:  # a wristband in stock: registered, bound later
        return await places.grid(session, row.community, row.grid, create=True), None, None
    return await _resident_by_name(session, places, row, row.resident)


async def _check_registered(
    session: AsyncSession, places: Places, row: DeviceRow, device: Device
) -> None:
    """Pass when the registered device is this row's (same kind and grid), else raise Skip."""
    grid_id = device.grid_id
    if row.community and row.grid:
        grid_id = await places.grid(session, row.community, row.grid, create=False)
    if device.kind == row.kind and grid_id == device.grid_id:
        return
    raise Skip(
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
        credentials: Credentials | None,
    ) -> None:
        self.places = Places()
        self.sessions = sessions
        self.provisioner = provisioner
        self.credentials = credentials  # None: a dry run
        self.provisioned = 0
        self.stopped_at = 0  # the row whose device the broker or the disk refused

    async def row(self, row: DeviceRow) -> bool:
        """Import one row: True when a device was made, False when it was there already."""
        if self.stopped_at:
            raise Skip(
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
            await self._register(session, row)
            if self.credentials is not None:
                await self._hand_out_password(session, row)
            return True

    async def _register(self, session: AsyncSession, row: DeviceRow) -> None:
        grid_id, building_id, resident_id = await _device_target(session, self.places, row)
        try:
            await bindings.register_device(
                session,
                ADMIN_SCOPE,
                device_id=row.device_id,
                kind=row.kind,
                grid_id=grid_id,
                interval_s=row.interval_s,
            )
        except RegistryError as exc:
            raise Skip.of("device_id", row.device_id, exc) from exc
        if resident_id is None and building_id is None:
            return
        try:
            await bindings.bind_device(
                session,
                ADMIN_SCOPE,
                row.device_id,
                resident_id=resident_id,
                building_id=building_id,
                category=row.category,
            )
        except RegistryError as exc:
            await _forget(session, row.device_id)
            raise Skip.of("resident" if resident_id else "building", "", exc) from exc

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
            raise Skip(
                "device_id",
                row.device_id,
                f"{zh}出错，此设备未导入：{exc}",
                f"not imported, {en} failed: {exc}",
            ) from exc


def _open_credentials(args: argparse.Namespace) -> Credentials:
    out = args.credentials_out or args.file.with_suffix(".credentials.csv")
    try:
        return Credentials(out)
    except OSError as exc:
        raise Refused(
            f"无法写入密码文件 {out}：{exc.strerror}",
            f"cannot write the credentials file {out}: {exc.strerror}",
            EXIT_UNUSABLE,
        ) from None


def _summary(
    args: argparse.Namespace,
    run: Run,
    devices: _DeviceImport,
    provisioner: BrokerProvisioner | None,
) -> list[str]:
    """The lines about passwords and the broker that end the report."""
    lines: list[str] = []
    credentials = devices.credentials
    if credentials is not None and credentials.written:
        lines.append(
            f"  MQTT 密码 passwords: {credentials.path} (0600)："
            "只显示这一次，请妥善保管，设备配置后删除 "
            "/ shown only this once: keep it secret, delete it once the devices are set up"
        )
    if args.dry_run:
        lines.append(
            "  试运行：没有生成密码，消息代理未动 / dry run: no passwords, broker untouched"
        )
    elif provisioner is not None:
        lines.append(f"  消息代理已添加 broker updated: {devices.provisioned} 台 devices")
    elif run.imported:
        lines.append(
            "  消息代理未更新 broker NOT updated: "
            "没有设置 CAREWATCH_MQTT_ADMIN_URL 或 --broker-admin-url，设备连接前须在代理上添加 "
            "/ neither CAREWATCH_MQTT_ADMIN_URL nor --broker-admin-url is set: add each device "
            "to the broker before it connects (mosquitto/README.md)"
        )
    return lines


async def import_devices(
    args: argparse.Namespace, url: str, provisioner: BrokerProvisioner | None
) -> int:
    """Each good row becomes a device, bound and on the broker, committed on its own."""
    parsed = parse_file(lambda: parse_devices(args.file, encoding=args.encoding))
    provisioner = None if args.dry_run else provisioner
    credentials: Credentials | None = None
    async with AsyncExitStack() as stack:
        if not args.dry_run:
            credentials = _open_credentials(args)
            stack.callback(credentials.close)
        if isinstance(provisioner, AbstractAsyncContextManager):
            await stack.enter_async_context(provisioner)  # one broker connection for all rows
        sessions = await stack.enter_async_context(open_registry(url, dry_run=args.dry_run))
        devices = _DeviceImport(sessions, provisioner, credentials)
        run = await each_row(parsed.rows, parsed, "设备 devices", devices.row)
    extra = _summary(args, run, devices, provisioner)
    return report(args, parsed, run, devices.places, "设备 devices", extra)
