"""Engine overhead: accepted records per second through the whole pipeline (planning, flows,
validators, exact + near-duplicate gates, sink) with an instant teacher that returns canned
valid JSON, so only the engine's own work is timed.

    python bench/engine_overhead.py [--num 2000] [--skill mcq]
                                    [--embedder minilm|torch|hash|both|all] [--profile]

Prints records/s and ms per record for the whole run and for its pipeline alone (planning to
the last write: what grows with the records; the rest is one-off per run: opening the corpus
index, the teacher file's hash, the dataset card and plots), and the ratio of the engine's
cost per record to the real teacher's (from bench/RESULTS.md's measured ~1 record/min on the
135M teacher, 2 cores). With --profile, the top functions by cumulative time (cProfile) — what
to optimise first.

`--embedder torch` runs the same model on PyTorch's forward instead of ONNX Runtime's (the
event loop's Python holds the GIL that PyTorch's worker thread needs after every op).
`--embedder hash` swaps all-MiniLM for a hashing embedder (bag of word hashes, projected to 384
dimensions; no model), which separates the engine's own cost per record from the embedding
model's: every record embeds at least its instruction (dedup), and MiniLM on 2 CPU cores costs
milliseconds per text, so it alone bounds the records/s. `both` runs the two and prints the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
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

import numpy as np  # noqa: E402

import engine.run  # noqa: E402
from engine.config import RunConfig  # noqa: E402
from engine.progress import Progress  # noqa: E402
from engine.run import run  # noqa: E402
from models import Completion  # noqa: E402

WORDS = ("river delta glacier harbour orchard comet granite lantern meadow engine copper canyon "
         "falcon quarry beacon pepper marble violin thunder saddle walnut ember tunnel").split()


@functools.lru_cache(maxsize=256)
def source_words(prompt: str) -> tuple[list[str], bool]:
    """The words of the prompt's quoted source, and whether its task asks for an EXCEPT/NOT
    question; the items of one chunk share their prompts' source, so it is read once: the fake
    teacher's own cost is not the engine's."""
    source = prompt.split('"""')[1] if prompt.count('"""') >= 2 else prompt
    task = next((line for line in prompt.splitlines() if line.startswith("Write ONE")), "")
    return re.findall(r"[A-Za-z]{5,}", source) or list(WORDS), "EXCEPT" in task


class InstantTeacher:
    """Answers every schema at once with distinct, valid text (no I/O, no sleeping)."""

    model_name = "instant"
    slots = 8

    def __init__(self) -> None:
        self.n = itertools.count()

    async def chat(self, messages, *, schema=None, max_tokens=256, temperature=0.7, seed=None,
                   stop=()):
        n = next(self.n)
        props = (schema or {}).get("properties", {})
        words = " ".join(WORDS[(n * 7 + i) % len(WORDS)] for i in range(6))
        prompt = messages[-1].content
        if "options" in props:
            seen, negative = source_words(prompt)
            neg = "NOT " if negative else ""
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


class HashEmbedder:
    """Words hashed into 384 buckets with random signs, L2-normalized: texts sharing words are
    close, like a bag-of-words model. No model, so the engine's own work is what is timed."""

    dim = 384
    name = "hash-384"

    def __init__(self, *_args, **_kwargs) -> None:
        pass

    def encode(self, texts, batch_size: int = 64):
        return np.stack([self._row(text) for text in texts]) if texts else \
            np.zeros((0, self.dim), dtype=np.float32)

    @staticmethod
    @functools.lru_cache(maxsize=4096)  # as the real Embedder remembers recent texts
    def _row(text: str) -> np.ndarray:
        row = np.zeros(HashEmbedder.dim, dtype=np.float32)
        for word in re.findall(r"\w+", text.lower()):
            h = hash(word)
            row[h % HashEmbedder.dim] += 1.0 if h & 1024 else -1.0
        norm = np.linalg.norm(row)
        return row / norm if norm else row

    async def aencode(self, texts):
        return self.encode(texts)


def measure(args, opener) -> tuple[dict, float]:
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
            pstats.Stats(profiler).sort_stats(args.sort).print_stats(25)
        return summary, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--num", type=int, default=2000)
    ap.add_argument("--skill", default="mcq")
    ap.add_argument("--corpus", default=str(Path(__file__).resolve().parents[1] / "examples" / "docs"))
    ap.add_argument("--embedder", choices=["minilm", "torch", "hash", "both", "all"],
                    default="both", help="minilm: the default embedder (its forward in ONNX "
                    "Runtime); torch: the same model on PyTorch's forward; both: minilm and "
                    "hash; all: the three")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--sort", default="cumulative", help="cProfile sort key (cumulative, tottime)")
    args = ap.parse_args()

    @asynccontextmanager
    async def opener(settings, say):
        yield InstantTeacher()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"python {platform.python_version()}")
    rates = {}
    kinds = {"both": ["minilm", "hash"], "all": ["minilm", "torch", "hash"]}
    real = engine.run.Embedder
    for kind in kinds.get(args.embedder, [args.embedder]):
        engine.run.Embedder = {"minilm": real, "hash": HashEmbedder,
                               "torch": functools.partial(real, backend="torch")}[kind]
        summary, elapsed = measure(args, opener)
        accepted = summary["this_run"]["accepted"]
        pipeline = summary["this_run"]["elapsed_s"]  # planning to the last write
        per_record_ms = pipeline / max(1, accepted) * 1000
        rates[kind] = accepted / pipeline
        print(f"[{kind}] skill {args.skill}: {accepted} accepted, "
              f"{summary['this_run']['rejected']} rejected in {elapsed:.2f}s: pipeline "
              f"{pipeline:.2f}s, one-off (index, teacher hash, card + plots) "
              f"{elapsed - pipeline:.2f}s")
        for reason, n in list(summary["this_run"]["rejected_by_reason"].items())[:3]:
            print(f"  rejected {n} × {reason}")
        print(f"[{kind}] whole run: {accepted / elapsed:.0f} records/s")
        print(f"[{kind}] engine overhead: {accepted / pipeline:.0f} records/s, "
              f"{per_record_ms:.2f} ms/record through the pipeline; vs a real 135M teacher at "
              f"~1 accepted record/min the engine costs {per_record_ms / 60000:.6f}× the teacher "
              "per record")
    if "hash" in rates and "minilm" in rates:
        print(f"hash / minilm records/s: {rates['hash'] / rates['minilm']:.2f}x "
              "(the share of the engine's time that is the embedding model)")
    if "torch" in rates and "minilm" in rates:
        print(f"minilm on ONNX / on PyTorch records/s: {rates['minilm'] / rates['torch']:.2f}x")


if __name__ == "__main__":
    main()
