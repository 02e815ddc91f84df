"""A real HTTP server that receives apprise `json://` notifications, for delivery tests."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.servers import HOST
from tests.support.waiting import wait_until


@dataclass(frozen=True)
class Post:
    """One POST as the receiver got it; `at` is this machine's wall clock on arrival."""

    path: str
    title: str
    message: str
    at: float
    status: int

    @property
    def ok(self) -> bool:
        return self.status == 200


class NotificationReceiver:
    """A real HTTP server on 127.0.0.1 for apprise's `json://`: records every POST.

    Paths starting with one of `failing` get HTTP 500. Use as a context manager.
    """

    def __init__(self) -> None:
        self.failing: tuple[str, ...] = ()
        self.posts: list[Post] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                at = time.time()
                status = 500 if self.path.startswith(receiver.failing) else 200
                with receiver.lock:
                    receiver.posts.append(
                        Post(self.path, body.get("title", ""), body.get("message", ""), at, status)
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]

    def start(self) -> NotificationReceiver:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> NotificationReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, path: str) -> str:
        return f"json://{HOST}:{self.port}{path}"

    def to(self, path: str, *, ok_only: bool = True) -> list[Post]:
        with self.lock:
            return [p for p in self.posts if p.path == path and (p.ok or not ok_only)]

    def first(self, path: str) -> float | None:
        """When the first delivered POST to `path` arrived, if one did."""
        posts = self.to(path)
        return posts[0].at if posts else None

    def total(self) -> int:
        with self.lock:
            return len(self.posts)

    def wait_for(self, *paths: str, timeout: float) -> dict[str, Post]:
        """The first delivered POST to each path, waiting up to `timeout` s for all of them."""
        wait_until(
            lambda: all(self.to(p) for p in paths), timeout, f"messages to {paths}", step=0.02
        )
        return {p: self.to(p)[0] for p in paths}
