"""`carewatch simulate`: arguments, and running a fleet or a load test with progress on stderr."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Final, TextIO

from core.durations import DurationError, parse_duration
from core.settings import MqttTarget, Settings
from simulators import scenarios
from simulators.exceptions import SimulatorError
from simulators.fleet import run_fleet
from simulators.load import DEFAULT_MESSAGES, run_load
from simulators.manifest import build_fleet, write_manifest
from simulators.models import (
    FleetConfig,
    FleetProgress,
    FleetReport,
    Incident,
    LoadReport,
    default_secret,
)

_SHUTDOWN_GRACE: Final = 20.0  # seconds a stopping fleet gets to say goodbye


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except DurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _positive_duration(text: str) -> float:
    seconds = _duration(text)
    if seconds <= 0:
        msg = f"duration {text!r} must be more than zero"
        raise argparse.ArgumentTypeError(msg)
    return seconds


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        msg = f"expected a whole number >= 0, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        msg = f"expected a fraction between 0 and 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _spec(text: str) -> Incident:
    try:
        return scenarios.parse_spec(text)
    except SimulatorError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options to a (sub)parser."""
    _fleet_arguments(parser)
    _incident_arguments(parser)
    _mqtt_arguments(parser)


def _fleet_arguments(parser: argparse.ArgumentParser) -> None:
    fleet = parser.add_argument_group("fleet")
    fleet.add_argument("--wristbands", type=_count, default=50, metavar="N")
    fleet.add_argument("--bins", type=_count, default=10, metavar="M")
    fleet.add_argument(
        "--interval", type=_positive_duration, default=10.0, metavar="DURATION",
        help="telemetry period of each device, e.g. 500ms, 10s, 2m (default 10s)",
    )  # fmt: skip
    fleet.add_argument("--seed", type=int, default=1, metavar="S", help="same seed, same data")
    fleet.add_argument(
        "--prefix",
        default="",
        metavar="STR",
        help="prepended to device ids, e.g. t1- gives t1-w0000",
    )
    fleet.add_argument(
        "--duration", type=_duration, default=None, metavar="DURATION",
        help="stop after this long (default: run until Ctrl-C)",
    )  # fmt: skip
    fleet.add_argument(
        "--sorting-error-rate", type=_rate, default=0.1, metavar="F",
        help="share of deposits whose detected category is not the bin's (default 0.1)",
    )  # fmt: skip
    fleet.add_argument(
        "--manifest", type=Path, default=None, metavar="PATH",
        help="write the fleet manifest CSV (device_id,kind,grid,building,category) here",
    )  # fmt: skip


def _incident_arguments(parser: argparse.ArgumentParser) -> None:
    incidents = parser.add_argument_group("scripted incidents")
    incidents.add_argument(
        "--scenario", type=_spec, action="append", default=[], metavar="SPEC",
        help="SCENARIO@DEVICE+START[-END], repeatable, e.g. fall@w0003+5m or "
        f"tachycardia@w0001+2m-10m; scenarios: {', '.join(s.value for s in scenarios.SCENARIOS)}",
    )  # fmt: skip
    incidents.add_argument(
        "--scenario-file", type=Path, default=None, metavar="PATH",
        help='TOML with specs = ["fall@w0003+5m"] and/or [[incident]] tables',
    )  # fmt: skip


def _mqtt_arguments(parser: argparse.ArgumentParser) -> None:
    mqtt = parser.add_argument_group("MQTT")
    mqtt.add_argument(
        "--secret", default=None, metavar="STR",
        help="derives each device's password (default: $CAREWATCH_DEVICE_SECRET, "
        "else carewatch-dev-secret)",
    )  # fmt: skip
    mqtt.add_argument(
        "--shared-account", action="store_true",
        help="publish through a few connections with the broker URL's username and password",
    )  # fmt: skip
    mqtt.add_argument(
        "--load", action="store_true",
        help="publish as fast as the broker acknowledges, then report the rate",
    )  # fmt: skip
    mqtt.add_argument(
        "--messages", type=_count, default=None, metavar="N",
        help=f"messages to publish in load mode (default {DEFAULT_MESSAGES} unless --duration)",
    )  # fmt: skip
    mqtt.add_argument(
        "--connections", type=_count, default=4, metavar="K",
        help="shared connections in --shared-account and --load modes (default 4)",
    )  # fmt: skip


