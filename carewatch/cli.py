"""The `carewatch` command: run every part in one process, or one part each."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

from pydantic import ValidationError

from carewatch.logs import configure_logging
from carewatch.settings import Settings, load_settings

log = logging.getLogger("carewatch")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="carewatch",
        description="CareWatch: wristbands and smart bins for community elderly care.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", help="ingest and the HTTP API in one process (a small site)")
    sub.add_parser("ingest", help="only the MQTT -> InfluxDB ingester, with /metrics and /healthz")
    sub.add_parser("api", help="only the HTTP API")
    simulate = sub.add_parser("simulate", help="drive a simulated fleet of wristbands and bins")
    try:
        from simulators import cli as simulate_cli
    except ImportError:  # TEMP until simulators.cli lands
        pass
    else:
        simulate_cli.add_arguments(simulate)
    return parser


async def _serve(settings: Settings, *, ingest: bool, stop: asyncio.Event) -> None:
    import uvicorn

    from api.main import create_app
    from ingest.service import IngestService

    service = IngestService(settings) if ingest else None
    host, port = settings.http_host_port
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, service),
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    # uvicorn would install its own signal handlers; ours stop every part together.
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    tasks = [asyncio.create_task(server.serve(), name="http")]
    if service is not None:
        tasks.append(asyncio.create_task(service.run(stop), name="ingest"))
    log.info("listening on http://%s:%d (metrics at /metrics, health at /healthz)", host, port)
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    server.should_exit = True
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for task in done:
        if task is not stopper and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def _run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except (ValidationError, FileNotFoundError) as exc:
        print(f"carewatch: bad configuration:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "simulate":
        from simulators import cli as simulate_cli

        return simulate_cli.main(args, settings)
    ingest = args.command in ("run", "ingest")
    _run_until_signal(lambda stop: _serve(settings, ingest=ingest, stop=stop))
    return 0


if __name__ == "__main__":
    sys.exit(main())
