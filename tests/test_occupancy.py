"""The engine's account of teacher slot occupancy, on a hand-driven clock."""

import asyncio

import pytest

from engine.occupancy import SlotMeter
from models import ChatMessage


class Held:
    """A teacher whose calls end when the test says so."""

    model_name, slots, retried = "held", 2, 7

    def __init__(self):
        self.release: dict[str, asyncio.Event] = {}

    async def chat(self, messages, **kw):
        name = messages[-1].content
        self.release[name] = asyncio.Event()
        await self.release[name].wait()
        return name

    async def aclose(self):
        pass


def test_occupancy_integrates_calls_in_flight_over_time():
    now = [0.0]
    teacher = Held()
    meter = SlotMeter(teacher, clock=lambda: now[0])

    async def main():
        call = lambda name: asyncio.create_task(  # noqa: E731
            meter.chat([ChatMessage(role="user", content=name)]))
        a = call("a")
        await asyncio.sleep(0)
        now[0] = 1.0
        b, c = call("b"), call("c")  # 3 calls for 2 slots: one waits, both slots busy
        await asyncio.sleep(0)
        now[0] = 3.0
        teacher.release["a"].set()
        await a
        now[0] = 4.0
        teacher.release["c"].set()
        await c
        now[0] = 6.0
        teacher.release["b"].set()
        await b

    asyncio.run(main())
    # 0-1: 1 slot; 1-4: 2 slots (3, then 2 in flight); 4-6: 1 slot
    assert meter.report() == {"all_slots_busy": 0.5, "mean_occupancy": pytest.approx(0.75),
                              "span_s": 6.0, "slots": 2}
    assert meter.retried == 7 and meter.slots == 2  # the backend's counters stay readable
