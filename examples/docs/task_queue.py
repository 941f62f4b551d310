"""A small priority task queue.

Lower priority numbers run first; equal priorities run in the order they were
added (first in, first out). Pending tasks can be cancelled by name.

    queue = TaskQueue()
    queue.push("report", lambda: "sent", priority=2)
    queue.push("backup", lambda: "done", priority=1)
    queue.run_all()  # -> ['done', 'sent']
"""

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(order=True)
class _Entry:
    # Ordered by (priority, sequence); the sequence number breaks ties so
    # equal priorities stay first-in, first-out.
    priority: int
    sequence: int
    name: str = field(compare=False)
    action: Callable[[], Any] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class TaskQueue:
    """Priority queue of named tasks on a binary heap (heapq).

    push and pop are O(log n); cancel is O(1): entries are only marked, then
    skipped when they reach the top of the heap.
    """

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._by_name: dict[str, _Entry] = {}
        self._counter = itertools.count()

    def push(self, name: str, action: Callable[[], Any], priority: int = 0) -> None:
        """Add a task. Raises ValueError if a pending task has this name."""
        if name in self._by_name:
            raise ValueError(f"task {name!r} is already queued")
        entry = _Entry(priority, next(self._counter), name, action)
        self._by_name[name] = entry
        heapq.heappush(self._heap, entry)

    def cancel(self, name: str) -> bool:
        """Cancel a pending task. Returns False if no such task is queued."""
        entry = self._by_name.pop(name, None)
        if entry is None:
            return False
        entry.cancelled = True  # popped later by _drop_cancelled
        return True

    def _drop_cancelled(self) -> None:
        while self._heap and self._heap[0].cancelled:
            heapq.heappop(self._heap)

    def peek(self) -> str | None:
        """Name of the task that would run next, or None if empty."""
        self._drop_cancelled()
        return self._heap[0].name if self._heap else None

    def pop(self) -> tuple[str, Callable[[], Any]]:
        """Remove and return the next (name, action). Raises IndexError if empty."""
        self._drop_cancelled()
        if not self._heap:
            raise IndexError("pop from an empty TaskQueue")
        entry = heapq.heappop(self._heap)
        del self._by_name[entry.name]
        return entry.name, entry.action

    def run_all(self) -> list[Any]:
        """Run all pending tasks in priority order; return their results."""
        results = []
        while len(self):
            _, action = self.pop()
            results.append(action())
        return results

    def __len__(self) -> int:
        # Cancelled entries may linger in the heap; only pending tasks count.
        return len(self._by_name)

