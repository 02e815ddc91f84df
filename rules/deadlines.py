"""When each device next needs the clock: a tick visits those, not the whole fleet.

Silence, `offline` after its grace, `not_worn` and `inactivity` are the rules only time
reveals. Each device has at most one deadline: the earliest moment one of them could
open. The hot path never touches it. A reading that arrives only moves the truth later
(silence counts from the newest message, inactivity from the newest step), so a deadline
that passes early is checked, found not yet due, and set again from the device's state.
What can bring a deadline *earlier* (a device first seen, a finding cleared, the band
taken off, a status change, the first step count, new limits) wakes the device: it is
visited at the next tick, as every device used to be, and its deadline set again.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

# Stale entries (a deadline replaced by another) stay in the heap until popped; past this
# many per live one, the heap is rebuilt.
_STALE_FACTOR = 2


class Deadlines:
    """One deadline per device (ms, clock time), and the devices woken since the last tick."""

    __slots__ = ("_at", "_heap", "woken")

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._at: dict[str, int] = {}  # the live deadline of each device in the heap
        self.woken: dict[str, None] = {}  # a dict: visited in the order woken, as replay needs

    def __len__(self) -> int:
        return len(self._at)

    def wake(self, device_id: str) -> None:
        """Visit `device_id` at the next tick, whatever its deadline."""
        self.woken[device_id] = None

    def wake_all(self, device_ids: Iterable[str]) -> None:
        """Visit all of these at the next tick (a restore, new rules)."""
        self.woken.update(dict.fromkeys(device_ids))

    def set(self, device_id: str, at: int | None) -> None:
        """The device's next deadline is `at`; None: none until it is woken."""
        if at is None:
            self._at.pop(device_id, None)  # its heap entry, if any, is now stale
            return
        if self._at.get(device_id) == at:
            return
        self._at[device_id] = at
        heap = self._heap
        heapq.heappush(heap, (at, device_id))
        if len(heap) > _STALE_FACTOR * len(self._at) + 1024:
            self._heap = [(t, d) for d, t in self._at.items()]
            heapq.heapify(self._heap)

    def take(self, now: int) -> list[str]:
        """The devices to visit at `now`: those woken and those whose deadline has come."""
        due = self.woken
        self.woken = {}
        heap = self._heap
        at = self._at
        while heap and heap[0][0] <= now:
            t, device_id = heapq.heappop(heap)
            if at.get(device_id) == t:
                del at[device_id]
                due[device_id] = None
        return list(due)

    def clear(self) -> None:
        """Forget every deadline (before a restore)."""
        self._heap.clear()
        self._at.clear()
        self.woken.clear()
