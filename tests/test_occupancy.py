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


class Timeline:
    """Calls through a SlotMeter on a hand-driven clock: at time t, end some calls (in order),
    then start others."""

    def __init__(self):
        self.now = 0.0
        self.teacher = Held()
        self.meter = SlotMeter(self.teacher, clock=lambda: self.now)
        self.calls: dict[str, asyncio.Task] = {}

    async def at(self, t: float, *, start: tuple[str, ...] = (), end: tuple[str, ...] = ()):
        self.now = t
        for name in end:
            self.teacher.release[name].set()
            await self.calls.pop(name)
        for name in start:
            self.calls[name] = asyncio.create_task(
                self.meter.chat([ChatMessage(role="user", content=name)]))
        await asyncio.sleep(0)


def test_occupancy_integrates_calls_in_flight_over_time():
    line = Timeline()

    async def main():
        await line.at(0.0, start=("a",))
        await line.at(1.0, start=("b", "c"))  # 3 calls for 2 slots: one waits, both slots busy
        await line.at(3.0, end=("a",))
        await line.at(4.0, end=("c",))
        await line.at(6.0, end=("b",))

    asyncio.run(main())
    # 0-1: 1 slot; 1-4: 2 slots (3, then 2 in flight); 4-6: 1 slot
    meter = line.meter
    assert meter.report() == {"all_slots_busy": 0.5, "mean_occupancy": pytest.approx(0.75),
                              "span_s": 6.0, "slots": 2,
                              # warm-up (0-1) and the drain (4-6) left out: 1-4 all busy
                              "steady_all_slots_busy": 1.0, "steady_span_s": 3.0}
    assert meter.retried == 7 and meter.slots == 2  # the backend's counters stay readable


def test_steady_occupancy_counts_a_dip_between_warm_up_and_drain():
    line = Timeline()

    async def main():
        await line.at(0.0, start=("a",))
        await line.at(1.0, start=("b",))  # 1-2: both busy
        await line.at(2.0, end=("b",))    # 2-3: a dip to one slot
        await line.at(3.0, start=("c",))  # 3-5: both busy
        await line.at(5.0, end=("c",))    # 5-7: the drain
        await line.at(7.0, end=("a",))

    asyncio.run(main())
    report = line.meter.report()
    assert report["all_slots_busy"] == pytest.approx(3 / 7, abs=1e-3)
    assert report["steady_span_s"] == 4.0 and report["steady_all_slots_busy"] == 0.75
    idle = SlotMeter(Held(), clock=lambda: 0.0).report()
    assert idle["steady_all_slots_busy"] == 0.0 and idle["steady_span_s"] == 0.0
