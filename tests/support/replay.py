"""A recorded day: a deterministic simulated fleet with known incidents, replayed and scored.

`DayPlan` scripts a day of 1,000 wristbands and 100 bins (60 s interval, fixed
seed, from a local midnight) with 54 incidents across every scenario.
`record` generates its messages once (cached as gzipped lines, keyed by the
plan and the simulators' source), `replay` feeds them through a `RuleEngine`
whose clock is the readings' own ts, ticking every simulated 30 s, and `score`
matches the opening findings to the incidents: each incident must be detected
by one of its rules within its window, and every opening no incident explains
is a false finding. tests/integration/test_rules_replay.py and bench/rules.py
run it.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

from protocol.decode import Decoder
from protocol.models import Kind, Reading, StatusChange
from rules.baselines import seed_baseline
from rules.config import RuleSet, load_rules
from rules.context import Profile, build_contexts
from rules.engine import RuleEngine
from rules.findings import Finding
from rules.state import HR_BINS, HR_LOW, SPO2_LOW, Baseline
from simulators import scenarios
from simulators.device import simulate
from simulators.manifest import build_fleet, rng_for
from simulators.models import DeviceSpec, FleetConfig, Incident, Scenario

__all__ = [
    "CONTEXT",
    "DAY_START_MS",
    "DETECTS",
    "GRACE_MS",
    "SEED",
    "TICK_MS",
    "DayPlan",
    "Outcome",
    "Recording",
    "ReplayReport",
    "Replayed",
    "SimClock",
    "describe",
    "episodes",
    "openings",
    "plan_incidents",
    "profiles",
    "record",
    "replay",
    "run_day",
    "score",
    "usual_vitals",
]

# Monday 2026-03-02 00:00 in Shanghai: a local midnight, so the day has all its waking hours.
DAY_START_MS: Final = int(datetime(2026, 3, 2, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp() * 1000)
SEED: Final = 2026
TICK_MS: Final = 30_000
CHUNK: Final = 50_000  # readings decoded at a time: memory stays flat, decoding stays untimed
_H: Final = 3600.0
_CACHE_VERSION: Final = b"1"
_CACHE_KEEP: Final = 4  # recorded days kept in a cache folder (a full day is about 65 MB)
_SOURCES: Final = ("simulators", "protocol")
# Past days of a steady-state replay: the resident's usual (hr, spo2), give or take a little.
_HISTORY_JITTER: Final = (
    (0, 0), (-1, 0), (1, 1), (-2, 0), (2, -1), (0, 1), (-1, 0),
    (1, 0), (0, -1), (2, 0), (-2, 1), (1, 0), (-1, -1), (0, 0),
)  # fmt: skip

# The day's incidents as (scenario, start, end) in local time; None: an instant.
_WRISTBAND_PLAN: Final[tuple[tuple[Scenario, str, str | None], ...]] = (
    *(
        (Scenario.FALL, t, None)
        for t in ("02:10", "06:45", "08:20", "10:05", "13:30", "16:40", "19:15", "22:50")
    ),
    *((Scenario.SOS, t, None) for t in ("03:30", "09:10", "11:45", "15:20", "18:05", "21:40")),
    # Mostly at night, at rest, where hr_high (an at-rest rule) can see them too; the
    # 13:00 one comes while the wearer walks, so NEWS2 must.
    (Scenario.TACHYCARDIA, "00:30", "00:50"),
    (Scenario.TACHYCARDIA, "01:40", "02:00"),
    (Scenario.TACHYCARDIA, "04:00", "04:15"),
    (Scenario.TACHYCARDIA, "05:20", "05:45"),
    (Scenario.TACHYCARDIA, "13:00", "13:20"),
    (Scenario.TACHYCARDIA, "22:10", "22:30"),
    (Scenario.TACHYCARDIA, "23:05", "23:25"),
    (Scenario.SPO2_DROP, "01:15", "01:30"),
    (Scenario.SPO2_DROP, "03:50", "04:05"),
    (Scenario.SPO2_DROP, "12:10", "12:25"),
    (Scenario.SPO2_DROP, "17:30", "17:45"),
    (Scenario.SPO2_DROP, "23:40", "23:55"),
    # No steps for 4 h inside waking hours (07:00-21:00) raises inactivity.
    (Scenario.NO_MOVEMENT, "08:00", "13:30"),
    (Scenario.NO_MOVEMENT, "09:30", "15:00"),
    (Scenario.NO_MOVEMENT, "12:00", "17:30"),
    (Scenario.NO_MOVEMENT, "14:30", "20:30"),
    # Not worn for 30 min in waking hours raises not_worn.
    (Scenario.OFF_WRIST, "07:40", "08:40"),
    (Scenario.OFF_WRIST, "10:20", "11:10"),
    (Scenario.OFF_WRIST, "14:00", "15:00"),
    (Scenario.OFF_WRIST, "16:30", "17:20"),
    (Scenario.OFF_WRIST, "19:30", "20:30"),
    (Scenario.LOW_BATTERY, "05:00", "07:00"),
    (Scenario.LOW_BATTERY, "11:00", "12:30"),
    (Scenario.LOW_BATTERY, "18:00", "19:00"),
    (Scenario.SILENT, "02:30", "03:30"),
    (Scenario.SILENT, "09:00", "10:00"),
    (Scenario.SILENT, "15:40", "16:30"),
    (Scenario.SILENT, "20:00", "21:00"),
)
_BIN_PLAN: Final[tuple[tuple[Scenario, str, str | None], ...]] = (
    # One wrong deposit a minute for 30 min: a building's accuracy falls well below 85 %.
    (Scenario.SORTING_ERRORS, "10:00", "10:30"),
    (Scenario.SORTING_ERRORS, "14:00", "14:30"),
    (Scenario.SORTING_ERRORS, "19:00", "19:30"),
    (Scenario.BIN_OVERFLOW, "08:30", "11:00"),
    (Scenario.BIN_OVERFLOW, "12:30", "14:00"),
    (Scenario.BIN_OVERFLOW, "17:30", "19:30"),
    (Scenario.BIN_OVERFLOW, "21:00", "23:00"),
    (Scenario.BIN_FIRE, "04:30", "04:50"),
    (Scenario.BIN_FIRE, "12:40", "13:00"),
    (Scenario.BIN_FIRE, "20:20", "20:40"),
    (Scenario.LOW_BATTERY, "13:00", "15:00"),
    (Scenario.SILENT, "10:30", "12:00"),
)

# Which rules detect a scenario, and which further rules it may also raise (context).
DETECTS: Final[dict[Scenario, frozenset[str]]] = {
    Scenario.FALL: frozenset({"fall"}),
    Scenario.SOS: frozenset({"sos"}),
    Scenario.TACHYCARDIA: frozenset({"hr_high", "news2"}),
    Scenario.SPO2_DROP: frozenset({"spo2_low", "spo2_critical", "news2"}),
    Scenario.NO_MOVEMENT: frozenset({"inactivity"}),
    Scenario.OFF_WRIST: frozenset({"not_worn"}),
    Scenario.LOW_BATTERY: frozenset({"battery_low"}),
    Scenario.SILENT: frozenset({"no_data", "offline"}),
    Scenario.BIN_OVERFLOW: frozenset({"bin_full"}),
    Scenario.SORTING_ERRORS: frozenset({"sorting_accuracy"}),
    Scenario.BIN_FIRE: frozenset({"bin_fire"}),
}
# After an incident's end (an instant's start), how long its findings may still open.
GRACE_MS: Final = 5 * 60_000
# Findings an incident may also raise on its own device, and for how long after its end.
CONTEXT: Final[dict[Scenario, tuple[frozenset[str], int]]] = {
    Scenario.BIN_OVERFLOW: (frozenset({"bin_full_soon"}), GRACE_MS),
    # A burst's wrong deposits weigh in the bin until its next collection round (07:00 or
    # 19:00 plus up to 42 min), so the bin may fill up hours after the burst.
    Scenario.SORTING_ERRORS: (frozenset({"bin_full", "bin_full_soon"}), 13 * 3_600_000),
}


@dataclass(frozen=True, slots=True)
class DayPlan:
    """What to simulate: the fleet, how long, and whether to inject the day's incidents."""

    wristbands: int = 1000
    bins: int = 100
    hours: float = 24.0
    seed: int = SEED
    interval: float = 60.0  # what real bands do
    incidents: bool = True
    start_ms: int = DAY_START_MS

    def fleet(self) -> FleetConfig:
        config = FleetConfig(
            wristbands=self.wristbands,
            bins=self.bins,
            interval=self.interval,
            seed=self.seed,
            duration=self.hours * _H,
        )
        if not self.incidents:
            return config
        incidents = plan_incidents(build_fleet(config), self.hours * _H, self.seed)
        return replace(config, incidents=incidents)


