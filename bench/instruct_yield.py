"""The instruct step with and without the skill's demonstrations, on the real teacher.

    python bench/instruct_yield.py [--skill rag] [--items 80] [--seed 1]
                                   [--input ../shared/corpus] [--teacher-model GGUF] [--index DIR]

Plans --items RAG work items as the engine does (same seed → same chunks, types and anchors) and
runs each item's instruct step with the engine's own code (`Skill.instruct`: the written
question, its cheap checks and retrieval round trip, asked again up to `reply_retries` times)
twice: once as skill.toml has it, once with its `demonstrations` removed. Both sides run
interleaved on one managed llama-server (the engine's default teacher and sampler, 4 slots), so
load and cache affect them alike. Every item uses its seed passage as it is (no transformation
call: the instruct step is what differs). --skill names a skill built on TaskSkill (e.g.
reading_comprehension) to run its `write_task` instead, the task and its cheap checks. Prints
per side the questions that passed, completion tokens and tokens per passing question, the
reasons questions were asked again; then on / off.
The whole flow (answers, waste, accepted per minute): bench/before_after.py.

    python bench/instruct_yield.py --attempts 6 [--items 80] [--seed 1]

runs each item's instruct step once (demonstrations on) with up to 6 attempts and prints for
each attempt how many questions reached it and how many passed at it: the marginal yield of
asking a question again; and how many items kept a question of another type after their last
attempt missed the planned one (`retyped`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from agents.flow import FlowContext, FlowSettings, Trace  # noqa: E402
from agents.items import Rejected  # noqa: E402
from agents.rag.anchors import pick_anchor  # noqa: E402
from agents.registry import load_skill  # noqa: E402
from agents.task import Draft, TaskSkill  # noqa: E402
from models import TeacherSettings, open_teacher  # noqa: E402
from retrieval import CorpusIndex, Embedder  # noqa: E402


async def instruct(skill, ctx: FlowContext, item) -> tuple[bool, Trace]:
    """One item's instruct step as the skill's generate runs it, on the seed passage itself."""
    sub = skill.spec.subcategory(item.subcategory)
    seed = ctx.index.get(item.seed_chunk_id)
    trace = Trace()
    try:
        if isinstance(skill, TaskSkill):
            await skill.write_task(ctx, trace, Draft(item=item, sub=sub, chunk=seed,
                                                     passage=seed.text))
            return True, trace
        sources = [seed, *await skill.partners(ctx, seed, sub.passages - 1)]
        passages = [c.text for c in sources]
        anchor = pick_anchor(passages[0], ctx.index, item.seed, within=seed.text)
        await skill.instruct(ctx, trace, sub, passages, item.seed, anchor, source=seed)
        return True, trace
    except Rejected as exc:
        trace.usage.retry("ended", exc.reason)
        return False, trace


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skill", default="rag")
    ap.add_argument("--items", type=int, default=80)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--input", type=Path, default=ROOT.parent / "shared" / "corpus")
    ap.add_argument("--teacher-model", type=Path, help="GGUF (default: the embedded teacher)")
    ap.add_argument("--index", type=Path, help="index folder to build or reuse (default: a "
                    "temporary one)")
    ap.add_argument("--attempts", type=int, help="one side (demonstrations on) with up to this "
                    "many attempts per question; print the yield of each attempt")
    args = ap.parse_args()

    on = load_skill(args.skill)
    if on.spec.demonstrations is None and not args.attempts:  # --attempts runs one side
        raise SystemExit(f"the {args.skill} skill has no demonstrations to compare")
    off = load_skill(args.skill)
    off.spec = off.spec.model_copy(update={"demonstrations": None})
    with tempfile.TemporaryDirectory() as tmp:
        index = await asyncio.to_thread(CorpusIndex.build_or_load, args.input,
                                        args.index or Path(tmp) / "index", Embedder())
        items = []
        for item in on.plan(index.chunks, seed=args.seed, per_chunk=2):
            items.append(item)
            if len(items) == args.items:
                break
        async with open_teacher(TeacherSettings(model_path=args.teacher_model),
                                say=lambda m: None) as teacher:
            ctx = FlowContext(teacher=teacher, index=index, settings=FlowSettings(
                **({"reply_retries": args.attempts - 1} if args.attempts else {})))
            sides = {"on": on} if args.attempts else {"on": on, "off": off}
            # 2 × slots steps in flight, the two sides interleaved item by item
            limit = asyncio.Semaphore(8)

            async def run(name, item):
                async with limit:
                    return name, *await instruct(sides[name], ctx, item)

            started = time.perf_counter()
            done = await asyncio.gather(*(run(n, i) for i in items for n in sides))
            elapsed = time.perf_counter() - started

    print(f"machine: {os.cpu_count()} cores {platform.machine()}, Python "
          f"{platform.python_version()}, load {os.getloadavg()[0]:.1f}; {len(items)} {args.skill} "
          f"items, "
          f"seed {args.seed}, {elapsed:.0f} s" + (" for both sides" if len(sides) > 1 else ""))
    if args.attempts:
        print_attempts([(ok, t) for _, ok, t in done], args.attempts)
        return print("asked again / ended: " + reasons([t for _, _, t in done], 12))
    result = {}
    for name in sides:
        runs = [(ok, t) for n, ok, t in done if n == name]
        passed = sum(ok for ok, _ in runs)
        tokens = sum(t.usage.completion_tokens for _, t in runs)
        calls = sum(t.usage.calls for _, t in runs)
        result[name] = passed, tokens
        retyped = sum(ok and is_retyped(t) for ok, t in runs)
        print(f"{name:>4}: {passed}/{len(runs)} questions passed ({passed / len(runs):.0%}; "
              f"{retyped} of them retyped), {calls} calls, {tokens} completion tokens, "
              f"{tokens / max(1, passed):.0f} per passing question")
        print("      asked again / ended: " + reasons([t for _, t in runs], 8))
    (p_on, t_on), (p_off, t_off) = result["on"], result["off"]
    print(f"on / off: questions passed {p_on / max(1, p_off):.2f}x, completion tokens per passing "
          f"question {(t_on / max(1, p_on)) / max(1e-9, t_off / max(1, p_off)):.2f}x")


def reasons(traces: list[Trace], top: int) -> str:
    """The `top` reasons questions were asked again or ended for, with their counts."""
    why = Counter()
    for trace in traces:
        why.update(trace.usage.retried)
    return "; ".join(f"{k} ×{n}" for k, n in why.most_common(top))


def print_attempts(runs: list[tuple[bool, Trace]], attempts: int) -> None:
    """Per attempt k: the questions that reached it and those that passed at it (each attempt
    is one call; a question that passed did so at its last)."""
    reached, passed, retyped = Counter(), Counter(), 0
    for ok, trace in runs:
        calls = trace.usage.calls
        for k in range(1, calls + 1):
            reached[k] += 1
        if ok and is_retyped(trace):  # passed after its last attempt, as another type
            retyped += 1
            continue
        passed[calls] += ok
    tokens = sum(t.usage.completion_tokens for _, t in runs)
    calls = sum(t.usage.calls for _, t in runs)
    print(f"{'attempt':>8} {'reached':>8} {'passed':>7} {'share':>6}")
    for k in range(1, attempts + 1):
        print(f"{k:>8} {reached[k]:>8} {passed[k]:>7} {passed[k] / max(1, reached[k]):>6.0%}")
    print(f"{'retyped':>8} {'':>8} {retyped:>7}")
    total = sum(passed.values()) + retyped
    print(f"{'all':>8} {len(runs):>8} {total:>7} {total / max(1, len(runs)):>6.0%}; {calls} "
          f"calls, {tokens} completion tokens ({tokens / max(1, calls):.0f} per call)")


def is_retyped(trace: Trace) -> bool:
    """The item's question was kept as another type than planned (Skill.retyped)."""
    return any("retyped_from" in step for step in trace.steps)


if __name__ == "__main__":
    asyncio.run(main())
