"""Aggregate throughput of the managed llama-server by slot count, JSON-schema constrained.

    python bench/teacher_slots.py [--parallel 1,2,4,8,16] [--requests 32] [--max-tokens 200]
                                  [--model GGUF] [--weights as-is|q8_0|as-is,q8_0]

Starts one server per slot count with the same GGUF and sends the same batch of concurrent
schema-constrained requests to each, in two workloads: `short` (a one-line prompt: decode-bound)
and `rag` (a ~1,200-character passage per prompt, as the engine sends: prompt-processing heavy).
Prints completion tokens per wall second, the ratio to the first slot count, and the ratio to
llama.cpp's own raw decode figure for the same model (`llama-bench`, built from the same source
by models/server_build.py): how close the served, constrained rate comes to the bare engine.
`--weights as-is,q8_0` measures the GGUF and its Q8_0 copy (what `--teacher-weights auto`
serves on a CPU) in turn at each slot count and prints requests per second q8_0 / as-is (the
same prompts; the replies' lengths differ a little between the two).
Figures go to bench/RESULTS.md with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel, Field

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import ChatMessage, default_teacher_gguf  # noqa: E402
from models.llama_server import ManagedServer, ServerSettings  # noqa: E402
from models.openai_client import OpenAICompatTeacher  # noqa: E402
from models.cpu_weights import q8_0  # noqa: E402
from models.server_build import ensure_binary  # noqa: E402
from retrieval import chunk_document, load_documents  # noqa: E402


class QA(BaseModel):
    question: str = Field(min_length=10, max_length=200)
    answer: str = Field(min_length=2, max_length=400)


TOPICS = ["rivers", "bread", "printing", "planets", "bees", "trains", "coffee", "volcanoes"]


def short_prompts(n: int) -> list[str]:
    return [f"Write one quiz question and its answer about {TOPICS[i % len(TOPICS)]} (#{i}). "
            "Reply in JSON: {\"question\": \"...\", \"answer\": \"...\"}" for i in range(n)]


def rag_prompts(n: int) -> list[str]:
    docs, _ = load_documents(Path(__file__).resolve().parents[1] / "examples" / "docs")
    chunks = [c for d in docs for c in chunk_document(d, size=1200, overlap=0)]
    return [f"Write one question and its answer about this text.\n\n{chunks[i % len(chunks)].text}"
            f"\n\nReply in JSON: {{\"question\": \"...\", \"answer\": \"...\"}}" for i in range(n)]


async def measure(binary: Path, model: Path, parallel: int, texts: list[str], max_tokens: int,
                  gpu_layers: int) -> tuple[float, int, float]:
    settings = ServerSettings(model_path=model, binary=binary, parallel=parallel,
                              ctx_per_slot=2048, gpu_layers=gpu_layers)
    async with ManagedServer(settings) as server:
        # the client allows every request in flight: the server's slots are what is measured
        teacher = OpenAICompatTeacher(server.base_url, slots=len(texts), llama_cpp=True)
        schema = QA.model_json_schema()
        try:
            await teacher.chat([ChatMessage(role="user", content="warm up")], max_tokens=8)
            started = time.perf_counter()
            done = await asyncio.gather(*(
                teacher.chat([ChatMessage(role="user", content=t)], schema=schema,
                             max_tokens=max_tokens, temperature=0.8, seed=i)
                for i, t in enumerate(texts)))
            elapsed = time.perf_counter() - started
        finally:
            await teacher.aclose()
    tokens = sum(c.completion_tokens for c in done)
    return tokens / elapsed, tokens, elapsed, sum(c.prompt_tokens for c in done)


def raw_decode(model: Path, gpu_layers: int) -> tuple[float, float]:
    """(prompt, decode) tok/s from llama-bench: one sequence, no server, no grammar."""
    bench = ensure_binary("llama-bench", log=lambda m: print(m, file=sys.stderr))
    out = subprocess.run([str(bench), "-m", str(model), "-p", "256", "-n", "128", "-r", "3",
                          "-ngl", str(gpu_layers), "-o", "json"],
                         capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)
    prompt = next(r["avg_ts"] for r in rows if r.get("n_prompt") and not r.get("n_gen"))
    decode = next(r["avg_ts"] for r in rows if r.get("n_gen") and not r.get("n_prompt"))
    return float(prompt), float(decode)


def machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores, {cpu}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--parallel", default="1,2,4,8,16")
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=200)
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--gpu-layers", type=int, default=0)
    p.add_argument("--weights", default="as-is", help="as-is, q8_0 or both (as-is,q8_0): the "
                   "GGUF as given and/or its Q8_0 copy (models/cpu_weights.py), measured in turn "
                   "at each slot count, with the ratio q8_0 / as-is")
    args = p.parse_args()
    source = args.model or default_teacher_gguf()
    # as-is first: the q8_0 row's ratio is against it, whatever order was typed
    models = {w: source if w == "as-is" else q8_0(source, lambda m: print(m, file=sys.stderr))
              for w in sorted(set(args.weights.split(",")), key=lambda w: w != "as-is")}
    binary = ensure_binary("llama-server", log=lambda m: print(m, file=sys.stderr))
    print(f"model {source.name}; {args.requests} concurrent schema-constrained requests, "
          f"max_tokens {args.max_tokens}; {machine()}; gpu_layers {args.gpu_layers}")
    raw = {}
    for weights, model in models.items():
        raw[weights] = raw_decode(model, args.gpu_layers)
        print(f"llama-bench {weights} (same build, one sequence): prompt {raw[weights][0]:.1f} "
              f"tok/s, decode {raw[weights][1]:.1f} tok/s")
    for workload, texts in (("short", short_prompts(args.requests)),
                            ("rag", rag_prompts(args.requests))):
        base: dict[str, float] = {}
        for parallel in [int(x) for x in args.parallel.split(",")]:
            first = None
            for weights, model in models.items():
                rate, tokens, elapsed, prompt_tokens = asyncio.run(
                    measure(binary, model, parallel, texts, args.max_tokens, args.gpu_layers))
                base.setdefault(weights, rate)
                # per request: the replies' lengths differ between weights, the prompts do not
                per_request = elapsed / len(texts)
                first = first or per_request
                label = f" {weights:>5}" if len(models) > 1 else ""
                print(f"{workload:>5}{label} --parallel {parallel:>2}: {rate:6.1f} completion "
                      f"tok/s ({tokens} tokens, {prompt_tokens} prompt tokens, {elapsed:.1f}s)  "
                      f"vs --parallel {args.parallel.split(',')[0]}: {rate / base[weights]:.2f}x, "
                      f"vs llama-bench decode: {rate / raw[weights][1]:.2f}x"
                      + (f", requests/s vs as-is: {first / per_request:.2f}x"
                         if len(models) > 1 and weights != "as-is" else ""))


if __name__ == "__main__":
    main()