def plan_incidents(
    devices: Sequence[DeviceSpec], duration: float, seed: int
) -> tuple[Incident, ...]:
    """The day's incidents on distinct devices (seeded); those that would not finish are left out.

    Sorting-error bursts go to bins of distinct buildings with no other bin incident,
    so each building finding has one cause.
    """
    rng = rng_for(seed, "replay-incidents")
    bands = [d for d in devices if d.kind is Kind.WRISTBAND]
    bins = [d for d in devices if d.kind is Kind.BIN]
    rng.shuffle(bands)
    buildings = sorted({d.entry.building for d in bins})
    rng.shuffle(buildings)
    out: list[Incident] = []

    def add(scenario: Scenario, start_at: str, end_at: str | None, device: DeviceSpec) -> None:
        start = _seconds(start_at)
        end = None if end_at is None else _seconds(end_at)
        # The finding must fit before the run stops (not_worn takes 30 min, inactivity 4 h).
        if (start if end is None else end) + GRACE_MS / 1000 <= duration:
            out.append(scenarios.make_incident(scenario, device.name, start, end, "replay"))

    for (scenario, start_at, end_at), band in zip(_WRISTBAND_PLAN, bands, strict=False):
        add(scenario, start_at, end_at, band)
    sorting = [p for p in _BIN_PLAN if p[0] is Scenario.SORTING_ERRORS]
    others = [p for p in _BIN_PLAN if p[0] is not Scenario.SORTING_ERRORS]
    by_building = {b: [d for d in bins if d.entry.building == b] for b in buildings}
    for plan, building in zip(sorting, buildings, strict=False):
        add(*plan, rng.choice(by_building[building]))
    rest = [d for b in buildings[len(sorting) :] for d in by_building[b]]
    rng.shuffle(rest)
    for plan, bin_ in zip(others, rest, strict=False):
        add(*plan, bin_)
    return tuple(sorted(out, key=lambda i: (i.start, i.device_id)))


