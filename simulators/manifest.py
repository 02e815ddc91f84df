"""The fleet: device ids, where each device lives, and the manifest CSV the ingester loads.

Names are deterministic from the seed. Some buildings contain a space or an
ASCII comma on purpose, so CSV quoting and InfluxDB tag escaping get exercised.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import math
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from protocol.models import Category, Kind
from protocol.topics import DEVICE_ID_RE
from simulators.exceptions import ConfigError
from simulators.models import DeviceSpec, FleetConfig, ManifestEntry

HEADER: Final = ("device_id", "kind", "grid", "building", "category")
CATEGORIES: Final = (Category.KITCHEN, Category.RECYCLABLE, Category.HAZARDOUS, Category.OTHER)

# (community, separator before the building number): a few with a space or a comma.
_COMMUNITIES: Final = (
    ("幸福小区", " "),
    ("金桥花园,东区", ""),
    ("阳光花园", ""),
    ("和平里社区", ""),
    ("春晖苑", ""),
    ("翠湖新村", " "),
    ("长青里", ""),
    ("锦绣家园", ""),
    ("康乐小区,北院", " "),
    ("丽水华庭", ""),
    ("望江苑", ""),
    ("枫林 雅居", ""),
)
# Around Hangzhou's Gongshu district: communities lie within a few kilometres.
_CITY_LAT: Final = 30.3190
_CITY_LON: Final = 120.1420


def rng_for(seed: int, name: str) -> random.Random:
    """A generator seeded from (seed, name) by a stable hash (str hash() is salted)."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def device_name(kind: Kind, index: int) -> str:
    """`w0003` or `b0012`: the id of a device before the run prefix."""
    return f"{'w' if kind is Kind.WRISTBAND else 'b'}{index:04d}"


def _check(config: FleetConfig) -> None:
    if config.wristbands < 0 or config.bins < 0:
        msg = "device counts must be >= 0"
        raise ConfigError(msg)
    longest = config.prefix + device_name(Kind.BIN, max(config.wristbands, config.bins))
    if DEVICE_ID_RE.fullmatch(longest) is None:
        msg = (
            f"prefix {config.prefix!r} makes device ids such as {longest!r}, "
            "which must be 1-64 of A-Z a-z 0-9 _ -"
        )
        raise ConfigError(msg)


def build_fleet(config: FleetConfig) -> list[DeviceSpec]:
    """The devices of a config, wristbands first: ids, grids, buildings, bin categories, homes."""
    _check(config)
    rng = rng_for(config.seed, "manifest")
    # The first two communities have a space and a comma in their names, so even a
    # two-device fleet exercises escaping; the rest come in a seeded order.
    rest = list(_COMMUNITIES[2:])
    rng.shuffle(rest)
    communities = [*_COMMUNITIES[:2], *rest]
    # Enough buildings for every four bins (one sorting station each) and ~8 residents each.
    stations = math.ceil(config.bins / len(CATEGORIES))
    needed = max(stations, math.ceil(config.wristbands / 8), 1)
    estates: list[list[tuple[str, str, float, float]]] = []  # (grid, building, lat, lon)
    # At least three communities (two grids), so small fleets get variety and escaping too.
    while len(estates) < 3 or sum(len(e) for e in estates) < needed:
        number = len(estates)
        name, sep = communities[number % len(communities)]
        if number >= len(communities):
            name = f"{name}{number // len(communities) + 1}期"
        grid = f"网格{number // 2 + 1:02d}"  # a grid worker looks after two communities
        lat = _CITY_LAT + rng.uniform(-0.03, 0.03)
        lon = _CITY_LON + rng.uniform(-0.03, 0.03)
        estates.append(
            [
                (
                    grid,
                    f"{name}{sep}{n}栋",
                    lat + rng.uniform(-0.0015, 0.0015),
                    lon + rng.uniform(-0.0015, 0.0015),
                )
                for n in range(1, rng.randint(3, 8) + 1)
            ]
        )
    # Interleave the communities: consecutive devices live in different communities.
    buildings = [b for row in itertools.zip_longest(*estates) for b in row if b is not None]
    devices: list[DeviceSpec] = []
    for index in range(config.wristbands):
        grid, building, lat, lon = buildings[index % len(buildings)]
        name = device_name(Kind.WRISTBAND, index)
        entry = ManifestEntry(config.prefix + name, Kind.WRISTBAND, grid, building)
        devices.append(
            DeviceSpec(
                entry,
                name,
                round(lat + rng.uniform(-2e-4, 2e-4), 6),
                round(lon + rng.uniform(-2e-4, 2e-4), 6),
            )
        )
    for index in range(config.bins):
        grid, building, lat, lon = buildings[index // len(CATEGORIES)]
        name = device_name(Kind.BIN, index)
        category = CATEGORIES[index % len(CATEGORIES)]
        entry = ManifestEntry(config.prefix + name, Kind.BIN, grid, building, category)
        devices.append(DeviceSpec(entry, name, round(lat, 6), round(lon, 6)))
    return devices


def write_manifest(path: Path | str, entries: Iterable[ManifestEntry | DeviceSpec]) -> int:
    """Write the manifest CSV (UTF-8, header first); returns the number of rows."""
    rows = 0
    with Path(path).open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for item in entries:
            entry = item.entry if isinstance(item, DeviceSpec) else item
            category = entry.category.value if entry.category is not None else ""
            writer.writerow(
                (entry.device_id, entry.kind.value, entry.grid, entry.building, category)
            )
            rows += 1
    return rows


def read_manifest(path: Path | str) -> list[ManifestEntry]:
    """Read a manifest CSV back, checking the header, kinds, ids and categories."""
    entries: list[ManifestEntry] = []
    with Path(path).open(encoding="utf-8-sig", newline="") as src:
        reader = csv.reader(src)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != HEADER:
            msg = f"{path}: the first line must be {','.join(HEADER)}"
            raise ConfigError(msg)
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(HEADER):
                msg = f"{path}:{line_no}: expected {len(HEADER)} columns, got {len(row)}"
                raise ConfigError(msg)
            device_id, kind, grid, building, category = row
            if DEVICE_ID_RE.fullmatch(device_id) is None:
                msg = f"{path}:{line_no}: bad device id {device_id!r}"
                raise ConfigError(msg)
            try:
                entries.append(
                    ManifestEntry(
                        device_id,
                        Kind(kind),
                        grid,
                        building,
                        Category(category) if category else None,
                    )
                )
            except ValueError as exc:
                msg = f"{path}:{line_no}: {exc}"
                raise ConfigError(msg) from exc
    return entries
