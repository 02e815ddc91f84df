"""Normal signals of one wristband or one bin, as functions of local (China, UTC+8) time.

Each class keeps the slowly changing state (step counter, battery, bin weight)
and draws noise from the device's own seeded generator, so one seed gives one
sequence. Scenario effects are applied on top by `simulators.device`.
"""

from __future__ import annotations

import math
import random
from typing import Final

from protocol.models import Category

CHINA_OFFSET_MS: Final = 8 * 3_600_000  # China has one time zone and no daylight saving
DAY_START_H: Final = 7.0  # steps only increase from 07:00 ...
DAY_END_H: Final = 21.0  # ... to 21:00 local time
_M_PER_DEG: Final = 111_320.0

Fields = dict[str, float | int | bool | str]


def local_hour(t_ms: int) -> float:
    """Hour of the day (0..24) in China for a UTC timestamp in ms."""
    return ((t_ms + CHINA_OFFSET_MS) % 86_400_000) / 3_600_000


def local_day(t_ms: int) -> int:
    """Days since the epoch in China's calendar (changes at local midnight)."""
    return (t_ms + CHINA_OFFSET_MS) // 86_400_000


def is_daytime(t_ms: int) -> bool:
    """Whether residents are up and walking (07:00-21:00 local)."""
    return DAY_START_H <= local_hour(t_ms) < DAY_END_H


def _noise(rng: random.Random, sigma: float) -> float:
    """Roughly normal noise (sum of three uniforms): several times cheaper than rng.gauss."""
    return (rng.random() + rng.random() + rng.random() - 1.5) * 2 * sigma


def _clamp(value: float, low: float, high: float) -> float:
    return low if value < low else high if value > high else value


class WristbandSignals:
    """Vital signs, steps, battery and position of one resident."""

    def __init__(self, rng: random.Random, home_lat: float, home_lon: float, start_ms: int) -> None:
        self._rng = rng
        self.home_lat = home_lat
        self.home_lon = home_lon
        self.base_hr = rng.uniform(62, 78)
        self.hr_amp = rng.uniform(5, 10)
        self.spo2_base = rng.uniform(96.0, 98.3)
        self.sbp_base = rng.uniform(118, 148)
        self.dbp_base = rng.uniform(68, 86)
        self.temp_base = rng.uniform(36.3, 36.7)
        self.steps_per_day = rng.uniform(2500, 8000)
        self.battery = rng.uniform(45, 100)
        self.drain_per_h = rng.uniform(0.25, 0.5)  # about a week per charge
        # Already walked today if the run starts in the afternoon.
        walked = _clamp((local_hour(start_ms) - DAY_START_H) / (DAY_END_H - DAY_START_H), 0, 1)
        self.steps = int(self.steps_per_day * walked * rng.uniform(0.8, 1.2))
        self._day = local_day(start_ms)
        self._last_ms = start_ms
        self._hr_noise = 0.0
        self._east_m = 0.0
        self._north_m = 0.0

    def sample(self, t_ms: int, *, moving: bool = True) -> Fields:
        """The readings at t_ms; `moving=False` freezes the step counter."""
        rng = self._rng
        dt = max(0.0, (t_ms - self._last_ms) / 1000)
        self._last_ms = t_ms
        hour = local_hour(t_ms)
        day = local_day(t_ms)
        if day != self._day:  # the counter resets at local midnight, as real bands do
            self._day = day
            self.steps = 0
        daytime = DAY_START_H <= hour < DAY_END_H
        if daytime and moving:
            rate = self.steps_per_day / ((DAY_END_H - DAY_START_H) * 3600)
            self.steps += int(rate * dt * rng.uniform(0.0, 2.0) + 0.5)
        self.battery -= self.drain_per_h * dt / 3600
        if self.battery < 5:  # charged overnight; not modelled as taking the band off
            self.battery = 100.0
        circadian = -math.cos(2 * math.pi * (hour - 4) / 24)  # lowest at 04:00
        self._hr_noise = 0.8 * self._hr_noise + _noise(rng, 1.6)
        activity = rng.uniform(0, 6) if daytime and moving else 0.0
        hr = _clamp(self.base_hr + self.hr_amp * circadian + activity + self._hr_noise, 45, 115)
        spo2 = _clamp(self.spo2_base + _noise(rng, 0.7), 95, 99)
        surge = 8.0 if 6 <= hour < 10 else 0.0  # the morning blood-pressure surge
        sbp = _clamp(self.sbp_base + surge + 4 * circadian + _noise(rng, 4), 95, 175)
        dbp = _clamp(self.dbp_base + surge / 2 + 2 * circadian + _noise(rng, 3), 55, sbp - 25)
        temp = _clamp(self.temp_base + 0.25 * circadian + _noise(rng, 0.08), 35.8, 37.3)
        fields: Fields = {
            "hr": round(hr),
            "spo2": round(spo2),
            "sbp": round(sbp),
            "dbp": round(dbp),
            "temp": round(temp, 1),
            "steps": self.steps,
            "battery": round(self.battery),
            "worn": True,
        }
        return fields

    def position(self, t_ms: int) -> tuple[float, float]:
        """(lat, lon): home at night, a wander of a few hundred metres by day, GPS noise."""
        rng = self._rng
        if is_daytime(t_ms):
            self._east_m += _noise(rng, 20)
            self._north_m += _noise(rng, 20)
            distance = math.hypot(self._east_m, self._north_m)
            if distance > 400:  # stay in the neighbourhood
                self._east_m *= 400 / distance
                self._north_m *= 400 / distance
        else:
            self._east_m *= 0.3
            self._north_m *= 0.3
        north = self._north_m + _noise(rng, 4)
        east = self._east_m + _noise(rng, 4)
        lat = self.home_lat + north / _M_PER_DEG
        lon = self.home_lon + east / (_M_PER_DEG * math.cos(math.radians(self.home_lat)))
        return round(lat, 6), round(lon, 6)


