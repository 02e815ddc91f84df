"""Figures the benchmarks and tests read: percentiles, a process's memory, /metrics."""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Sequence
from pathlib import Path


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest rank (p in 0..1): the smallest value with at least p of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory in MB: now (VmRSS) or at its peak (VmHWM); 0 once gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def scrape_metrics(listen: str) -> dict[str, float]:
    """A service's /metrics at `listen` as {name: value}, labelled series summed."""
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            name = name.split("{", 1)[0]
            out[name] = out.get(name, 0.0) + float(value)
    return out
