"""The Prometheus text exposition format (0.0.4), rendered in one place for every part."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric: a single value, or one value per label value (`label="reason"`)."""

    name: str
    kind: Literal["counter", "gauge"]
    help: str
    value: float = 0
    label: str | None = None
    by_label: Mapping[str, float] | None = None


def render_prometheus(prefix: str, metrics: Iterable[Metric]) -> str:
    """`# HELP`, `# TYPE` and the samples of each metric, names prefixed (`carewatch_ingest_`)."""
    out: list[str] = []
    for m in metrics:
        full = f"{prefix}{m.name}"
        out.append(f"# HELP {full} {m.help}")
        out.append(f"# TYPE {full} {m.kind}")
        if m.label is None:
            out.append(f"{full} {m.value}")
            continue
        for key, value in sorted((m.by_label or {}).items()):
            escaped = key.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            out.append(f'{full}{{{m.label}="{escaped}"}} {value}')
    return "\n".join(out) + "\n"
