"""`--parallel auto`: measure the managed server's throughput by slot count once per (server
build, model, offload, machine) and pick the knee of the curve.

Continuous batching raises aggregate tokens/s with more slots until the hardware is saturated
(on 2 CPU cores ~4 slots, bench/teacher_slots.py; on a GPU far more); past the knee more slots
only add latency and KV-cache memory. One server with the most slots is started and driven at
each concurrency in turn, which is what `--parallel N` would give for decode-bound work.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from models.llama_server import ManagedServer, ServerSettings
from models.openai_client import OpenAICompatTeacher
from models.server_build import file_key
from models.teacher import ChatMessage

CPU_CANDIDATES = (1, 2, 4, 8)
GPU_CANDIDATES = (1, 2, 4, 8, 16, 32, 64)
KNEE = 0.9  # the fewest slots that give 90% of the best throughput
ROUNDS = 1  # requests per slot at each step
MAX_TOKENS = 32  # decode rate settles within a few tokens; short keeps a CPU measurement ~20 s


class _Reply(BaseModel):
    question: str = Field(min_length=5, max_length=200)
    answer: str = Field(min_length=1, max_length=200)


def candidates(gpu_layers: int, binary: Path) -> tuple[int, ...]:
    return GPU_CANDIDATES if gpu_layers != 0 and "cuda" in str(binary) else CPU_CANDIDATES


def pick(rates: dict[int, float]) -> int:
    best = max(rates.values())
    return min(n for n, rate in rates.items() if rate >= KNEE * best)


def cache_key(binary: Path, model: Path, gpu_layers: int) -> str:
    return (f"{binary.resolve()}:{binary.stat().st_mtime_ns}|{file_key(model)}"
            f"|gpu_layers={gpu_layers}|cpus={os.cpu_count()}")


async def _rate(teacher: OpenAICompatTeacher, concurrency: int) -> float:
    prompts = [f"Write one short quiz question and its answer about topic #{i}. Reply in JSON."
               for i in range(concurrency * ROUNDS)]
    schema = _Reply.model_json_schema()
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, prompt: str) -> int:
        async with gate:
            done = await teacher.chat([ChatMessage(role="user", content=prompt)], schema=schema,
                                      max_tokens=MAX_TOKENS, temperature=0.8, seed=i)
            return done.completion_tokens

    started = time.perf_counter()
    tokens = sum(await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts))))
    return tokens / (time.perf_counter() - started)


async def measure(binary: Path, model: Path, gpu_layers: int,
                  steps: tuple[int, ...]) -> dict[int, float]:
    settings = ServerSettings(model_path=model, binary=binary, parallel=max(steps),
                              ctx_per_slot=512, gpu_layers=gpu_layers)
    async with ManagedServer(settings) as server:
        teacher = OpenAICompatTeacher(server.base_url, slots=max(steps), llama_cpp=True)
        try:
            await teacher.chat([ChatMessage(role="user", content="warm up")], max_tokens=4)
            return {n: await _rate(teacher, n) for n in steps}
        finally:
            await teacher.aclose()


async def choose_parallel(binary: Path, model: Path, gpu_layers: int, cache: Path,
                          say: Callable[[str], None]) -> int:
    """The slot count for this server, model and machine: measured once, then read back."""
    key = cache_key(binary, model, gpu_layers)
    try:
        known = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    known = known if isinstance(known, dict) else {}  # a damaged cache is measured again
    if isinstance(known.get(key), dict) and isinstance(known[key].get("parallel"), int):
        return known[key]["parallel"]
    steps = candidates(gpu_layers, binary)
    say(f"--parallel auto: measuring throughput at {', '.join(map(str, steps))} slots "
        "(once for this model and machine)")
    rates = await measure(binary, model, gpu_layers, steps)
    chosen = pick(rates)
    say("--parallel auto: " + ", ".join(f"{n}: {r:.0f} tok/s" for n, r in rates.items())
        + f" -> {chosen} slots")
    known[key] = {"parallel": chosen, "tokens_per_s": {str(n): round(r, 1)
                                                         for n, r in rates.items()}}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(known, indent=1), encoding="utf-8")
    os.replace(tmp, cache)
    return chosen
