"""Who hears of an alert, read from the registry: the rungs of the escalation ladder.

Rung 0: the resident's emergency contacts (in their order, on their channels)
and the grid's workers; rung 1: the grid's supervisor; rung 2: the
community's duty centre. Bins and buildings have no family: their rung 0 is
the grid's workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from alerts.tables import Alert
from devices.tables import Building, Community, Grid, Resident, User


@dataclass(frozen=True, slots=True)
class Recipient:
    """One person on the ladder, and how to reach them."""

    key: str  # contact:12, user:5, duty:3: stable, so a step reaches a person once
    name: str
    audience: str  # alerts.templates.Audience values
    channels: tuple[tuple[str, str], ...]  # (sms | wechat, target), preferred first


@dataclass(slots=True)
class Subject:
    """What the messages say about whom the alert is for."""

    resident: Resident | None = None
    grid: Grid | None = None
    community: Community | None = None
    building: str | None = None
    workers: list[User] = field(default_factory=list)
    supervisor: User | None = None


async def load_subject(session: AsyncSession, alert: Alert) -> Subject:
    """The resident, grid, community and people of an alert, from the registry."""
    subject = Subject(building=alert.building)
    if alert.resident_id is not None:
        subject.resident = await session.get(Resident, alert.resident_id)
        if subject.resident is not None and subject.resident.building_id is not None:
            building = await session.get(Building, subject.resident.building_id)
            subject.building = building.name if building is not None else alert.building
    grid_id = alert.grid_id
    if grid_id is None and subject.resident is not None:
        grid_id = subject.resident.grid_id
    if grid_id is not None:
        subject.grid = await session.get(Grid, grid_id)
    if subject.grid is not None:
        subject.workers = [u for u in subject.grid.workers if u.is_active]
        subject.community = await session.get(Community, subject.grid.community_id)
        if subject.grid.supervisor_id is not None:
            subject.supervisor = await session.get(User, subject.grid.supervisor_id)
    return subject


def _user(user: User, audience: str) -> Recipient | None:
    channels = tuple(
        (channel, target)
        for channel, target in (("wechat", user.wechat), ("sms", user.phone))
        if target
    )
    if not channels or not user.is_active:
        return None
    return Recipient(f"user:{user.id}", user.full_name, audience, channels)


def rung(subject: Subject, number: int) -> list[Recipient]:
    """The people of one rung of the ladder, each with their channels in order."""
    if number == 0:
        return _family_and_workers(subject)
    if number == 1:
        supervisor = subject.supervisor
        recipient = _user(supervisor, "supervisor") if supervisor is not None else None
        return [recipient] if recipient is not None else []
    if number == 2:
        return _duty_centre(subject)
    return []


def _family_and_workers(subject: Subject) -> list[Recipient]:
    out: list[Recipient] = []
    if subject.resident is not None:
        for contact in subject.resident.contacts:
            targets = {"sms": contact.phone, "wechat": contact.wechat}
            wanted = contact.channels or ["wechat", "sms"]
            channels = tuple((c, t) for c in wanted if (t := targets.get(c)))
            if channels:
                out.append(Recipient(f"contact:{contact.id}", contact.name, "family", channels))
    for worker in subject.workers:
        if (recipient := _user(worker, "worker")) is not None:
            out.append(recipient)
    return out


def _duty_centre(subject: Subject) -> list[Recipient]:
    community = subject.community
    if community is None:
        return []
    channels = tuple(
        (c, t) for c, t in (("wechat", community.duty_wechat), ("sms", community.duty_phone)) if t
    )
    if not channels:
        return []
    return [Recipient(f"duty:{community.id}", f"{community.name}值班室", "duty", channels)]