def config_from_args(args: argparse.Namespace) -> FleetConfig:
    """The FleetConfig the parsed arguments describe (reads --scenario-file)."""
    incidents = list(args.scenario)
    if args.scenario_file is not None:
        incidents.extend(scenarios.load_file(args.scenario_file))
    return FleetConfig(
        wristbands=args.wristbands,
        bins=args.bins,
        interval=args.interval,
        seed=args.seed,
        prefix=args.prefix,
        secret=args.secret if args.secret is not None else default_secret(),
        incidents=tuple(incidents),
        sorting_error_rate=args.sorting_error_rate,
        duration=args.duration,
        shared_account=args.shared_account,
        connections=max(1, args.connections),
    )


def _print_progress(progress: FleetProgress, out: TextIO = sys.stderr) -> None:
    print(
        f"[{progress.elapsed:7.1f}s] published {progress.published} acked {progress.acked} "
        f"({progress.rate:,.0f}/s) connected {progress.connected}/{progress.devices}",
        file=out,
        flush=True,
    )


def _summary(report: FleetReport, out: TextIO = sys.stderr) -> None:
    seconds = max(0.001, (report.end_ms - report.start_ms) / 1000)
    dropped = sum(d.dropped for d in report.devices.values())
    connected = (
        f"{report.all_connected_after:.1f}s" if report.all_connected_after is not None else "never"
    )
    print(
        f"done: {len(report.devices)} devices, {seconds:.1f}s, generated {report.generated}, "
        f"published {report.published}, acked {report.acked} ({report.acked / seconds:,.1f}/s), "
        f"dropped {dropped}, all connected after {connected}",
        file=out,
    )
    for incident in report.incidents:
        print(f"  incident {incident.spec}", file=out)


def _load_summary(report: LoadReport, out: TextIO = sys.stderr) -> None:
    refused = f" ({report.refused} refused by the broker)" if report.refused else ""
    print(
        f"load: {report.published} published, {report.acked} acked{refused} in "
        f"{report.seconds:.2f}s over {report.connections} connections: "
        f"{report.publish_rate:,.0f} published/s, "
        f"{report.ack_rate:,.0f} acked/s, {report.reconnects} reconnects",
        file=out,
    )


async def _run(args: argparse.Namespace, config: FleetConfig, broker: MqttTarget) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    interrupts = 0

    def interrupt() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            print("stopping (Ctrl-C again to abort)...", file=sys.stderr, flush=True)
            stop.set()
        else:
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, interrupt)
    if args.load:
        report = await run_load(
            config, broker, messages=args.messages, duration=args.duration,
            stop=stop, progress=_print_progress,
        )  # fmt: skip
        _load_summary(report)
        return 0 if report.acked == report.published else 1
    fleet = asyncio.ensure_future(run_fleet(config, broker, stop=stop, progress=_print_progress))
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait([fleet, stopped], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    try:
        # Stopping clients disconnect cleanly; give them a bounded time to do so.
        fleet_report = await asyncio.wait_for(fleet, timeout=_SHUTDOWN_GRACE)
    except TimeoutError:
        print(f"clients did not stop within {_SHUTDOWN_GRACE:.0f}s; exiting", file=sys.stderr)
        return 1
    _summary(fleet_report)
    return 0


def main(args: argparse.Namespace, settings: Settings) -> int:
    """Run `carewatch simulate` with parsed arguments; returns the exit status."""
    try:
        config = config_from_args(args)
        devices = build_fleet(config)
        scenarios.resolve(config.incidents, devices)  # fail fast on unknown devices
        if args.manifest is not None:
            rows = write_manifest(args.manifest, devices)
            print(f"wrote {rows} devices to {args.manifest}", file=sys.stderr)
        return asyncio.run(_run(args, config, settings.mqtt))
    except SimulatorError as exc:
        print(f"carewatch simulate: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return 130
