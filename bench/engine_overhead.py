"""Engine overhead: accepted records per second through the whole pipeline (planning, flows,
validators, exact + near-duplicate gates, sink) with an instant teacher that returns canned
valid JSON, so only the engine's own work is timed.

    python bench/engine_overhead.py [--num 2000] [--skill mcq] [--profile]

Prints records/s and ms per record, and the ratio of the engine's cost per record to the real
teacher's (from bench/RESULTS.md's measured ~1 record/min on the 135M teacher, 2 cores). With
--profile, the top functions by cumulative time (cProfile) — what to optimise first.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import json
import os
import platform
import re
import pstats
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from engine.config import RunConfig  # noqa: E402
from engine.progress import Progress  # noqa: E402
from engine.run import run  # noqa: E402
from models import Completion  # noqa: E402

WORDS = ("river delta glacier harbour orchard comet granite lantern meadow engine copper canyon "
         "falcon quarry beacon pepper marble violin thunder saddle walnut ember tunnel").split()


class InstantTeacher:
    """Answers every schema at once with distinct, valid text (no I/O, no sleeping)."""

    model_name = "instant"
    slots = 8

    def __init__(self) -> None:
        self.n = itertools.count()

    async def chat(self, messages, *, schema=None, max_tokens=256, temperature=0.7, seed=None):
        n = next(self.n)
        props = (schema or {}).get("properties", {})
        words = " ".join(WORDS[(n * 7 + i) % len(WORDS)] for i in range(6))
        prompt = messages[-1].content
        source = prompt.split('"""')[1] if prompt.count('"""') >= 2 else prompt
        seen = [w for w in re.findall(r"[A-Za-z]{5,}", source)] or list(WORDS)
        if "options" in props:
            neg = "NOT " if "EXCEPT" in prompt.split("\n", 1)[0] else ""
            value = {"question": f"Which statement is {neg}true about the {words} number {n}?",
                     "options": [f"{seen[(n + 3 * i) % len(seen)]} {seen[(n + 3 * i + 1) % len(seen)]}"
                                 f" {i}" for i in range(4)],
                     "correct": 1}
        elif "choice" in props:
            value = {"reasoning": "The source states it directly.", "choice": 1}
        elif "suggestions" in props:
            value = {"suggestions": ["Make the options more plausible."]}
        elif "text" in props:
            value = {"text": messages[-1].content[-400:]}
        else:
            value = {k: words for k in props}
        text = json.dumps(value)
        return Completion(text=text, finish_reason="stop", prompt_tokens=300,
                          completion_tokens=len(text) // 4, model="instant")

    async def aclose(self) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--num", type=int, default=2000)
    ap.add_argument("--skill", default="mcq")
    ap.add_argument("--corpus", default=str(Path(__file__).resolve().parents[1] / "examples" / "docs"))
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--sort", default="cumulative", help="cProfile sort key (cumulative, tottime)")
    args = ap.parse_args()

    teacher = InstantTeacher()

    @asynccontextmanager
    async def opener(settings, say):
        yield teacher

    with tempfile.TemporaryDirectory() as tmp:
        cfg = RunConfig.model_validate({
            "skill": args.skill, "input": args.corpus, "out": Path(tmp) / "out", "num": args.num,
            "max_attempts": args.num * 3, "max_type_share": 0, "near_dup_threshold": 0.99,
            "flow": {"refine_rounds": 1, "round_trip_k": 0}})
        # warm-up: index build and model load are one-off costs, not per record
        asyncio.run(run(cfg.model_copy(update={"num": 5, "out": Path(tmp) / "warm"}),
                        Progress(quiet=True), opener))
        profiler = cProfile.Profile() if args.profile else None
        start = time.perf_counter()
        if profiler:
            profiler.enable()
        summary = asyncio.run(run(cfg, Progress(quiet=True), opener))
        if profiler:
            profiler.disable()
        elapsed = time.perf_counter() - start
    accepted = summary["this_run"]["accepted"]
    per_record_ms = elapsed / max(1, accepted) * 1000
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"python {platform.python_version()}")
    print(f"skill {args.skill}: {accepted} accepted, {summary['this_run']['rejected']} rejected "
          f"in {elapsed:.1f}s (incl. card + plots)")
    for reason, n in list(summary["this_run"]["rejected_by_reason"].items())[:3]:
        print(f"  rejected {n} × {reason}")
    print(f"engine overhead: {accepted / elapsed:.0f} records/s, {per_record_ms:.2f} ms/record")
    print(f"ratio vs a real 135M teacher at ~1 accepted record/min: engine cost is "
          f"{per_record_ms / 60000:.5f}× the teacher's per record")
    if profiler:
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(25)


if __name__ == "__main__":
    main()
