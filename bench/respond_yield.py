"""The RAG answer step with and without the demonstrations' answers, on the real teacher.

    python bench/respond_yield.py [--items 80] [--seed 1] [--input ../shared/corpus]
                                  [--teacher-model GGUF] [--index DIR]

Plans --items RAG work items as the engine does, writes each one's question once with the
engine's own instruct step (bench/instruct_yield.py's, demonstrations on), then answers every
question that passed twice with the engine's own `RagSkill.answer` (the teacher's reply, its
validators, asked again `answer_retries` times): once as skill.toml has it, once with the
demonstrations' answers removed. Both sides use the same retrieved documents and seeds and run
interleaved on one managed llama-server (the engine's default teacher and sampler, 4 slots), so
load and the prompt cache affect them alike. Prints per side the answers accepted, completion
and evaluated prompt tokens per accepted answer, why answers were rejected; then on / off.
The whole flow (accepted records per minute, waste): bench/before_after.py.

    python bench/respond_yield.py --attempts 4 [--items 80] [--seed 1]

answers each question once, with up to 4 attempts (`answer_retries` 3), and prints for each
attempt how many answers reached it, how many it got accepted, its completion tokens and its
evaluated prompt tokens (what the prompt cache did not serve): the marginal yield of asking
again, to set against a new item's tokens per accepted record. Then, per reason an attempt was
rejected for, how many of the answers rejected for it were accepted at a later attempt: a reason
after which asking again never pays would end its item at once.

    python bench/respond_yield.py --documents 3 [--items 80] [--seed 1]

answers every question twice with the demonstrations on: once with the engine's
`retrieval_k` documents in the prompt, once with 3 (the question's own passages always among
them); the same split as above, then k / default: what a shorter answer prompt saves in
evaluated prompt tokens, against what it does to the answers accepted.

    python bench/respond_yield.py --sampling dry_allowed_length=3 [--items 80] [--seed 1]

answers every question twice with the demonstrations on: once with the engine's sampler
settings, once with them updated by the given ones (`--sampling`'s syntax), on the same server;
then changed / engine, and per side the answers that loop (a validator's reason with "repeat").

    python bench/respond_yield.py --answer-temperature 0.7 [--items 80] [--seed 1]

the same, with the first attempt's temperature (FlowSettings.answer_temperature) changed
instead. In both modes the changed side's answer is asked right after the engine side's, with
the same documents: the server's prompt cache serves it most of its prompt, so compare the
answers and completion tokens, not the evaluated prompt tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import copy
import os
import platform
import random
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
from models import TeacherSettings, open_teacher  # noqa: E402
from models.sampling import parse_sampling  # noqa: E402
from retrieval import CorpusIndex, Embedder  # noqa: E402


async def question(skill, ctx: FlowContext, item) -> tuple[str, str, list] | None:
    """The item's question as Skill.generate writes it from the seed passage itself (no
    transformation, no refinement: the answer step is what differs), with its type and
    sources."""
    sub = skill.spec.subcategory(item.subcategory)
    seed = ctx.index.get(item.seed_chunk_id)
    sources = [seed, *await skill.partners(ctx, seed, sub.passages - 1)]
    passages = [c.text for c in sources]
    anchor = pick_anchor(passages[0], ctx.index, item.seed, within=seed.text)
    try:
        asked, sub = await skill.instruct(ctx, Trace(), sub, passages, item.seed, anchor,
                                          source=seed)
        return asked, sub.name, sources
    except Rejected:
        return None


async def answer(skill, ctx: FlowContext, item, asked: str, type_: str, sources: list
                 ) -> tuple[bool, Trace, list[Judged]]:
    sub = skill.spec.subcategory(type_)
    documents = await skill.retrieve(ctx, asked, sources, random.Random(item.seed))
    user_turn = skill.render("user_turn.j2", documents=documents, question=asked)
    trace, judged = Trace(), []
    JUDGED.set((trace, judged))
    try:
        await skill.answer(ctx, trace, sub, asked, user_turn, documents, item.seed)
        return True, trace, judged
    except Rejected as exc:
        trace.usage.retry("ended", exc.reason)
        return False, trace, judged


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=80)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--input", type=Path, default=ROOT.parent / "shared" / "corpus")
    ap.add_argument("--teacher-model", type=Path, help="GGUF (default: the embedded teacher)")
    ap.add_argument("--index", type=Path, help="index folder to build or reuse (default: a "
                    "temporary one)")
    ap.add_argument("--attempts", type=int, help="answer each question once (demonstrations "
                    "on) with up to this many attempts and print the yield of each attempt")
    ap.add_argument("--documents", type=int, help="compare the engine's retrieval_k documents "
                    "per answer prompt with this many (demonstrations on both sides)")
    ap.add_argument("--sampling", type=parse_sampling, help="compare the engine's sampler "
                    "settings with them updated by these (KEY=NUMBER,...), demonstrations on")
    ap.add_argument("--answer-temperature", type=float, help="compare the engine's first-attempt "
                    "answer temperature with this one, demonstrations on")
    args = ap.parse_args()
    changes = (args.attempts, args.documents, args.sampling, args.answer_temperature is not None)
    if sum(map(bool, changes)) > 1:
        raise SystemExit("--attempts, --documents, --sampling and --answer-temperature are "
                         "separate comparisons: give one")

    on = load_skill("rag")
    record_attempts(on)
    demo = on.spec.demonstrations
    if demo is None or all(s.answer is None for s in demo.questions.values()):
        raise SystemExit("the rag skill shows no answers to compare")
    off = load_skill("rag")
    off.spec = off.spec.model_copy(update={"demonstrations": demo.model_copy(update={
        "questions": {n: s.model_copy(update={"answer": None})
                      for n, s in demo.questions.items()}})})
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
                **({"answer_retries": args.attempts - 1} if args.attempts else {})))
            clients = []  # second clients of the same server, closed with it
            if args.attempts:
                sides = {"on": (on, ctx)}
            elif args.documents:
                fewer = FlowContext(teacher=teacher, index=index,
                                    settings=FlowSettings(retrieval_k=args.documents))
                sides = {f"k={ctx.settings.retrieval_k}": (on, ctx),
                         f"k={args.documents}": (on, fewer)}
            elif args.sampling:
                # a second client on the same server and session limit, other sampler settings
                changed = copy.copy(teacher)
                changed.sampling = {**teacher.sampling, **args.sampling}
                clients.append(changed)
                sides = {"engine": (on, ctx), "changed": (on, FlowContext(
                    teacher=changed, index=index, settings=ctx.settings))}
                print("changed sampler: " + ", ".join(f"{k}={v}" for k, v in
                                                      changed.sampling.items()))
            elif args.answer_temperature is not None:
                sides = {"engine": (on, ctx), "changed": (on, FlowContext(
                    teacher=teacher, index=index, settings=ctx.settings.model_copy(
                        update={"answer_temperature": args.answer_temperature})))}
                print(f"answer temperature {on.answer_temperature(ctx)} → "
                      f"{args.answer_temperature}")
            else:
                sides = {"on": (on, ctx), "off": (off, ctx)}
            limit = asyncio.Semaphore(8)  # 2 × slots steps in flight

            async def ask(item):
                async with limit:
                    return item, await question(on, ctx, item)

            started = time.perf_counter()
            asked = [(i, q) for i, q in await asyncio.gather(*map(ask, items)) if q]

            async def run(name, item, q):
                async with limit:
                    return name, *await answer(*sides[name], item, *q)

            answering = time.perf_counter()
            done = await asyncio.gather(*(run(n, i, q) for i, q in asked for n in sides))
            elapsed = time.perf_counter() - answering
            for client in clients:
                await client.aclose()

    print(f"machine: {os.cpu_count()} cores {platform.machine()}, Python "
          f"{platform.python_version()}, load {os.getloadavg()[0]:.1f}; {len(items)} RAG items, "
          f"seed {args.seed}: {len(asked)} questions passed ({answering - started:.0f} s), "
          f"answered on both sides in {elapsed:.0f} s")
    if args.attempts:
        return print_attempts([run[1:] for run in done], args.attempts)
    result = {}
    for name in sides:
        runs = [(ok, t) for n, ok, t, _ in done if n == name]
        passed = sum(ok for ok, _ in runs)
        tokens = sum(t.usage.completion_tokens for _, t in runs)
        evaluated = sum(t.usage.evaluated_prompt_tokens for _, t in runs)
        calls = sum(t.usage.calls for _, t in runs)
        why = Counter()
        for _, t in runs:
            why.update(t.usage.retried)
        result[name] = passed, tokens, evaluated
        loops = sum(n for k, n in why.items() if "repeat" in k or "repetition" in k)
        print(f"{name:>4}: {passed}/{len(runs)} answers accepted ({passed / max(1, len(runs)):.0%}), "
              f"{calls} calls, {tokens} completion tokens ({tokens / max(1, passed):.0f} per "
              f"accepted answer), {evaluated} evaluated prompt tokens "
              f"({evaluated / max(1, passed):.0f} per accepted answer)"
              + (f", {loops} answers that repeat themselves" if changes[2] or changes[3] else ""))
        print("      asked again / ended: " + "; ".join(
            f"{k} ×{n}" for k, n in why.most_common(8)))
    # the ratio of the change to what it is set against: demonstrations on / off (the engine
    # shows them), fewer documents / the engine's retrieval_k
    base, change = result if any(changes[1:]) else reversed(result)
    (p_b, t_b, e_b), (p_c, t_c, e_c) = result[base], result[change]
    per = lambda x, p: x / max(1, p)  # noqa: E731
    print(f"{change} / {base}: answers accepted {p_c / max(1, p_b):.2f}x, completion tokens per "
          f"accepted answer {per(t_c, p_c) / max(1e-9, per(t_b, p_b)):.2f}x, evaluated prompt "
          f"tokens per accepted answer {per(e_c, p_c) / max(1e-9, per(e_b, p_b)):.2f}x")


# the current item's trace, and each judged attempt of its answer: (respond completion tokens
# so far, respond evaluated prompt tokens so far, the validator's problem or None)
Judged = tuple[int, int, "str | None"]
JUDGED: contextvars.ContextVar[tuple[Trace, list[Judged]]] = contextvars.ContextVar("judged")


def record_attempts(skill) -> None:
    """Wraps the skill's judge so that each answer attempt is recorded with the respond
    tokens spent up to it (the trace counts tokens per stage, not per attempt)."""
    judge = skill.judge

    async def judged(ctx, sub, question, reply, documents):
        verdict = await judge(ctx, sub, question, reply, documents)
        trace, attempts = JUDGED.get()
        attempts.append((trace.usage.by_stage.get("respond", 0),
                         trace.usage.evaluated_by_stage.get("respond", 0), verdict.problem))
        return verdict

    skill.judge = judged


def print_attempts(runs: list[tuple[bool, Trace, list[Judged]]], attempts: int) -> None:
    """Per attempt k: the answers that reached it, those accepted at it, its completion and
    evaluated prompt tokens; then per rejection reason, how often a later attempt rescued it."""
    reached, accepted, tokens, evaluated = Counter(), Counter(), Counter(), Counter()
    failed, rescued = Counter(), Counter()  # by reason
    for _, _, judged in runs:
        spent = seen = 0
        for k, (total, evals, problem) in enumerate(judged, 1):
            reached[k] += 1
            tokens[k] += total - spent
            evaluated[k] += evals - seen
            spent, seen = total, evals
            accepted[k] += problem is None
        # every attempt but the last was rejected and followed by another
        for _, _, problem in judged[:-1]:
            failed[problem] += 1
            rescued[problem] += judged[-1][2] is None
    print(f"{'attempt':>8} {'reached':>8} {'accepted':>9} {'share':>6} {'tokens':>7} "
          f"{'tokens/accepted':>16} {'evaluated':>10} {'evaluated/reached':>18}")
    for k in range(1, attempts + 1):
        print(f"{k:>8} {reached[k]:>8} {accepted[k]:>9} {accepted[k] / max(1, reached[k]):>6.0%} "
              f"{tokens[k]:>7} {tokens[k] / max(1, accepted[k]):>16.0f} {evaluated[k]:>10} "
              f"{evaluated[k] / max(1, reached[k]):>18.0f}")
    print(f"{'all':>8} {len(runs):>8} {sum(accepted.values()):>9} "
          f"{sum(accepted.values()) / max(1, len(runs)):>6.0%} {sum(tokens.values()):>7}")
    print("rejected at an attempt before the last, then accepted at a later one (by reason):")
    for problem, n in failed.most_common():
        print(f"  {rescued[problem]:>3} of {n:>3} ({rescued[problem] / n:>4.0%})  {problem}")


if __name__ == "__main__":
    asyncio.run(main())
