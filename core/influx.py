"""InfluxDB over its v1-compatible HTTP API: `/write` (line protocol) and `/query` (InfluxQL).

InfluxDB 1.x, 2.4+ (a bucket served as a database of its name) and 3.x all
serve these, so this one client reaches whatever InfluxDB an operator runs.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import httpx

from core.exceptions import InfluxWriteError

log = logging.getLogger(__name__)

# Statuses that say "not now" rather than "never": try again, spool meanwhile.
_RETRYABLE: Final = frozenset({401, 403, 404, 408, 413, 429})


class InfluxClient:
    """Writes and queries one database; `token` is a 2.x/3.x token or `user:password` for 1.x."""

    def __init__(
        self, url: str, database: str, token: str | None = None, *, timeout: float = 10.0
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        headers: dict[str, str] = {}
        self._auth: tuple[str, str] | None = None
        if token:
            user, sep, password = token.partition(":")
            if sep and not token.startswith("Token "):
                self._auth = (user, password)
            else:
                headers["Authorization"] = f"Token {token.removeprefix('Token ')}"
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            auth=self._auth,
            timeout=timeout,
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def ping(self) -> bool:
        try:
            response = await self._http.get("/ping")
        except httpx.HTTPError:
            return False
        return response.status_code < 300

    async def ensure_database(self) -> None:
        """Create the database on 1.x; on 2.x/3.x the bucket must exist and this is harmless."""
        try:
            response = await self._http.post(
                "/query", data={"q": f'CREATE DATABASE "{self.database}"'}
            )
        except httpx.HTTPError as exc:
            log.warning("InfluxDB at %s not reachable yet: %s", self.url, exc)
            return
        if response.status_code >= 300:
            log.info(
                "CREATE DATABASE %s answered %d (normal on InfluxDB 2.x/3.x): %s",
                self.database,
                response.status_code,
                response.text[:200],
            )

    async def write(self, body: bytes) -> None:
        """Write line protocol (ms precision); raise InfluxWriteError saying if a retry can help."""
        try:
            response = await self._http.post(
                "/write",
                params={"db": self.database, "precision": "ms"},
                content=body,
                headers={"Content-Type": "text/plain; charset=utf-8"},
            )
        except httpx.HTTPError as exc:
            msg = f"InfluxDB at {self.url} unreachable: {type(exc).__name__}: {exc}"
            raise InfluxWriteError(msg, retryable=True) from exc
        status = response.status_code
        if status < 300:
            return
        text = response.text[:500]
        if status == 404 and "database not found" in text:
            await self.ensure_database()
        retryable = status >= 500 or status in _RETRYABLE
        msg = f"InfluxDB refused a write with {status}: {text}"
        raise InfluxWriteError(msg, retryable=retryable, status=status)

    async def query(self, influxql: str) -> list[dict[str, Any]]:
        """Run InfluxQL; return the series of the first statement (empty when none)."""
        response = await self._http.post(
            "/query", data={"db": self.database, "q": influxql, "epoch": "ms"}
        )
        response.raise_for_status()
        results = response.json().get("results", [])
        if not results:
            return []
        first = results[0]
        if "error" in first:
            msg = f"InfluxQL error: {first['error']} in {influxql!r}"
            raise ValueError(msg)
        series: list[dict[str, Any]] = first.get("series", [])
        return series
