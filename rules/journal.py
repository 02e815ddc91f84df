"""What the rule engine journals per step: the inputs it judged and the findings they made.

One entry per settled chunk of readings, tick or resolve, appended (fsynced) before
the chunk's messages are acknowledged. The alert side reads the findings; after a
crash the engine replays the inputs since its checkpoint (docs/rules.md, "Crashes").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, Protocol

import msgspec

from protocol.models import (
    BinEvent,
    BinTelemetry,
    Kind,
    Reading,
    StatusChange,
    WristbandEvent,
    WristbandTelemetry,
)
from rules.findings import Finding

Item = Reading | StatusChange

# The order of a chunk's items, one byte each: which list the next one comes from.
_WT, _WE, _BT, _BE, _ST = b"t", b"e", b"b", b"d", b"s"
_CODE: Final = {WristbandTelemetry: _WT, WristbandEvent: _WE, BinTelemetry: _BT, BinEvent: _BE}


class Entry(msgspec.Struct, array_like=True, omit_defaults=True, gc=False):
    """One step of the engine: a chunk of items, a tick, or a resolve; and its findings.

    `at` is the engine's clock (ms) when it judged the step. Readings are kept per body
    type (msgspec cannot decode a union of untagged structs) with `order` saying how
    they interleave, so a replay feeds them exactly as they came.
    """

    at: int
    order: bytes = b""
    wt: list[tuple[str, WristbandTelemetry]] = []
    we: list[tuple[str, WristbandEvent]] = []
    bt: list[tuple[str, BinTelemetry]] = []
    be: list[tuple[str, BinEvent]] = []
    status: list[StatusChange] = []
    tick: bool = False
    resolve: tuple[str, str] | None = None
    findings: list[Finding] = []


def chunk_entry(at: int, items: list[Item], findings: list[Finding]) -> Entry:
    """The entry of a settled chunk."""
    order = bytearray()
    lists: dict[bytes, list[object]] = {_WT: [], _WE: [], _BT: [], _BE: [], _ST: []}
    for item in items:
        if type(item) is Reading:
            code = _CODE[type(item.body)]
            lists[code].append((item.device_id, item.body))
        else:
            code = _ST
            lists[code].append(item)
        order += code
    return Entry(
        at,
        bytes(order),
        lists[_WT],  # type: ignore[arg-type]
        lists[_WE],  # type: ignore[arg-type]
        lists[_BT],  # type: ignore[arg-type]
        lists[_BE],  # type: ignore[arg-type]
        lists[_ST],  # type: ignore[arg-type]
        findings=findings,
    )


def items_of(entry: Entry) -> list[Item]:
    """A chunk entry's items in the order they were judged."""
    wristband, bin_ = Kind.WRISTBAND, Kind.BIN
    sources: dict[int, Iterator[Item]] = {
        _WT[0]: (Reading(d, wristband, b) for d, b in entry.wt),
        _WE[0]: (Reading(d, wristband, b) for d, b in entry.we),
        _BT[0]: (Reading(d, bin_, b) for d, b in entry.bt),
        _BE[0]: (Reading(d, bin_, b) for d, b in entry.be),
        _ST[0]: iter(entry.status),
    }
    return [next(sources[code]) for code in entry.order]


class Replayable(Protocol):
    """The engine's inputs, as `replay` drives them (a `RuleEngine`)."""

    def feed(self, item: Item) -> None: ...

    def tick(self, now: int) -> None: ...

    def resolve(self, device_id: str, rule: str, now: int) -> bool: ...

    def take(self) -> list[Finding]: ...


def replay(engine: Replayable, entry: Entry) -> None:
    """Judge an entry's inputs again; its findings were journaled with it and are dropped."""
    if entry.tick:
        engine.tick(entry.at)
    elif entry.resolve is not None:
        engine.resolve(*entry.resolve, entry.at)
    else:
        for item in items_of(entry):
            engine.feed(item)
    engine.take()


encode_entry = msgspec.msgpack.Encoder().encode
decode_entry = msgspec.msgpack.Decoder(Entry).decode
