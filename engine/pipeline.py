"""The asyncio scheduler: a planner, item workers and one sink, joined by bounded queues.

Workers outnumber the teacher's slots (each item is a chain of calls with CPU work between them),
so every slot stays busy; the teacher's own semaphore caps calls in flight. The sink is a single
task, which makes check-then-add in the dedup gate atomic without locks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from agents.flow import FlowContext, Skill
from agents.items import RECORD_SCHEMA_VERSION, Candidate, Rejected, Rejection, Record, Usage
from agents.items import WorkItem
from dedup.decontam import Decontaminator
from engine.formats import Format, FormatError, render
from engine.gate import DedupGate, rejection_stage
from engine.sink import JsonlWriter
from models import TeacherError, TeacherUnavailable

log = logging.getLogger(__name__)

_DONE = object()  # a worker's last word on the result queue
COLD_AFTER = 5  # rejections in a row, nothing accepted since: the subcategory is "cold"
COLD_MAX_GAP = 16  # a cold subcategory still plays at least one card in this many


@dataclass
class RunStats:
    accepted: int = 0
    rejected: int = 0
    attempts: int = 0
    reasons: Counter = field(default_factory=Counter)
    subcategories: Counter = field(default_factory=Counter)  # keyed (skill, subcategory)
    by_skill: Counter = field(default_factory=Counter)
    contaminated: Counter = field(default_factory=Counter)  # eval source → records rejected
    usage: Usage = field(default_factory=Usage)
    wasted_completion_tokens: int = 0
    waste_by_reason: Counter = field(default_factory=Counter)  # "stage: reason" → tokens
    waste_by_call: Counter = field(default_factory=Counter)  # calling stage → tokens
    teacher_retries: int = 0
    server_restarts: int = 0  # managed llama-server deaths survived
    occupancy: dict = field(default_factory=dict)  # engine/occupancy.py's report
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
    shares: Shares
    fmt: Format = "openai"
    decontam: Decontaminator | None = None


@dataclass
class Shares:
    """What each skill and subcategory may still take: per-skill quotas (--mix) and the
    diversity gate's per-subcategory caps (--max-type-share × the type's fair share), counted
    over data.jsonl (earlier runs included) plus what is in flight."""

    quota: dict[str, int]
    caps: dict[tuple[str, str], int] = field(default_factory=dict)
    by_skill: Counter = field(default_factory=Counter)
    by_type: Counter = field(default_factory=Counter)
    in_flight: Counter = field(default_factory=Counter)
    types: dict[str, list[str]] = field(default_factory=dict)  # skill -> its subcategories
    streak: Counter = field(default_factory=Counter)  # rejections in a row per subcategory
    last_attempt: Counter = field(default_factory=Counter)  # attempt number of its last item

    def settle(self, key: tuple[str, str], accepted: bool, stage: str) -> None:
        """Track each subcategory's run of failures (a quota rejection is not the type's fault)."""
        if accepted:
            self.streak[key] = 0
        elif stage != "quota":
            self.streak[key] += 1

    def cold(self, key: tuple[str, str], attempts: int) -> bool:
        """True while this subcategory must sit out. One that keeps failing (a type the teacher
        cannot do, seeds it cannot use) backs off exponentially while its skill has types that
        still work: after COLD_AFTER rejections in a row it waits for 2, then 4, 8, at most
        COLD_MAX_GAP other attempts between its own, so it cannot eat the attempt budget. When
        every type of the skill is cold (a weak teacher) none is held back; one acceptance warms
        a type up again."""
        over = self.streak[key] - COLD_AFTER
        if over < 0 or not self.warm_left(key[0]):
            return False
        return attempts - self.last_attempt[key] < min(2 << over, COLD_MAX_GAP)

    def warm_left(self, skill: str) -> bool:
        """Does `skill` still have a subcategory that is neither cold nor full?"""
        for sub in self.types.get(skill, ()):
            key = (skill, sub)
            cap = self.caps.get(key)
            if self.streak[key] < COLD_AFTER and (cap is None or self.by_type[key] < cap):
                return True
        return False

    def skill_open(self, skill: str) -> bool:
        return self.by_skill[skill] < self.quota[skill]

    def type_open(self, key: tuple[str, str]) -> bool:
        cap = self.caps.get(key)
        return cap is None or self.by_type[key] + self.in_flight[key] < cap

    def full(self, key: tuple[str, str]) -> str | None:
        if not self.skill_open(key[0]):
            return "skill quota reached"
        cap = self.caps.get(key)
        if cap is not None and self.by_type[key] >= cap:
            return f"subcategory share reached ({cap} records)"
        return None

    @property
    def done(self) -> bool:
        return not any(self.skill_open(n) for n in self.quota)


def type_caps(quota: dict[str, int], taxonomies: dict[str, list[tuple[str, float]]],
              max_share: float) -> dict[tuple[str, str], int]:
    """At most `max_share` × its fair (weighted) share per subcategory; 0 turns the gate off."""
    if not max_share:
        return {}
    caps = {}
    for skill, subs in taxonomies.items():
        total = sum(w for _, w in subs)
        for sub, w in subs:
            caps[skill, sub] = max(1, math.ceil(max_share * quota[skill] * w / total))
    return caps


def quotas(num: int, weights: dict[str, float]) -> dict[str, int]:
    """Split `num` records over skills by weight (largest remainder, so they sum to `num`)."""
    total = sum(weights.values())
    exact = {k: num * w / total for k, w in weights.items()}
    out = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: (out[k] - exact[k], k))[: num - sum(out.values())]:
        out[k] += 1
    return out


def interleave(plans: dict[str, Iterator[WorkItem]], quota: dict[str, int],
               open_: Callable[[str], bool]) -> Iterator[WorkItem]:
    """Smooth weighted round robin over the skills' plans (deterministic), skipping skills whose
    quota is filled (`open_(name)` false) or whose plan has ended."""
    credit = dict.fromkeys(plans, 0.0)
    live = dict(plans)
    while live:
        names = [n for n in live if quota[n] > 0 and open_(n)]
        if not names:
            return
        total = sum(quota[n] for n in names)
        for n in names:
            credit[n] += quota[n]
        pick = max(names, key=lambda n: (credit[n], n))
        credit[pick] -= total
        item = next(live[pick], None)
        if item is None:
            del live[pick]
            continue
        yield item


async def run_pipeline(
    skills: dict[str, Skill],
    ctx: FlowContext,
    plans: dict[str, Iterator[WorkItem]],
    sinks: Sinks,
    *,
    shares: Shares,
    max_attempts: int,
    on_progress: Callable[[RunStats], None] = lambda s: None,
) -> RunStats:
    stats = RunStats()
    if shares.done:
        return stats
    ctx.novelty = sinks.gate.precheck  # the flows reject known duplicates before answering
    workers = max(2, ctx.teacher.slots * 2)
    work: asyncio.Queue = asyncio.Queue(maxsize=workers)
    results: asyncio.Queue = asyncio.Queue(maxsize=workers * 2)
    freed = asyncio.Event()  # set whenever a result comes back (a capped type may reopen)
    patience = 4 * sum(len(s.spec.taxonomy) for s in skills.values())

    async def plan() -> None:
        skipped = 0
        for item in interleave(plans, shares.quota, shares.skill_open):
            if item.id in sinks.done_ids:
                continue  # written by an earlier run: resume skips it
            key = (item.skill, item.subcategory)
            cold = shares.cold(key, stats.attempts)
            if not shares.type_open(key) or (cold and (skipped < patience or +shares.in_flight)):
                skipped += 1
                if skipped >= patience and +shares.in_flight:
                    # every warm type is at its cap: wait for results rather than feed cold ones
                    freed.clear()
                    await freed.wait()
                    skipped = 0
                continue  # (nothing in flight and only cold cards left: the next one plays)
            skipped = 0
            if stats.attempts >= max_attempts:
                break
            stats.attempts += 1
            shares.last_attempt[key] = stats.attempts
            shares.in_flight[key] += 1
            await work.put(item)
        for _ in range(workers):
            await work.put(None)

    async def work_loop() -> None:
        while (item := await work.get()) is not None:
            await results.put(await _run_item(skills[item.skill], ctx, item))
        await results.put(_DONE)

    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(plan())] + [tg.create_task(work_loop()) for _ in range(workers)]
            finished = 0
            while finished < workers and not shares.done:
                # take every result that is ready: their instructions are embedded in one batch
                batch = [await results.get()]
                while not results.empty():
                    batch.append(results.get_nowait())
                await sinks.gate.prepare([r.instruction for r in batch if isinstance(r, Candidate)])
                for result in batch:
                    if result is _DONE:
                        finished += 1
                    elif not shares.done:
                        await _settle(result, sinks, shares, stats)
                        freed.set()
                        on_progress(stats)
            for task in tasks:  # target reached: stop planning and abandon items in flight
                task.cancel()
    except BaseExceptionGroup as group:
        # the first failure explains the run's end (e.g. the teacher is down); others follow it
        raise _first(group) from group
    finally:
        await ctx.aclose()
    return stats


async def _settle(result: Candidate | Rejection, sinks: Sinks, shares: Shares,
                  stats: RunStats) -> None:
    """One finished item: through the share check and the gates into its file."""
    planned = (result.item.skill, result.item.subcategory) \
        if isinstance(result, Candidate) else (result.skill, result.subcategory)
    shares.in_flight[planned] -= 1
    key = planned
    if isinstance(result, Candidate):
        key = (planned[0], result.subcategory or planned[1])  # a retyped question's own type
        if full := shares.full(key):
            # in flight when its share filled up: accounted for, not kept
            result = rejection(result.item, "quota", full, usage=result.usage)
    before = stats.accepted
    await _sink(result, sinks, stats)
    accepted = stats.accepted > before
    # a retyped record is its planned type's failure (the teacher could not write that type)
    shares.settle(planned, accepted and key == planned,
                  "" if isinstance(result, Candidate) else result.stage)
    if accepted and key != planned:
        shares.settle(key, True, "")


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
        result = await _accept(result, sinks, stats)
        if result is None:
            return
    sinks.rejected.write(result.model_dump(mode="json"))
    sinks.done_ids.add(result.id)
    stats.rejected += 1
    why = f"{result.stage}: {result.reason}"
    stats.reasons[why] += 1
    stats.usage.merge(result.usage)
    stats.wasted_completion_tokens += result.usage.completion_tokens
    stats.waste_by_reason[why] += result.usage.completion_tokens
    stats.waste_by_call.update(result.usage.by_stage)


async def _accept(candidate: Candidate, sinks: Sinks, stats: RunStats) -> Rejection | None:
    """Write the candidate if it passes the dedup gate and fits the format; else say why not."""
    item = candidate.item
    reason, vec, similarity = await sinks.gate.check(candidate.instruction)
    if reason is not None:
        return rejection(item, rejection_stage(reason), reason, f"cosine {similarity:.3f}",
                         candidate.instruction, candidate.usage)
    if sinks.decontam is not None:
        prompt = "\n".join(m.content for m in candidate.messages if m.role == "user")
        if hit := sinks.decontam.check(prompt, vec):
            stats.contaminated[hit.source] += 1
            return rejection(item, "decontaminate", f"overlaps an eval item in {hit.source}",
                             hit.how, candidate.instruction, candidate.usage)
    record = Record(id=item.id, skill=item.skill,
                    subcategory=candidate.subcategory or item.subcategory,
                    messages=candidate.messages,
                    metadata={"schema_version": RECORD_SCHEMA_VERSION, **candidate.metadata,
                              "nearest_accepted_cosine": round(similarity, 4),
                              "tokens": candidate.usage.model_dump()})
    try:
        row = render(record, sinks.fmt)
    except FormatError as exc:
        return rejection(item, "format", "does not fit the output format", str(exc),
                         candidate.instruction, candidate.usage)
    sinks.data.write(row)
    await sinks.gate.acommit(candidate.instruction, vec)
    sinks.done_ids.add(record.id)
    stats.accepted += 1
    stats.by_skill[record.skill] += 1
    stats.subcategories[record.skill, record.subcategory] += 1
    sinks.shares.by_skill[record.skill] += 1
    sinks.shares.by_type[record.skill, record.subcategory] += 1
    stats.usage.merge(candidate.usage)
    return None
