"""Failed logins, counted per username and per client address: a guessing run is slowed down.

In memory, per process: a restart forgets, and several API processes each count their
own (docs/registry.md, "Logging in"). Bounded: past `max_keys` the oldest keys go.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class LoginThrottle:
    """At most `per_user` failures a username and `per_address` an address in `window` s."""

    def __init__(
        self,
        *,
        per_user: int = 5,
        per_address: int = 50,
        window: float = 300.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = {"user": per_user, "address": per_address}
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    def retry_after(self, username: str, address: str) -> int:
        """Seconds to wait before trying again; 0: go ahead."""
        now = self.clock()
        wait = 0.0
        for key in (("user", username.casefold()), ("address", address)):
            failures = self._recent(key, now)
            if failures is not None and len(failures) >= self.limits[key[0]]:
                wait = max(wait, failures[0] + self.window - now)
        return math.ceil(wait)

    def failed(self, username: str, address: str) -> None:
        now = self.clock()
        for key in (("user", username.casefold()), ("address", address)):
            failures = self._failures.pop(key, None) or deque()
            failures.append(now)
            self._failures[key] = failures  # to the end: the most recently used
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def succeeded(self, username: str) -> None:
        """The right password: that username's failures are forgiven (not its address's)."""
        self._failures.pop(("user", username.casefold()), None)

    def _recent(self, key: tuple[str, str], now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures
