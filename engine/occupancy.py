"""How busy the teacher was: the share of wall time with every slot working.

The teacher's decode throughput is the run's ceiling only while all its slots are busy; this is
the engine's own account of that, the same for every backend (no server metrics needed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from models import ChatMessage, Completion, Teacher


class SlotMeter:
    """Wraps a Teacher and integrates its calls in flight over time. A call waiting for a slot
    counts as in flight: while any call waits, every slot is taken."""

    def __init__(self, teacher: Teacher, clock: Callable[[], float] = time.monotonic) -> None:
        self.teacher = teacher
        self.slots = teacher.slots
        self.model_name = teacher.model_name
        self._clock = clock
        self._in_flight = 0
        self._last: float | None = None  # from the first call on
        self.span_s = 0.0  # first call to now
        self.full_s = 0.0  # every slot busy
        self.slot_s = 0.0  # busy slot-seconds
        # first and last moment every slot was busy: the steady state between warm-up (the
        # pipeline filling) and the drain at the end
        self._first_full: float | None = None
        self._last_full = 0.0

    def __getattr__(self, name: str) -> Any:  # the backend's own counters (retried, ...)
        return getattr(self.teacher, name)

    def _tick(self, change: int) -> None:
        now = self._clock()
        if self._last is not None:
            dt = now - self._last
            busy = min(self._in_flight, self.slots)
            self.span_s += dt
            self.slot_s += busy * dt
            if busy == self.slots:
                self.full_s += dt
                if self._first_full is None:
                    self._first_full = self._last
                self._last_full = now
        self._last = now
        self._in_flight += change

    async def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> Completion:
        self._tick(+1)
        try:
            return await self.teacher.chat(messages, **kwargs)
        finally:
            self._tick(-1)

    async def aclose(self) -> None:
        await self.teacher.aclose()

    def report(self) -> dict[str, float]:
        """`all_slots_busy`: share of the time since the first call with every slot working;
        `mean_occupancy`: busy slots on average, as a share of all slots; `slots` as resolved
        (`--parallel auto` picks them when the teacher opens); `steady_all_slots_busy`: the same
        share between the first and the last moment every slot was busy (`steady_span_s`), i.e.
        after warm-up and before the drain at the end (0 when the slots were never all busy)."""
        span = max(self.span_s, 1e-9)
        steady = self._last_full - self._first_full if self._first_full is not None else 0.0
        return {"all_slots_busy": round(self.full_s / span, 3),
                "mean_occupancy": round(self.slot_s / (span * self.slots), 3),
                "span_s": round(self.span_s, 2), "slots": self.slots,
                "steady_all_slots_busy": round(self.full_s / steady, 3) if steady else 0.0,
                "steady_span_s": round(steady, 2)}
