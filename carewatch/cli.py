"""The `carewatch` command: run every part in one process, or one part each."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from pydantic import ValidationError

from carewatch.runtime import run_service
from core.logs import configure_logging
from core.settings import load_settings

log = logging.getLogger("carewatch")


def _parser() -> argparse.ArgumentParser:
    from carewatch import admin as admin_cli
    from simulators import cli as simulate_cli

    parser = argparse.ArgumentParser(
        prog="carewatch",
        description="CareWatch: wristbands and smart bins for community elderly care.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", help="ingest and the HTTP API in one process (a small site)")
    sub.add_parser("ingest", help="only the MQTT -> InfluxDB ingester, with /metrics and /healthz")
    sub.add_parser("api", help="only the HTTP API")
    sub.add_parser(
        "demo",
        help="the whole stack locally: Mosquitto, InfluxDB, the service and a simulated fleet",
    )
    simulate = sub.add_parser("simulate", help="drive a simulated fleet of wristbands and bins")
    simulate_cli.add_arguments(simulate)
    admin = sub.add_parser(
        "admin", help="the registry: migrate, create-user, import-residents, import-devices"
    )
    admin_cli.add_arguments(admin)
    rules = sub.add_parser(
        "rules", help="check a rules file (default: CAREWATCH_RULES__FILE) and show what it sets"
    )
    rules.add_argument("file", nargs="?", type=Path, help="a rules TOML file")
    return parser


def _check_rules(path: Path | None) -> int:
    from rules.config import load_rules
    from rules.exceptions import RulesError

    try:
        rules = load_rules(path)
    except RulesError as exc:
        print(exc, file=sys.stderr)
        return 1
    default = rules.default
    print(f"{rules.source}: valid; time zone {rules.timezone}, lateness {rules.lateness_ms} ms")
    for t in default.thresholds:
        op = (">=" if t.inclusive else ">") if t.high else ("<=" if t.inclusive else "<")
        print(
            f"  {t.name}: {t.field} {op} {t.limit:g} for {t.hold_ms // 1000} s, "
            f"clears at {t.clear_at:g} after {t.clear_ms // 1000} s ({t.severity})"
        )
    for grid in rules.grids:
        print(f"  grid {grid}: its own overrides")
    return 0


def _run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command `argv` names; the process's exit status."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except (ValidationError, FileNotFoundError) as exc:
        print(f"carewatch: bad configuration:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "rules":
        return _check_rules(args.file or settings.rules.file)
    if args.command == "simulate":
        from simulators import cli as simulate_cli

        return simulate_cli.main(args, settings)
    if args.command == "admin":
        from carewatch import admin as admin_cli

        return admin_cli.main(args, settings)
    if args.command == "demo":
        from carewatch.demo import run_demo

        _run_until_signal(lambda stop: run_demo(settings, stop))
        return 0
    ingest = args.command in ("run", "ingest")
    from alerts.exceptions import ChannelConfigError
    from rules.exceptions import RulesError

    try:
        _run_until_signal(lambda stop: run_service(settings, stop, ingest=ingest))
    except (RulesError, ChannelConfigError) as exc:
        print(f"carewatch: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