def _seconds(at: str) -> float:
    hours, _, minutes = at.partition(":")
    return int(hours) * _H + int(minutes) * 60.0


def profiles(devices: Iterable[DeviceSpec], interval: float) -> dict[str, Profile]:
    """What a registry would say of the simulated fleet: grid, building, category, home."""
    return {
        d.device_id: Profile(
            d.device_id,
            d.kind,
            interval_s=interval,
            grid=d.entry.grid,
            building_key=d.entry.building,
            building=d.entry.building,
            category=d.entry.category,
            home_lat=d.home_lat if d.kind is Kind.WRISTBAND else None,
            home_lon=d.home_lon if d.kind is Kind.WRISTBAND else None,
        )
        for d in devices
    }


# -- recording -------------------------------------------------------------------------


def _cache_key(plan: DayPlan, config: FleetConfig) -> str:
    """A digest of the plan, its incidents and the simulators' source: a change regenerates."""
    digest = hashlib.sha256(_CACHE_VERSION)
    digest.update(repr((plan, tuple(i.spec for i in config.incidents))).encode())
    root = Path(__file__).resolve().parents[2]
    for name in _SOURCES:
        path = root / name
        for source in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def default_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / "carewatch-replay"


@dataclass(slots=True)
class Recording:
    """A planned day's fleet and incidents; `chunks()` yields its readings decoded, in order."""

    plan: DayPlan
    config: FleetConfig
    devices: list[DeviceSpec]
    incidents: tuple[Incident, ...]
    cache: Path | None
    prepare_s: float = 0.0  # generating (or reading the cache) and decoding, untimed by replay
    generated: bool = False  # whether the last pass generated the messages (no cache yet)
    messages: int = 0
    rejected: int = 0  # messages the decoder refused (a simulator bug if ever > 0)

    def _lines(self) -> Iterator[tuple[int, str, bytes]]:
        if self.cache is not None and self.cache.exists():
            os.utime(self.cache)  # in use: the last to be pruned
            with gzip.open(self.cache, "rb") as src:
                for line in src:
                    ts, topic, payload = line.rstrip(b"\n").split(b"\t", 2)
                    yield int(ts), topic.decode(), payload
            return
        self.generated = True
        messages = simulate(self.config, start_ms=self.plan.start_ms)
        if self.cache is None:
            for m in messages:
                yield m.ts, m.topic, m.payload
            return
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        partial = self.cache.with_suffix(f".{os.getpid()}.part")
        with gzip.open(partial, "wb", compresslevel=1) as out:
            for m in messages:
                out.write(b"%d\t%s\t%s\n" % (m.ts, m.topic.encode(), m.payload))
                yield m.ts, m.topic, m.payload
        partial.replace(self.cache)  # only a complete day is ever read back
        _prune(self.cache.parent)

    def chunks(self, size: int = CHUNK) -> Iterator[list[Reading | StatusChange]]:
        """The day's readings in lists of `size`, decoded as the ingester would."""
        decode = Decoder().decode
        perf = time.perf_counter
        chunk: list[Reading | StatusChange] = []
        self.messages = self.rejected = 0
        self.generated = False
        self.prepare_s = 0.0
        began = perf()
        for ts, topic, payload in self._lines():
            self.messages += 1
            item = decode(topic, payload, ts)
            if type(item) is Reading or type(item) is StatusChange:
                chunk.append(item)
            else:
                self.rejected += 1
            if len(chunk) >= size:
                self.prepare_s += perf() - began
                yield chunk
                began = perf()
                chunk = []
        self.prepare_s += perf() - began
        if chunk:
            yield chunk


