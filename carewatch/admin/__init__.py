"""`carewatch admin`: the registry's schema, its first users, and bulk imports from spreadsheets.

Run on the server by whoever holds the database, without a login; see docs/registry.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from sqlalchemy.exc import SQLAlchemyError

from carewatch.admin.arguments import add_arguments
from carewatch.admin.common import ADMIN_SCOPE, EXIT_UNUSABLE, Refused, safe_url, say
from carewatch.admin.credentials import dynsec
from carewatch.admin.database import migrate_registry
from carewatch.admin.devices import import_devices
from carewatch.admin.residents import import_residents
from carewatch.admin.users import MIN_PASSWORD_LENGTH, create_user
from core.settings import Settings
from devices.broker.provisioning import BrokerProvisioner

__all__ = ["ADMIN_SCOPE", "MIN_PASSWORD_LENGTH", "add_arguments", "main"]


def main(
    args: argparse.Namespace,
    settings: Settings,
    *,
    provisioner: BrokerProvisioner | None = None,
) -> int:
    """Run one admin action; returns the exit code."""
    command = args.admin_command
    # Alembic's INFO lines mean nothing to someone importing a spreadsheet; `migrate`
    # keeps those that name the revisions applied.
    quiet = "alembic.runtime.plugins" if command == "migrate" else "alembic"
    logging.getLogger(quiet).setLevel(logging.WARNING)
    url = settings.database_url_resolved
    try:
        return _run(command, args, settings, url, provisioner)
    except Refused as exc:
        say(f"carewatch admin: {exc.message} / {exc.message_en}", sys.stderr)
        return exc.code
    except SQLAlchemyError as exc:
        say(f"carewatch admin: 数据库出错 / database error ({safe_url(url)}): {exc}", sys.stderr)
        return EXIT_UNUSABLE
    except OSError as exc:
        say(f"carewatch admin: 文件出错 / file error: {exc}", sys.stderr)
        return EXIT_UNUSABLE


def _run(
    command: str,
    args: argparse.Namespace,
    settings: Settings,
    url: str,
    provisioner: BrokerProvisioner | None,
) -> int:
    if command == "migrate":
        return asyncio.run(migrate_registry(url))
    if command == "create-user":
        return create_user(args, url)
    if command == "import-residents":
        return asyncio.run(import_residents(args, url))
    if command == "import-devices":
        broker_url = args.broker_admin_url or settings.mqtt_admin_url
        if provisioner is None and broker_url:
            provisioner = dynsec(broker_url)
        return asyncio.run(import_devices(args, url, provisioner))
    msg = f"unknown admin action {command!r}"
    raise ValueError(msg)
