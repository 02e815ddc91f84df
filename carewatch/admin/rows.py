"""Importing a parsed file row by row, and the report: on screen and in FILE.errors.csv."""

from __future__ import annotations

import argparse
import csv
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.exc import SQLAlchemyError

from carewatch.admin.common import EXIT_OK, EXIT_SKIPPED, EXIT_UNUSABLE, Refused, say
from carewatch.admin.places import Places, Skip
from devices.exceptions import ImportFileError
from devices.importer import DeviceRow, Parsed, ResidentRow, RowError

__all__ = ["Run", "each_row", "parse_file", "report"]

_SHOWN_ERRORS: Final = 50  # the rest are in FILE.errors.csv

RowT = TypeVar("RowT", ResidentRow, DeviceRow)


@dataclass(slots=True)
class Run:
    """What an import did, row by row."""

    imported: int = 0
    unchanged: list[int] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


def parse_file(read: Callable[[], Parsed[RowT]]) -> Parsed[RowT]:
    """The parsed file; Refused (exit 2) when it is unusable or has no rows."""
    try:
        parsed = read()
    except ImportFileError as exc:
        raise Refused(exc.message, exc.message_en, EXIT_UNUSABLE) from None
    if parsed.total == 0:
        raise Refused(
            "文件只有表头，没有数据行", "the file has a header but no rows", EXIT_UNUSABLE
        )
    return parsed


async def each_row(
    rows: Sequence[RowT],
    parsed: Parsed[RowT],
    label: str,
    handle: Callable[[RowT], Awaitable[bool]],
) -> Run:
    """Import rows one by one (`handle` says True: imported, False: already there)."""
    run = Run(errors=list(parsed.errors))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    progress = Progress(*columns, TimeElapsedColumn(), console=Console(stderr=True))
    with progress:
        task = progress.add_task(label, total=len(rows))
        for row in rows:
            try:
                if await handle(row):
                    run.imported += 1
                else:
                    run.unchanged.append(row.row)
            except Skip as skip:
                column = parsed.headers.get(skip.key, skip.key)
                run.errors.append(
                    RowError(row.row, column, skip.value, skip.message, skip.message_en)
                )
            except SQLAlchemyError as exc:
                detail = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
                run.errors.append(
                    RowError(
                        row.row, "", "", f"数据库拒绝了这一行：{detail}", f"database: {detail}"
                    )
                )
            progress.advance(task)
    run.errors.sort(key=lambda e: e.row)
    return run


def report(
    args: argparse.Namespace,
    parsed: Parsed[RowT],
    run: Run,
    places: Places,
    what: str,
    extra: list[str],
) -> int:
    """Print what the import did and write the errors file; the exit code."""
    _show_errors(parsed, run)
    errors_path = args.file.with_suffix(".errors.csv")
    _write_errors(errors_path, run.errors)
    skipped = len({e.row for e in run.errors})
    dry = "试运行，数据库未改动 / dry run, nothing written: " if args.dry_run else ""
    say(f"{dry}{what} ← {args.file}")
    say(f"  {'可导入 would import' if args.dry_run else '已导入 imported'}: {run.imported}")
    if run.unchanged:
        rows = ", ".join(map(str, run.unchanged[:20])) + (" …" if len(run.unchanged) > 20 else "")
        say(f"  已登记、未改动 already registered, unchanged: {len(run.unchanged)} (rows {rows})")
    if skipped:
        say(f"  跳过 skipped: {skipped} → {errors_path}")
    _show_created(places, dry_run=args.dry_run)
    if parsed.ignored_columns:
        say(f"  忽略的列 columns ignored: {', '.join(parsed.ignored_columns)}")
    for line in extra:
        say(line)
    return EXIT_SKIPPED if run.errors else EXIT_OK


def _show_errors(parsed: Parsed[RowT], run: Run) -> None:
    keys = {written: key for key, written in parsed.headers.items()}
    for error in run.errors[:_SHOWN_ERRORS]:
        column = error.column
        if column in keys and keys[column] != column:
            column = f"{column} ({keys[column]})"
        where = f"第 {error.row} 行 row {error.row}" + (f" · {column}" if column else "")
        value = f" {error.value!r}" if error.value else ""
        say(f"{where}{value}: {error.message} / {error.message_en}")
    if len(run.errors) > _SHOWN_ERRORS:
        say(f"…… 还有 {len(run.errors) - _SHOWN_ERRORS} 条 / and more")


def _write_errors(path: Path, errors: list[RowError]) -> None:
    if not errors:
        path.unlink(missing_ok=True)  # an old report would mislead
        return
    with path.open("w", encoding="utf-8-sig", newline="") as f:  # BOM: Excel reads UTF-8
        writer = csv.writer(f)
        writer.writerow(["row", "column", "value", "error_zh", "error_en"])
        for e in errors:
            writer.writerow([e.row, e.column, e.value, e.message, e.message_en])


def _show_created(places: Places, *, dry_run: bool) -> None:
    made = "将新建 would create" if dry_run else "新建 created"
    for key, zh, en in (
        ("community", "社区", "communities"),
        ("grid", "网格", "grids"),
        ("building", "楼栋", "buildings"),
    ):
        if names := places.created[key]:
            more = f" …（共 {len(names)} / {len(names)} in all）" if len(names) > 10 else ""
            say(f"  {made} {zh} {en}: {'、'.join(names[:10])}{more}")