def _prune(folder: Path) -> None:
    """Keep the most recently used recordings; older simulators' days are never read again."""
    days = sorted(folder.glob("day-*.tsv.gz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in days[_CACHE_KEEP:]:
        stale.unlink(missing_ok=True)


def record(plan: DayPlan, cache_dir: Path | None = None, *, cache: bool = True) -> Recording:
    """The recording of a plan; messages are generated on the first `chunks()` (and cached)."""
    config = plan.fleet()
    devices = build_fleet(config)
    incidents = scenarios.resolve(config.incidents, devices)
    path = None
    if cache:
        folder = cache_dir if cache_dir is not None else default_cache_dir()
        path = folder / f"day-{_cache_key(plan, config)}.tsv.gz"
    return Recording(plan, config, devices, incidents, path)


# -- replaying -------------------------------------------------------------------------


class SimClock:
    """The engine's clock in a replay: the event time of the reading being fed."""

    __slots__ = ("now",)

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass(slots=True)
class Replayed:
    """What a replay produced: the findings, the engine (state, stats) and the timings."""

    engine: RuleEngine
    findings: list[Finding]
    readings: int
    ticks: int
    feed_s: float  # feed and tick, generation and decoding excluded
    tick_s: float  # of which tick

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.feed_s if self.feed_s > 0 else math.inf


def usual_vitals(engine: RuleEngine) -> dict[str, tuple[float, float]]:
    """Each baseline's median resting (hr, spo2) of the day replayed so far."""
    out: dict[str, tuple[float, float]] = {}
    for key, baseline in engine.baselines.items():
        hr = _hist_median(baseline.hist[:HR_BINS].tolist())
        spo2 = _hist_median(baseline.hist[HR_BINS:].tolist())
        if hr is not None and spo2 is not None:
            out[key] = (hr + HR_LOW, spo2 + SPO2_LOW)
    return out


def _hist_median(hist: Sequence[int]) -> int | None:
    total = sum(int(n) for n in hist)
    seen = 0
    for index, count in enumerate(hist):
        seen += int(count)
        if seen >= (total + 1) / 2:
            return index
    return None


def replay(
    recording: Recording,
    rules: RuleSet | None = None,
    history: Mapping[str, tuple[float, float]] | None = None,
) -> Replayed:
    """Feed the day through a fresh engine, ticking every simulated 30 s; time only the engine.

    `history` (from `usual_vitals` of an earlier replay) gives each baseline two weeks of
    past days around those values, as a site in its steady state has: the baseline rules
    then judge (and cost) what they do in production instead of waiting for history.
    """
    rules = rules if rules is not None else load_rules(None)
    start = recording.plan.start_ms
    clock = SimClock(start)
    contexts = build_contexts(profiles(recording.devices, recording.plan.interval), rules)
    engine = RuleEngine(rules, clock, contexts)
    for key, (hr, spo2) in (history or {}).items():
        days = contexts[key].limits.baseline.days if key in contexts else 14
        baseline = engine.baselines[key] = Baseline.new(days)
        seed_baseline(baseline, [(hr + a, spo2 + b) for a, b in _HISTORY_JITTER[:days]])
    feed = engine.feed
    tick = engine.tick
    perf = time.perf_counter
    next_tick = start + TICK_MS
    findings: list[Finding] = []
    readings = ticks = 0
    feed_s = tick_s = 0.0
    for chunk in recording.chunks():
        began = perf()
        for item in chunk:
            ts = item.body.ts if isinstance(item, Reading) else item.received_ms
            if ts >= next_tick:
                t0 = perf()
                while ts >= next_tick:
                    clock.now = next_tick
                    tick(next_tick)
                    next_tick += TICK_MS
                    ticks += 1
                tick_s += perf() - t0
            clock.now = ts
            feed(item)
        feed_s += perf() - began
        readings += len(chunk)
        findings.extend(engine.take())
    # The day's last ticks: silence near its end still shows.
    end = start + round(recording.plan.hours * _H * 1000)
    began = perf()
    while next_tick <= end:
        clock.now = next_tick
        tick(next_tick)
        next_tick += TICK_MS
        ticks += 1
    elapsed = perf() - began
    feed_s += elapsed
    tick_s += elapsed
    findings.extend(engine.take())
    return Replayed(engine, findings, readings, ticks, feed_s, tick_s)


# -- scoring ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """One injected incident and the opening finding that detected it (None: missed).

    `already_open`: no finding opened in the window because one of the incident's
    rules was open for its subject since before it began (and stayed open): the
    condition was reported, but by that earlier finding.
    """

    incident: Incident
    subject: str
    window: tuple[int, int]  # ms: from the incident's start to its end plus the grace
    finding: Finding | None
    already_open: bool = False

    @property
    def delay_s(self) -> float | None:
        if self.finding is None:
            return None
        return (self.finding.ts - self.window[0]) / 1000


@dataclass(slots=True)
class ReplayReport:
    """How the engine did on a recorded day."""

    outcomes: list[Outcome]
    false_findings: list[Finding]  # openings no incident explains
    openings: int
    readings: int
    ticks: int
    elapsed_s: float  # feed and tick only
    prepare_s: float
    generated: bool
    rejected: int
    by_rule: dict[str, int] = field(default_factory=dict)  # every opening, by rule

    @property
    def detected(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.finding is not None]

    @property
    def missed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.finding is None]

    @property
    def false_by_rule(self) -> dict[str, int]:
        return dict(sorted(Counter(f.rule for f in self.false_findings).items()))

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.elapsed_s if self.elapsed_s > 0 else math.inf

    def summary(self) -> str:
        lines = [
            f"readings {self.readings:,} in {self.elapsed_s:.2f} s: "
            f"{self.readings_per_s:,.0f} readings/s (feed + tick, {self.ticks:,} ticks)",
            f"incidents {len(self.outcomes)}: detected {len(self.detected)}, "
            f"missed {len(self.missed)}",
            f"openings {self.openings}: false {len(self.false_findings)} {self.false_by_rule}",
        ]
        lines += [f"  missed {o.incident.spec}" for o in self.missed]
        lines += [f"  false {describe(f)}" for f in self.false_findings]
        return "\n".join(lines)


def describe(finding: Finding) -> str:
    local = datetime.fromtimestamp(finding.ts / 1000, ZoneInfo("Asia/Shanghai"))
    return f"{local:%H:%M:%S} {finding.rule} {finding.subject} value={finding.value}"


def openings(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that open a condition (not updates of one already open, nor clears)."""
    return [opened for opened, _ in episodes(findings)]


def episodes(findings: Iterable[Finding]) -> list[tuple[Finding, int | None]]:
    """Each opening finding with the ts of the finding that cleared it (None: still open)."""
    open_: dict[tuple[str, str], int] = {}
    out: list[tuple[Finding, int | None]] = []
    for finding in findings:
        key = finding.key
        if finding.active:
            if key not in open_:
                open_[key] = len(out)
                out.append((finding, None))
        elif (index := open_.pop(key, None)) is not None:
            out[index] = (out[index][0], finding.ts)
    return out


def score(recording: Recording, replayed: Replayed) -> ReplayReport:
    """Match openings to incidents by subject, rule and window; the unmatched ones are false."""
    start = recording.plan.start_ms
    building_of = {d.device_id: d.entry.building for d in recording.devices}
    spans = episodes(replayed.findings)
    opened = [f for f, _ in spans]
    explained: set[int] = set()
    outcomes: list[Outcome] = []
    for incident in recording.incidents:
        first, last = incident.window_ms(start)
        window = (first, (first if last is None else last) + GRACE_MS)
        scenario = incident.scenario
        if scenario is Scenario.SORTING_ERRORS:
            subject = building_of[incident.device_id]
        else:
            subject = incident.device_id
        detects = DETECTS[scenario]
        context, context_ms = CONTEXT.get(scenario, (frozenset(), 0))
        context_end = window[1] - GRACE_MS + context_ms
        hit: Finding | None = None
        for index, f in enumerate(opened):
            if f.rule in detects and f.subject == subject and window[0] <= f.ts <= window[1]:
                explained.add(index)
                hit = hit or f
            elif (
                f.rule in context
                and f.subject == incident.device_id
                and window[0] <= f.ts <= context_end
            ):
                explained.add(index)
        already = False
        if hit is None:
            hit = _open_at(spans, subject, detects, window[0])
            already = hit is not None
        outcomes.append(Outcome(incident, subject, window, hit, already))
    false = [f for i, f in enumerate(opened) if i not in explained]
    return ReplayReport(
        outcomes=outcomes,
        false_findings=false,
        openings=len(opened),
        readings=replayed.readings,
        ticks=replayed.ticks,
        elapsed_s=replayed.feed_s,
        prepare_s=recording.prepare_s,
        generated=recording.generated,
        rejected=recording.rejected,
        by_rule=dict(sorted(Counter(f.rule for f in opened).items())),
    )


def _open_at(
    spans: list[tuple[Finding, int | None]], subject: str, rules: frozenset[str], at: int
) -> Finding | None:
    """The finding of one of `rules` for `subject` opened before `at` and still open then."""
    for finding, cleared in spans:
        opened_before = finding.ts < at and (cleared is None or cleared >= at)
        if opened_before and finding.subject == subject and finding.rule in rules:
            return finding
    return None


def run_day(
    plan: DayPlan | None = None, rules: RuleSet | None = None, cache_dir: Path | None = None
) -> tuple[ReplayReport, Replayed]:
    """Record (or read the cache), replay and score one day."""
    recording = record(plan or DayPlan(), cache_dir)
    replayed = replay(recording, rules)
    return score(recording, replayed), replayed
