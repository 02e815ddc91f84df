"""The rule engine at work in the ingest process: fed, ticked, checkpointed, reloaded.

Acknowledgement after settling, and checkpoints: docs/rules.md, "State, restarts and scaling".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from core.db import Database
from core.exceptions import JournalError
from core.journal import Journal
from core.metrics import Metric, render_prometheus
from core.settings import Settings
from devices.directory import load_devices_csv
from protocol.models import Reading, StatusChange
from rules.checkpoint import decode_checkpoint
from rules.config import RuleSet, load_rules
from rules.context import (
    Profile,
    build_contexts,
    load_registry_profiles,
    profiles_from_directory,
)
from rules.engine import RuleEngine
from rules.exceptions import RulesError
from rules.findings import Finding, FindingSink
from rules.journal import Entry, chunk_entry, decode_entry, encode_entry, replay

log = logging.getLogger(__name__)


def wall_ms() -> int:
    """The wall clock in ms since the epoch: the engine's clock in production."""
    return time.time_ns() // 1_000_000


class RuleService:
    """Owns a RuleEngine for this worker's devices and the tasks that keep it current."""

    def __init__(
        self,
        settings: Settings,
        sinks: Sequence[FindingSink],
        *,
        database: Database | None = None,
        clock: Callable[[], int] = wall_ms,
        journal: Journal | None = None,
    ) -> None:
        tuning = settings.rules
        self.tuning = tuning
        self.rules_file = tuning.file
        self.rules = load_rules(tuning.file)  # a bad file stops the start, with its errors
        self._rules_mtime = _mtime(tuning.file)
        self.sinks = list(sinks)
        self.database = database
        self.clock = clock
        # While replaying the journal the engine's clock is each entry's.
        self._replay_at: int | None = None
        self.engine = RuleEngine(self.rules, self._engine_clock)
        # With a journal, every step (chunk, tick, resolve) is appended before its findings
        # count as taken; one step at a time, so the journal's order is the engine's.
        self.journal = journal
        if journal is not None:
            # Registered now, before any reader can trim: until `restore` has read the
            # checkpoint, every segment stays (the replay may need them).
            journal.register("rules")
        self.journal_lsn = 0
        self.replayed = 0
        self._step = asyncio.Lock()
        self._chunk: list[Reading | StatusChange] = []
        self._chunk_at = 0
        self.checkpoint_path = settings.state_dir / "rules" / "checkpoint.msgpack"
        self._profiles: dict[str, Profile] = {}
        devices_file = settings.ingest.devices_file
        if devices_file is not None:
            self._profiles = profiles_from_directory(load_devices_csv(devices_file))
            self.engine.set_contexts(build_contexts(self._profiles, self.rules))
        self.published = 0
        self.sink_errors = 0
        self.checkpoints = 0
        self.reloads = 0

    # -- the ingester's consumer ---------------------------------------------------

    def _engine_clock(self) -> int:
        at = self._replay_at
        return self.clock() if at is None else at

    async def handle(self, item: Reading | StatusChange) -> None:
        """Feed one reading or status change to the engine (its findings wait for `settle`)."""
        if self.journal is not None:
            if not self._chunk:
                # The chunk holds the step until it settles (uncontended: no suspension).
                await self._step.acquire()
                self._chunk_at = self.clock()
            self._chunk.append(item)
        self.engine.feed(item)

    async def settle(self) -> None:
        """Make the chunk's inputs and findings durable; returns once they are."""
        if self.journal is None:
            if self.engine.pending:
                await self.publish(self.engine.take())
            return
        if not self._chunk:
            return
        items, self._chunk = self._chunk, []
        try:
            findings = self.engine.take()
            await self._journal(chunk_entry(self._chunk_at, items, findings))
        finally:
            self._step.release()

    async def _journal(self, entry: Entry) -> None:
        """Append one step to the journal (retried until the disk takes it), then the sinks."""
        assert self.journal is not None
        delay = 0.2
        while True:
            try:
                self.journal_lsn = await self.journal.append([encode_entry(entry)])
                break
            except JournalError:
                # Holding the readings back (unacknowledged) beats losing a fall.
                self.sink_errors += 1
                log.exception("could not journal findings; retrying in %.1f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        if entry.findings:
            await self.publish(entry.findings)

    async def publish(self, findings: list[Finding]) -> None:
        """Give findings to every sink; a failing sink is retried until it takes them."""
        delay = 0.2
        for sink in self.sinks:
            while True:
                try:
                    await sink.publish(findings)
                    break
                except Exception:
                    # Holding the reading back (unacknowledged) beats losing a fall.
                    self.sink_errors += 1
                    log.exception("a finding sink failed; retrying in %.1f s", delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
        self.published += len(findings)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Read the registry, restore the checkpoint and replay the journal after it."""
        await self.refresh_context()
        self.restore()

    async def run(self, stop: asyncio.Event) -> None:
        """Tick, checkpoint and refresh until `stop`; then a last tick and checkpoint."""
        tuning = self.tuning
        last_checkpoint = last_refresh = time.monotonic()
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), tuning.tick_interval)
                await self.tick()
                now = time.monotonic()
                if now - last_refresh >= tuning.refresh_interval:
                    last_refresh = now
                    self.reload_if_changed()
                    await self.refresh_context()
                if now - last_checkpoint >= tuning.checkpoint_interval:
                    last_checkpoint = now
                    await self.save()
        finally:
            await self.save()

    async def tick(self) -> None:
        """Tick the engine at the clock's now and publish what the passing time revealed."""
        async with self._step:
            now = self.clock()
            self.engine.tick(now)
            if self.journal is not None:
                await self._journal(Entry(now, tick=True, findings=self.engine.take()))
            elif self.engine.pending:
                await self.publish(self.engine.take())

    async def resolve(self, device_id: str, rule: str) -> bool:
        """A person resolved a latched finding (fall, SOS); its clearing finding is published."""
        async with self._step:
            now = self.clock()
            resolved = self.engine.resolve(device_id, rule, now)
            if self.journal is not None:
                entry = Entry(now, resolve=(device_id, rule), findings=self.engine.take())
                await self._journal(entry)
            elif self.engine.pending:
                await self.publish(self.engine.take())
        return resolved

    # -- registry and rules file ------------------------------------------------------

    async def refresh_context(self) -> None:
        """Re-read the registry's device context; on failure the last one stays."""
        if self.database is None:
            return
        try:
            profiles = await load_registry_profiles(self.database)
        except Exception:
            log.exception("could not read device context from the registry; keeping the last")
            return
        if profiles == self._profiles:
            return  # the usual case: nothing to rebuild, no device to wake
        self._profiles = profiles
        self.engine.set_contexts(build_contexts(profiles, self.rules))

    def reload_if_changed(self) -> bool:
        """Re-read the rules file when it changed; a bad file is reported and the old rules stay."""
        mtime = _mtime(self.rules_file)
        if mtime == self._rules_mtime:
            return False
        self._rules_mtime = mtime
        try:
            rules = load_rules(self.rules_file)
        except RulesError as exc:
            log.error("%s\nkeeping the rules in force", exc)
            return False
        self.apply_rules(rules)
        log.info("rules reloaded from %s", self.rules_file)
        return True

    def apply_rules(self, rules: RuleSet) -> None:
        """Put `rules` in force; every subject keeps its state."""
        self.rules = rules
        self.engine.set_rules(rules, build_contexts(self._profiles, rules))
        self.reloads += 1

    # -- checkpoints ---------------------------------------------------------------------

    async def save(self) -> None:
        """Checkpoint between two steps of the engine (what the running service does).

        Only the snapshot holds the engine; the write and fsync (a 100 MB file at 100,000
        bands) happen in a thread while readings flow.
        """
        async with self._step:
            data, lsn = self.engine.snapshot(self.journal_lsn), self.journal_lsn
        await asyncio.to_thread(self._write, data)
        self._saved(lsn)

    def checkpoint(self) -> None:
        """Write the engine state atomically: a crash mid-write leaves the previous one.

        Call it between steps (holding `_step`): the state must be exactly the journal's
        up to `journal_lsn`, which the checkpoint records.
        """
        self._write(self.engine.snapshot(self.journal_lsn))
        self._saved(self.journal_lsn)

    def _write(self, data: bytes) -> None:
        path = self.checkpoint_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)

    def _saved(self, lsn: int) -> None:
        self.checkpoints += 1
        if self.journal is not None:
            # Entries up to here are in the checkpoint: the rules need them no more.
            self.journal.mark("rules", lsn)

    def restore(self) -> bool:
        """Take the checkpoint's state, if there is one, and replay the journal after it."""
        restored = self._restore_checkpoint()
        if self.journal is not None:
            self.journal.mark("rules", self.journal_lsn)
            self._replay()
        return restored

    def _replay(self) -> None:
        """Judge again what was journaled after the checkpoint: the state a crash lost."""
        assert self.journal is not None
        entries = 0
        try:
            for lsn, payload in self.journal.read_from(self.journal_lsn + 1):
                entry = decode_entry(payload)
                self._replay_at = entry.at
                replay(self.engine, entry)
                self.journal_lsn = lsn
                entries += 1
        finally:
            self._replay_at = None
        if not entries:
            return
        # As at any restore, the time we were down is not the devices' silence.
        self.engine.restore(self.engine.snapshot(self.journal_lsn))
        self.replayed += entries
        log.info("rules: replayed %d journal entries after the checkpoint", entries)

    def _restore_checkpoint(self) -> bool:
        path = self.checkpoint_path
        if not path.exists():
            return False
        try:
            data = path.read_bytes()
            checkpoint = decode_checkpoint(data)
            # With a journal the state resumes where it was saved: the replay brings it
            # up to the crash, then the downtime is set aside.
            self._replay_at = checkpoint.saved_ms if self.journal is not None else None
            self.engine.restore(data)
            self.journal_lsn = checkpoint.journal_lsn
        except Exception as exc:
            # Starting blank loses sustained clocks but never blocks ingest; keep the file.
            bad = path.with_suffix(".bad")
            path.replace(bad)
            log.error(
                "the rules checkpoint %s is unreadable (%s); kept as %s, starting fresh",
                path,
                exc,
                bad,
            )
            return False
        finally:
            self._replay_at = None
        engine = self.engine
        log.info(
            "rules state restored: %d wristbands, %d bins, %d buildings, %d baselines",
            len(engine.wristbands),
            len(engine.bins),
            len(engine.buildings),
            len(engine.baselines),
        )
        return True

    # -- metrics ----------------------------------------------------------------------------

    def render_prometheus(self) -> str:
        """The engine's counters in the Prometheus text format (`carewatch_rules_*`)."""
        stats = self.engine.stats
        devices = len(self.engine.wristbands) + len(self.engine.bins)
        return render_prometheus(
            "carewatch_rules_",
            [
                Metric("readings_total", "counter", "Readings judged.", stats.readings),
                Metric(
                    "late_total",
                    "counter",
                    "Readings older than the lateness tolerance.",
                    stats.late,
                ),
                Metric("duplicates_total", "counter", "Repeated events dropped.", stats.duplicates),
                Metric(
                    "inhibited_total",
                    "counter",
                    "Readings whose vitals were not judged.",
                    stats.inhibited,
                ),
                Metric(
                    "sink_errors_total",
                    "counter",
                    "Failed attempts to hand findings on.",
                    self.sink_errors,
                ),
                Metric("devices", "gauge", "Devices with rule state in this worker.", devices),
                Metric(
                    "findings_total",
                    "counter",
                    "Findings produced, by rule.",
                    label="rule",
                    by_label=stats.by_rule,
                ),
            ],
        )


def _mtime(path: Path | None) -> float | None:
    if path is None:
        return None
    try:
        return path.stat().st_mtime
    except OSError:
        return None