# Capacity by weight (a 240 L bin; recyclables are bulky, hazardous waste is a small box).
CAPACITY_KG: Final = {
    Category.KITCHEN: 60.0,
    Category.RECYCLABLE: 25.0,
    Category.HAZARDOUS: 10.0,
    Category.OTHER: 45.0,
}
DEPOSIT_G: Final = {
    Category.KITCHEN: (200.0, 1800.0),
    Category.RECYCLABLE: (100.0, 900.0),
    Category.HAZARDOUS: (20.0, 400.0),
    Category.OTHER: (100.0, 1500.0),
}
# Deposits per hour by local hour: morning and evening peaks, little at night.
_DEPOSITS_PER_H: Final = (
    0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 5, 5, 5, 2, 2, 3,
    3, 1.5, 1.5, 1.5, 1.5, 5, 5, 5, 5, 1, 1, 0.1,
)  # fmt: skip
_MAX_PER_H: Final = max(_DEPOSITS_PER_H)
COLLECTION_H: Final = (7.0, 19.0)  # collection rounds, each bin a little later than the hour


def deposits_per_hour(t_ms: int, category: Category) -> float:
    """Expected deposits per hour into a bin of this category at this time."""
    base = _DEPOSITS_PER_H[int(local_hour(t_ms)) % 24]
    return base * (0.1 if category is Category.HAZARDOUS else 1.0)


class BinSignals:
    """Weight, fill, temperature, battery and lid of one bin compartment."""

    def __init__(self, rng: random.Random, category: Category, start_ms: int) -> None:
        self._rng = rng
        self.category = category
        self.capacity_kg = CAPACITY_KG[category]
        self.weight = self.capacity_kg * rng.uniform(0.02, 0.25)
        self.battery = rng.uniform(50, 100)
        self.drain_per_h = rng.uniform(0.05, 0.15)
        self.warmth = 1.5 if category is Category.KITCHEN else 0.0  # decomposition
        self._collection_delay_h = rng.uniform(0, 0.7)
        self._last_ms = start_ms
        self.last_deposit_ms: int | None = None
        self.next_collection_ms = self._collection_after(start_ms)

    @property
    def fill(self) -> float:
        """Fill level in % (0 empty .. 100 full) from the weight."""
        return _clamp(100 * self.weight / self.capacity_kg, 0, 100)

    def set_fill(self, fill: float) -> None:
        """Raise the content to at least this fill level (overflow scenario)."""
        self.weight = max(self.weight, self.capacity_kg * fill / 100)

    def _collection_after(self, t_ms: int) -> int:
        day_start = (t_ms + CHINA_OFFSET_MS) // 86_400_000 * 86_400_000 - CHINA_OFFSET_MS
        for day in (0, 1):
            for hour in COLLECTION_H:
                at = (
                    day_start
                    + day * 86_400_000
                    + int((hour + self._collection_delay_h) * 3_600_000)
                )
                if at > t_ms:
                    return at
        msg = "unreachable: a collection always follows within a day"
        raise AssertionError(msg)

    def collect(self, t_ms: int, *, allowed: bool = True) -> bool:
        """Empty the bin if a collection round is due and allowed; True if emptied."""
        emptied = False
        while t_ms >= self.next_collection_ms:
            if allowed:
                self.weight = 0.0
                emptied = True
            self.next_collection_ms = self._collection_after(self.next_collection_ms)
        return emptied

    def empty(self) -> None:
        """An extra collection (the end of an overflow)."""
        self.weight = 0.0

    def deposit_weight_g(self, detected: Category) -> float:
        """The weight of one deposit of what the sensor saw."""
        low, high = DEPOSIT_G[detected]
        return self._rng.uniform(low, high)

    def add(self, t_ms: int, weight_g: float) -> None:
        """A deposit lands in the bin."""
        self.weight = min(self.weight + weight_g / 1000, 400.0)
        self.last_deposit_ms = t_ms

    def next_deposit_after(self, t_ms: int, rate_factor: float) -> int | None:
        """When the next ordinary deposit comes (a Poisson process thinned by the daily curve)."""
        if rate_factor <= 0:
            return None
        rng = self._rng
        top = _MAX_PER_H * rate_factor
        at = float(t_ms)
        for _ in range(10_000):
            at += rng.expovariate(top) * 3_600_000
            accept = deposits_per_hour(int(at), self.category) * rate_factor / top
            if rng.random() < accept:
                return int(at)
        return None

    def sample(self, t_ms: int) -> Fields:
        """The readings at t_ms."""
        rng = self._rng
        dt = max(0.0, (t_ms - self._last_ms) / 1000)
        self._last_ms = t_ms
        self.battery = max(1.0, self.battery - self.drain_per_h * dt / 3600)
        hour = local_hour(t_ms)
        ambient = 12 + 5 * math.sin(2 * math.pi * (hour - 9) / 24)  # warmest at 15:00
        temp = ambient + self.warmth + _noise(rng, 0.3)
        lid_open = self.last_deposit_ms is not None and t_ms - self.last_deposit_ms < 15_000
        return {
            "fill": round(self.fill, 1),
            "weight": round(self.weight, 2),
            "temp": round(temp, 1),
            "battery": round(self.battery),
            "lid_open": lid_open,
        }
