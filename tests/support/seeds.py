"""One care registry for the alert tests and benchmarks: a grid, its people, bound wristbands."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.ext.asyncio import AsyncSession

    from devices.tables import EmergencyContact

WORKER_PHONE = "13900000001"  # 王芳, the grid worker (WeChat `wangfang`)
WORKER_WECHAT = "wangfang"
SUPERVISOR_PHONE = "13900000002"  # 李站长, the grid's supervisor
DUTY_PHONE = "13900000003"  # the community's duty centre
SURNAMES = "张王李赵刘陈杨黄周吴徐孙马朱胡郭何林罗高"


def contact_phone(i: int) -> str:
    """The phone of the family contact of the i-th band's resident (`register_bands`)."""
    return f"1380000{i:04d}"


def contact_wechat(i: int) -> str:
    """The WeChat target of the family contact of the i-th band's resident."""
    return f"family{i:04d}"


@dataclass(frozen=True)
class CareGrid:
    community_id: int
    grid_id: int


async def seed_care_grid(session: AsyncSession) -> CareGrid:
    """One community (幸福小区, with a duty centre) and one grid with its worker and supervisor."""
    from devices.tables import Community, Grid, User

    community = Community(name="幸福小区", duty_phone=DUTY_PHONE)
    session.add(community)
    await session.flush()
    worker = User(
        username="wangfang",
        full_name="王芳",
        phone=WORKER_PHONE,
        wechat=WORKER_WECHAT,
        role="grid_worker",
        password_hash="x",
    )
    boss = User(
        username="lizhang",
        full_name="李站长",
        phone=SUPERVISOR_PHONE,
        role="supervisor",
        password_hash="x",
        community_id=community.id,
    )
    session.add_all([worker, boss])
    await session.flush()
    grid = Grid(community_id=community.id, name="一网格", supervisor_id=boss.id)
    grid.workers.append(worker)
    session.add(grid)
    await session.flush()
    return CareGrid(community.id, grid.id)


async def bind_band(
    session: AsyncSession, device_id: str, resident_id: int, grid_id: int, interval_s: int = 60
) -> None:
    """Register a wristband and bind it (since yesterday) to a resident."""
    from devices.tables import Device, DeviceBinding

    session.add(Device(id=device_id, kind="wristband", grid_id=grid_id, interval_s=interval_s))
    await session.flush()
    since = datetime.now(UTC) - timedelta(days=1)
    session.add(DeviceBinding(device_id=device_id, resident_id=resident_id, start=since))


def family_contact(i: int, device_id: str) -> EmergencyContact:
    """The i-th band's resident's one contact: `contact_phone(i)`, `contact_wechat(i)`."""
    from devices.tables import EmergencyContact

    return EmergencyContact(
        position=0,
        name="家属",
        relation="子女",
        phone=contact_phone(i),
        wechat=contact_wechat(i),
        channels=["sms", "wechat"],
    )


async def register_bands(
    url: str,
    device_ids: list[str],
    *,
    contact: Callable[[int, str], EmergencyContact] = family_contact,
    interval_s: int = 60,
) -> CareGrid:
    """Migrate the registry at `url`; one grid (`seed_care_grid`) and per band a resident
    with one family contact (`contact(i, device_id)`), the band bound to them."""
    from carewatch.migrations import migrate
    from core.db import Database
    from devices.tables import Resident

    database = Database(url)
    try:
        await migrate(database)
        async with database.sessions() as session, session.begin():
            care = await seed_care_grid(session)
            for i, device_id in enumerate(device_ids):
                resident = Resident(
                    grid_id=care.grid_id,
                    name=f"{SURNAMES[i % len(SURNAMES)]}建国",
                    gender="男",
                    birth_year=1940 + i % 15,
                    unit=f"{i // 10 + 1}单元",
                    room=f"{i % 10 + 1}01",
                )
                resident.contacts.append(contact(i, device_id))
                session.add(resident)
                await session.flush()
                await bind_band(session, device_id, resident.id, care.grid_id, interval_s)
    finally:
        await database.dispose()
    return care
