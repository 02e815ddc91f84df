"""Rule-engine throughput and state memory on the recorded day (`tests/support/replay.py`).

What it replays, times and measures: docs/BENCHMARKS.md, "Rule engine".

    .venv/bin/python bench/rules.py [--wristbands 1000] [--bins 100] [--hours 24]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rules.checkpoint import (
    CHECKPOINT_VERSION,
    Checkpoint,
    decode_checkpoint,
    encode_checkpoint,
)
from rules.engine import RuleEngine
from tests.support.replay import (
    SEED,
    DayPlan,
    Replayed,
    ReplayReport,
    default_cache_dir,
    record,
    replay,
    score,
    usual_vitals,
)


def state_bytes(data: bytes) -> int:
    """The memory a checkpoint's state takes once restored (tracemalloc, live objects only)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        state = decode_checkpoint(data)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del state
    return after - before


def partial_checkpoint(engine: RuleEngine, *, bands: bool, bins: bool, baselines: bool) -> bytes:
    return encode_checkpoint(
        Checkpoint(
            version=CHECKPOINT_VERSION,
            saved_ms=0,
            wristbands=engine.wristbands if bands else {},
            bins=engine.bins if bins else {},
            buildings=engine.buildings if bins else {},
            baselines=engine.baselines if baselines else {},
        )
    )


def print_rate(label: str, run: Replayed) -> None:
    feed_only = run.feed_s - run.tick_s
    print(
        f"{label:<32} {run.readings_per_s:>9,.0f} readings/s "
        f"({run.readings:,} in {run.feed_s:.2f} s; feed {feed_only:.2f} s = "
        f"{run.readings / feed_only:,.0f}/s, {run.ticks:,} ticks {run.tick_s:.2f} s)"
    )


def print_score(report: ReplayReport) -> None:
    print(
        f"{'  incidents detected':<32} {len(report.detected):>9} of {len(report.outcomes)}"
        + "".join(f"\n  missed {o.incident.spec}" for o in report.missed)
    )
    print(f"{'  openings':<32} {report.openings:>9}  {report.by_rule}")
    print(f"{'  false findings':<32} {len(report.false_findings):>9}  {report.false_by_rule}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--wristbands", type=int, default=1000)
    parser.add_argument("--bins", type=int, default=100)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--cache", type=Path, default=default_cache_dir(), help="message cache")
    parser.add_argument("--no-cache", action="store_true", help="generate, do not cache")
    return parser.parse_args()


def print_state(bands_run: Replayed, full: RuleEngine) -> None:
    """The state after the day, measured on a fresh copy: what a worker holds per device."""
    engine = bands_run.engine
    n_bands = max(1, len(engine.wristbands))
    with_base = state_bytes(partial_checkpoint(engine, bands=True, bins=False, baselines=True))
    base_only = state_bytes(partial_checkpoint(engine, bands=False, bins=False, baselines=True))
    print(
        f"{'state per wristband':<32} {with_base / n_bands:>9,.0f} bytes "
        f"(of which baseline {base_only / n_bands:,.0f}; {n_bands} bands, "
        f"{len(engine.baselines)} baselines)"
    )
    checkpoint = len(engine.snapshot())
    print(f"{'checkpoint per wristband':<32} {checkpoint / n_bands:>9,.0f} bytes")
    if full.bins:
        bins_state = state_bytes(partial_checkpoint(full, bands=False, bins=True, baselines=False))
        print(
            f"{'state per bin':<32} {bins_state / len(full.bins):>9,.0f} bytes "
            f"(with its share of {len(full.buildings)} buildings)"
        )
    devices = len(full.wristbands) + len(full.bins)
    print(
        f"{'checkpoint per device (day)':<32} {len(full.snapshot()) / devices:>9,.0f} bytes "
        f"({devices} devices)"
    )


def peak_rss_mb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return 0


def main() -> int:
    args = parse_args()
    common = {"wristbands": args.wristbands, "hours": args.hours, "seed": args.seed}
    print(
        f"recorded day: {args.wristbands} wristbands, {args.bins} bins, {args.hours:g} h, "
        f"60 s interval, seed {args.seed}; one core of {os.cpu_count()}, "
        f"Python {sys.version.split()[0]}"
    )

    day = record(DayPlan(bins=args.bins, **common), args.cache, cache=not args.no_cache)
    run = replay(day)
    report = score(day, run)
    how = "generated" if report.generated else "read from the cache"
    print(f"messages {day.messages:,} ({how} and decoded in {report.prepare_s:.1f} s, untimed)")
    print_rate("day with incidents", run)
    print_score(report)
    steady_run = replay(day, history=usual_vitals(run.engine))
    steady = score(day, steady_run)
    print_rate("  the same, baselines 14 days", steady_run)
    print_score(steady)

    bands = record(DayPlan(bins=0, incidents=False, **common), args.cache, cache=not args.no_cache)
    print_rate("pure wristband telemetry", replay(bands))
    bands_run = replay(bands, history=usual_vitals(run.engine))
    print_rate("  the same, baselines 14 days", bands_run)

    print_state(bands_run, run.engine)
    print(f"{'peak RSS of this process':<32} {peak_rss_mb():>9} MB")
    return 0 if not report.missed and not steady.missed and not report.rejected else 1


if __name__ == "__main__":
    start = time.perf_counter()
    code = main()
    print(f"(benchmark ran {time.perf_counter() - start:.0f} s)")
    sys.exit(code)
