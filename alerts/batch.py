"""What a batch of findings reads, fetched in a few statements before the book applies it.

`AlertBook.apply_all` (alerts/lifecycle.py) looks everything up here instead of asking
the database once or more per finding (docs/alerts.md, "From the journal").
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.tables import RESOLVED, Alert
from devices.tables import Community, Grid, Resident, User
from rules.findings import Finding

_IN_CHUNK = 500  # values per IN (...): far below every engine's limit on parameters


def open_key(subject: str, rule: str) -> str:
    """The key of the one open alert per subject and rule."""
    return f"{subject}|{rule}"


@dataclass(slots=True)
class Seen:
    """The alerts a batch of findings reads, fetched once and kept current by the batch.

    A list may hold an alert that has since changed (closed, joined a group): every
    lookup checks the alert's own attributes, so holding too many is harmless.
    """

    by_key: dict[str, Alert] = field(default_factory=dict)
    by_resident: dict[int, list[Alert]] = field(default_factory=dict)
    closed: dict[tuple[str, str], list[Alert]] = field(default_factory=dict)
    # The session's identity map holds rows weakly: these keep the people read for the
    # batch in it, so `load_subject`'s `session.get` finds them without a statement.
    people: list[object] = field(default_factory=list)
    unsent: list[Alert] = field(default_factory=list)  # opened, not yet flushed nor raised

    @classmethod
    async def fetch(
        cls, session: AsyncSession, findings: Sequence[Finding], now: datetime, flap_window: float
    ) -> Seen:
        """The open alerts of the findings' keys and residents, those the system closed
        within the flap window, and the registry rows their messages need."""
        seen = cls()
        keys = {open_key(f.subject, f.rule) for f in findings}
        residents = {f.resident_id for f in findings if f.resident_id is not None}
        for chunk in _chunks(keys):
            seen._add(await session.scalars(select(Alert).where(Alert.open_key.in_(chunk))))
        for ids in _chunks(residents):
            query = select(Alert).where(Alert.open_key.is_not(None), Alert.resident_id.in_(ids))
            seen._add(await session.scalars(query))
        subjects = {f.subject for f in findings if f.active}
        if flap_window > 0:
            since = now - timedelta(seconds=flap_window)
            for chunk in _chunks(subjects):
                query = select(Alert).where(
                    Alert.subject.in_(chunk),
                    Alert.state == RESOLVED,
                    Alert.resolved_by == "system",
                    Alert.latched.is_(False),
                    Alert.resolved_at >= since,
                )
                for alert in await session.scalars(query):
                    seen.cleared(alert)
        seen.people = await _fetch_people(session, residents, {f.grid_id for f in findings})
        return seen

    def _add(self, alerts: Iterator[Alert] | Sequence[Alert]) -> None:
        for alert in alerts:
            self.opened(alert)

    def opened(self, alert: Alert) -> None:
        """An alert open now (new, reopened, or read)."""
        if alert.open_key is not None:
            self.by_key[alert.open_key] = alert
        if alert.resident_id is not None:
            same = self.by_resident.setdefault(alert.resident_id, [])
            if alert not in same:
                same.append(alert)

    def cleared(self, alert: Alert) -> None:
        """An alert the system closed: the one a return of its condition may reopen."""
        self.closed.setdefault((alert.subject, alert.rule), []).append(alert)

    def open(self, key: str) -> Alert | None:
        """The open alert of a subject and rule."""
        alert = self.by_key.get(key)
        return alert if alert is not None and alert.open_key == key else None

    def heading(self, resident_id: int) -> list[Alert]:
        """The resident's open alerts that belong to no group (each may head one)."""
        return [
            a
            for a in self.by_resident.get(resident_id, ())
            if a.open_key is not None and a.group_id is None
        ]

    def last_cleared(self, subject: str, rule: str) -> Alert | None:
        """The subject's last alert for the rule that the system closed (not latched)."""
        candidates = [
            a
            for a in self.closed.get((subject, rule), ())
            if a.state == RESOLVED
            and a.resolved_by == "system"
            and not a.latched
            and a.resolved_at is not None
        ]
        return max(candidates, key=lambda a: a.resolved_at or _NEVER, default=None)


_NEVER = datetime.min.replace(tzinfo=UTC)


async def _fetch_people(
    session: AsyncSession, residents: Collection[int], grids: Collection[int | None]
) -> list[object]:
    """Residents (with contacts and building), grids (with workers), communities and
    supervisors, read in a few statements for `load_subject`."""
    held: list[object] = []
    grid_ids = {g for g in grids if g is not None}
    for chunk in _chunks(residents):
        for resident in await session.scalars(select(Resident).where(Resident.id.in_(chunk))):
            held.append(resident)
            if resident.grid_id is not None:
                grid_ids.add(resident.grid_id)
    communities: set[int] = set()
    supervisors: set[int] = set()
    for chunk in _chunks(grid_ids):
        for grid in await session.scalars(select(Grid).where(Grid.id.in_(chunk))):
            held.append(grid)
            communities.add(grid.community_id)
            if grid.supervisor_id is not None:
                supervisors.add(grid.supervisor_id)
    for chunk in _chunks(communities):
        held += await session.scalars(select(Community).where(Community.id.in_(chunk)))
    for chunk in _chunks(supervisors):
        held += await session.scalars(select(User).where(User.id.in_(chunk)))
    return held


_T = TypeVar("_T")


def _chunks(values: Collection[_T]) -> Iterator[list[_T]]:
    items = list(values)
    for i in range(0, len(items), _IN_CHUNK):
        yield items[i : i + _IN_CHUNK]
