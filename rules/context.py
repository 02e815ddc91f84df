"""Who each device is, as the rules need it: grid, resident, building, bin category, limits.

Built from the registry (`load_registry_context`) or from the fleet CSV
(`devices.directory`) and refreshed while running; a device nobody registered
still gets the default rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from core.db import Database
from devices.directory import DeviceInfo
from devices.tables import Building, Device, DeviceBinding, Grid, Resident
from protocol.models import Category, Kind
from rules.config import Limits, RuleSet


@dataclass(frozen=True, slots=True)
class DeviceContext:
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
    limits = rules.default
    return DeviceContext(device_id, kind, limits, round(limits.device.default_interval * 1000))


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


async def load_registry_profiles(database: Database) -> dict[str, Profile]:
    """Every device not revoked with its open binding, resident, building and grid: one query."""
    stmt = (
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
    profiles: dict[str, Profile] = {}
    async with database.sessions() as session:
        for row in (await session.execute(stmt)).all():
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
            profiles[device_id] = Profile(
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
    return profiles
