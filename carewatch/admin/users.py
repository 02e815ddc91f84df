"""`carewatch admin create-user`: the first admin, supervisors and grid workers, without a login."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import re
import sys
from typing import Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from carewatch.admin.common import EXIT_OK, Refused, say
from carewatch.migrations import migrate
from core.db import Database
from core.phones import normalise_phone
from core.secrets import hash_password
from devices.access import Role
from devices.tables import Community, Grid, User

__all__ = ["MIN_PASSWORD_LENGTH", "create_user"]

MIN_PASSWORD_LENGTH: Final = 8
_USERNAME: Final = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


def create_user(args: argparse.Namespace, url: str) -> int:
    """Check the options, ask for the password, then store the user."""
    username: str = args.username.strip()
    if not _USERNAME.fullmatch(username):
        raise Refused(
            "用户名只能由 1 到 64 个英文字母、数字或 _ . @ - 组成",
            "a username is 1 to 64 of A-Z a-z 0-9 _ . @ -",
        )
    role = Role(args.role)
    if role is Role.SUPERVISOR and not args.community:
        raise Refused("主管必须用 --community 指定社区", "a supervisor needs --community")
    if args.grid and not args.community:
        raise Refused("--grid 需要同时给出 --community", "--grid needs --community")
    if args.grid and role is not Role.GRID_WORKER:
        raise Refused("只有网格员属于网格（--grid）", "only a grid worker serves grids (--grid)")
    phone = normalise_phone(args.phone) if args.phone else None
    if args.phone and phone is None:
        raise Refused(f"电话号码无效：{args.phone}", f"not a phone number: {args.phone}")
    password = _read_password(args.password_stdin)
    return asyncio.run(_store_user(url, args, username, role, phone, password))


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        try:
            password = getpass.getpass("密码 / password: ")
            again = getpass.getpass("再输一次 / again: ")
        except EOFError:
            raise Refused(
                "没有终端可以输入密码：请用 --password-stdin",
                "no terminal to type a password on: use --password-stdin",
            ) from None
        if password != again:
            raise Refused("两次输入的密码不一致", "the two passwords differ")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Refused(
            f"密码太短：至少 {MIN_PASSWORD_LENGTH} 个字符",
            f"password too short: at least {MIN_PASSWORD_LENGTH} characters",
        )
    return password


async def _community(session: AsyncSession, name: str | None) -> Community | None:
    if not name:
        return None
    community = await session.scalar(select(Community).where(Community.name == name))
    if community is None:
        known = (await session.scalars(select(Community.name))).all()
        raise Refused(
            f"没有叫“{name}”的社区（现有：{'、'.join(known) or '无'}）",
            f"no community {name!r} (known: {', '.join(known) or 'none'}); import residents first",
        )
    return community


async def _grids(
    session: AsyncSession, community: Community | None, names: list[str]
) -> list[Grid]:
    grids = []
    for name in dict.fromkeys(names):
        assert community is not None
        grid = await session.scalar(
            select(Grid).where(Grid.community_id == community.id, Grid.name == name)
        )
        if grid is None:
            raise Refused(
                f"社区“{community.name}”没有网格“{name}”",
                f"community {community.name!r} has no grid {name!r}",
            )
        grids.append(grid)
    return grids


async def _store_user(
    url: str,
    args: argparse.Namespace,
    username: str,
    role: Role,
    phone: str | None,
    password: str,
) -> int:
    database = Database(url)
    try:
        await migrate(database)
        async with database.sessions() as session:
            if await session.scalar(select(User.id).where(User.username == username)):
                raise Refused(f"用户名 {username} 已存在", f"user {username!r} exists")
            community = await _community(session, args.community)
            grids = await _grids(session, community, args.grid)
            user = User(
                username=username,
                full_name=(args.full_name or username).strip(),
                phone=phone,
                role=role.value,
                community_id=community.id if community else None,
                password_hash=hash_password(password),
                is_active=True,
            )
            session.add(user)
            await session.flush()
            for grid in grids:
                grid.workers.append(user)
            try:
                await session.commit()
            except IntegrityError:
                raise Refused(f"用户名 {username} 已存在", f"user {username!r} exists") from None
            say(f"已创建用户 / created {role.value} {username!r} (id {user.id})")
            if role is Role.GRID_WORKER and not grids:
                say("提示：此网格员还没有网格，看不到任何居民 / note: no grids yet, sees nothing")
    finally:
        await database.dispose()
    return EXIT_OK
