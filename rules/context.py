"""Who each device is, as the rules need it: grid, resident, building, bin category, limits.

Built from the registry (`load_registry_profiles`) or from the fleet CSV
(`devices.directory`) and refreshed while running; a device nobody registered
still gets the default rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Executable, select

from core.db import Database
from devices.directory import DeviceInfo
from devices.tables import Building, Device, DeviceBinding, Grid, Resident
from protocol.models import Category, Kind
from rules.config import Limits, RuleSet


@dataclass(frozen=True, slots=True)
class DeviceContext:
    """One device as its rules see it: who and where it is, and the limits that apply."""

    device_id: str
    kind: Kind
    limits: Limits
    interval_ms: int
    resident_id: int | None = None
    grid_id: int | None = None
    grid: str | None = None
    building_key: str | None = None  # the subject of building findings
    building: str | None = None  # its name, for people
    category: Category | None = None  # a bin's compartment
    home_lat: float | None = None
    home_lon: float | None = None
    sorting_target: float | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    """What the registry says of one device, before the rules are applied."""

    device_id: str
    kind: Kind
    interval_s: float | None = None
    resident_id: int | None = None
    grid_id: int | None = None
    grid: str | None = None
    building_key: str | None = None
    building: str | None = None
    category: Category | None = None
    home_lat: float | None = None
    home_lon: float | None = None
    sorting_target: float | None = None
    vital_limits: Mapping[str, Any] | None = None


def default_context(device_id: str, kind: Kind, rules: RuleSet) -> DeviceContext:
    """The context of a device the registry does not know: the default rules."""
    limits = rules.default
    return DeviceContext(device_id, kind, limits, round(limits.device.default_interval * 1000))


class Contexts:
    """The rules in force and each device's context under them (defaults for a stranger).

    `subjects` holds the context a building's or a baseline's last sample came with: both
    are judged only after a new sample, so it is not checkpointed.
    """

    __slots__ = ("devices", "rules", "subjects")

    def __init__(self, rules: RuleSet, devices: Mapping[str, DeviceContext] | None = None) -> None:
        self.rules = rules
        # Both dicts change in place, never rebound: the rule modules hold these very dicts.
        self.devices: dict[str, DeviceContext] = dict(devices or {})
        self.subjects: dict[str, DeviceContext] = {}

    def of(self, device_id: str, kind: Kind) -> DeviceContext:
        """The device's context; a device nobody registered gets the default rules."""
        ctx = self.devices.get(device_id)
        if ctx is None or ctx.kind is not kind:
            ctx = self.devices[device_id] = default_context(device_id, kind, self.rules)
        return ctx

    def replace(self, devices: Mapping[str, DeviceContext]) -> None:
        """New registry context (and with it, limits); the subjects' contexts are renewed."""
        fresh = dict(devices)
        self.devices.clear()
        self.devices.update(fresh)
        self.subjects.update(
            {key: self.of(ctx.device_id, ctx.kind) for key, ctx in self.subjects.items()}
        )


def build_contexts(profiles: Mapping[str, Profile], rules: RuleSet) -> dict[str, DeviceContext]:
    """Apply the rules (a grid's overrides, a resident's limits) to each profile."""
    contexts = {}
    for device_id, p in profiles.items():
        limits = rules.for_grid(p.grid_id, p.grid)
        if p.vital_limits:
            limits = limits.personal(p.vital_limits)
        interval = p.interval_s if p.interval_s else limits.device.default_interval
        contexts[device_id] = DeviceContext(
            device_id=device_id,
            kind=p.kind,
            limits=limits,
            interval_ms=round(interval * 1000),
            resident_id=p.resident_id,
            grid_id=p.grid_id,
            grid=p.grid,
            building_key=p.building_key,
            building=p.building,
            category=p.category,
            home_lat=p.home_lat,
            home_lon=p.home_lon,
            sorting_target=p.sorting_target,
        )
    return contexts


def profiles_from_directory(devices: Mapping[str, DeviceInfo]) -> dict[str, Profile]:
    """Profiles from the fleet CSV: grid and building by name, no residents."""
    return {
        d.device_id: Profile(
            d.device_id,
            d.kind,
            grid=d.grid,
            building_key=d.building,
            building=d.building,
            category=d.category,
        )
        for d in devices.values()
    }


def _registry_query() -> Executable:
    """Every device not revoked with its open binding, resident, building and grid."""
    return (
        select(
            Device.id,
            Device.kind,
            Device.interval_s,
            Device.grid_id,
            Grid.name,
            DeviceBinding.resident_id,
            DeviceBinding.category,
            Building.id,
            Building.name,
            Building.sorting_target,
            Resident.home_lat,
            Resident.home_lon,
            Resident.vital_limits,
            Resident.grid_id,
        )
        .outerjoin(
            DeviceBinding,
            (DeviceBinding.device_id == Device.id) & DeviceBinding.end.is_(None),
        )
        .outerjoin(Resident, Resident.id == DeviceBinding.resident_id)
        .outerjoin(Building, Building.id == DeviceBinding.building_id)
        .outerjoin(Grid, Grid.id == Device.grid_id)
        .where(Device.revoked.is_(False))
    )


def _profile_of(row: Sequence[Any]) -> Profile:
    """One row of `_registry_query` as a profile; the resident's grid wins over the device's."""
    (
        device_id,
        kind,
        interval_s,
        device_grid,
        grid_name,
        resident_id,
        category,
        building_id,
        building_name,
        sorting_target,
        home_lat,
        home_lon,
        vital_limits,
        resident_grid,
    ) = row
    return Profile(
        device_id=device_id,
        kind=Kind(kind),
        interval_s=interval_s,
        resident_id=resident_id,
        grid_id=resident_grid if resident_grid is not None else device_grid,
        grid=grid_name,
        building_key=str(building_id) if building_id is not None else None,
        building=building_name,
        category=Category(category) if category else None,
        home_lat=home_lat,
        home_lon=home_lon,
        sorting_target=sorting_target,
        vital_limits=vital_limits or None,
    )


async def load_registry_profiles(database: Database) -> dict[str, Profile]:
    """Every device not revoked with its open binding, resident, building and grid: one query."""
    profiles: dict[str, Profile] = {}
    async with database.sessions() as session:
        for row in (await session.execute(_registry_query())).all():
            profile = _profile_of(row)
            profiles[profile.device_id] = profile
    return profiles
