"""The asyncio scheduler: a planner, item workers and one sink, joined by bounded queues.

Workers outnumber the teacher's slots (each item is a chain of calls with CPU work between them),
so every slot stays busy; the teacher's own semaphore caps calls in flight. The sink is a single
task, which makes check-then-add in the dedup gate atomic without locks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from agents.flow import FlowContext, Skill
from agents.items import RECORD_SCHEMA_VERSION, Candidate, Rejected, Rejection, Record, Usage
from agents.items import WorkItem
from engine.gate import DedupGate
from engine.sink import JsonlWriter
from models import TeacherError, TeacherUnavailable

log = logging.getLogger(__name__)

_DONE = object()  # a worker's last word on the result queue


@dataclass
class RunStats:
    accepted: int = 0
    rejected: int = 0
    attempts: int = 0
    reasons: Counter = field(default_factory=Counter)
    subcategories: Counter = field(default_factory=Counter)
    usage: Usage = field(default_factory=Usage)
    wasted_completion_tokens: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


@dataclass
class Sinks:
    data: JsonlWriter
    rejected: JsonlWriter
    gate: DedupGate
    done_ids: set[str]
    already_accepted: int


async def run_pipeline(
    skill: Skill,
    ctx: FlowContext,
    items: Iterable[WorkItem],
    sinks: Sinks,
    *,
    num: int,
    max_attempts: int,
    on_progress: Callable[[RunStats], None] = lambda s: None,
) -> RunStats:
    stats = RunStats()
    target = num - sinks.already_accepted
    if target <= 0:
        return stats
    workers = max(2, ctx.teacher.slots * 2)
    work: asyncio.Queue = asyncio.Queue(maxsize=workers)
    results: asyncio.Queue = asyncio.Queue(maxsize=workers * 2)

    async def plan() -> None:
        for item in items:
            if item.id in sinks.done_ids:
                continue  # written by an earlier run: resume skips it
            if stats.attempts >= max_attempts:
                break
            stats.attempts += 1
            await work.put(item)
        for _ in range(workers):
            await work.put(None)

    async def work_loop() -> None:
        while (item := await work.get()) is not None:
            await results.put(await _run_item(skill, ctx, item))
        await results.put(_DONE)

    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(plan())] + [tg.create_task(work_loop()) for _ in range(workers)]
            finished = 0
            while finished < workers and stats.accepted < target:
                result = await results.get()
                if result is _DONE:
                    finished += 1
                    continue
                await _sink(result, sinks, stats)
                on_progress(stats)
            for task in tasks:  # target reached: stop planning and abandon items in flight
                task.cancel()
    except BaseExceptionGroup as group:
        # the first failure explains the run's end (e.g. the teacher is down); others follow it
        raise _first(group) from group
    return stats


def _first(group: BaseExceptionGroup) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def rejection(item: WorkItem, stage: str, reason: str, detail: str = "", raw: str = "",
              usage: Usage | None = None) -> Rejection:
    return Rejection(id=item.id, skill=item.skill, subcategory=item.subcategory, stage=stage,
                     reason=reason, detail=detail, raw=raw[:4000], usage=usage or Usage(),
                     metadata={"transformation": item.transformation,
                               "seed_chunk_id": item.seed_chunk_id})


async def _run_item(skill: Skill, ctx: FlowContext, item: WorkItem) -> Candidate | Rejection:
    try:
        return await skill.run(ctx, item)
    except Rejected as exc:
        return rejection(item, exc.stage, exc.reason, exc.detail, exc.raw, exc.usage)
    except TeacherUnavailable:
        raise  # the run stops; everything written so far stays and resumes
    except TeacherError as exc:
        return rejection(item, "teacher", "request refused", str(exc)[:500])
    except Exception as exc:  # a bug on one odd item must not end a day-long run
        log.exception("item %s failed unexpectedly", item.id)
        return rejection(item, "error", type(exc).__name__, str(exc)[:500])


async def _sink(result: Candidate | Rejection, sinks: Sinks, stats: RunStats) -> None:
    if isinstance(result, Candidate):
        reason, vec, similarity = await sinks.gate.check(result.instruction)
        if reason is None:
            record = Record(
                id=result.item.id, skill=result.item.skill, subcategory=result.item.subcategory,
                messages=result.messages,
                metadata={"schema_version": RECORD_SCHEMA_VERSION, **result.metadata,
                          "nearest_accepted_cosine": round(similarity, 4),
                          "tokens": result.usage.model_dump()})
            sinks.data.write(record.model_dump(mode="json"))
            sinks.gate.commit(result.instruction, vec)
            sinks.done_ids.add(record.id)
            stats.accepted += 1
            stats.subcategories[record.subcategory] += 1
            stats.usage.merge(result.usage)
            return
        result = rejection(result.item, "dedup", reason, f"cosine {similarity:.3f}",
                           result.instruction, result.usage)
    sinks.rejected.write(result.model_dump(mode="json"))
    sinks.done_ids.add(result.id)
    stats.rejected += 1
    stats.reasons[f"{result.stage}: {result.reason}"] += 1
    stats.usage.merge(result.usage)
    stats.wasted_completion_tokens += result.usage.completion_tokens
