"""Prompt-prefix reuse: prompt tokens the teacher evaluates per item, with the RAG prompts laid
out as at an earlier commit (`--before`) and as now, against the real managed llama-server.

    python bench/prefix_reuse.py --before f53df2b [--chunks 8] [--per-chunk 2] [--parallel 4]

Each layout gets a fresh server (embedded 135M GGUF, `--parallel` slots,
`cache_prompt` on) and the same work, scheduled like the engine: `--per-chunk` items per seed
chunk in a row, 2 × slots items in flight, each item the chain instruct → suggest → edit rendered
from that layout's RAG templates with fixed questions and suggestions (so both layouts send the
same content and only its order differs), `max_tokens` 4 (prompt processing is what differs).
Prints prompt tokens evaluated (not served from the server's prompt cache) per item and per call
for both layouts, their ratio, and the wall time of each.

The whole engine at an earlier commit and now (acceptance, waste, prompt tokens per item with
the model's own replies): bench/before_after.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import jinja2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents.spec import load_spec  # noqa: E402
from models import ChatMessage, default_teacher_gguf  # noqa: E402
from models.llama_server import ManagedServer, ServerSettings  # noqa: E402
from models.openai_client import OpenAICompatTeacher  # noqa: E402
from models.server_build import ensure_binary  # noqa: E402
from retrieval import chunk_document, load_documents  # noqa: E402

TEMPLATES = ("instruct.j2", "suggest.j2", "edit.j2")


def layout(commit: str | None) -> jinja2.Environment:
    """The RAG prompts (and the shared includes) as they are now, or at `commit`."""
    names = [f"agents/rag/prompts/{t}" for t in TEMPLATES] + [
        "agents/common_prompts/_sources.j2"]
    found = {}
    for name in names:
        if commit is None:
            path = ROOT / name
            text = path.read_text() if path.exists() else None
        else:
            proc = subprocess.run(["git", "show", f"{commit}:{name}"], cwd=ROOT,
                                  capture_output=True, text=True)
            text = proc.stdout if proc.returncode == 0 else None
        if text is not None:
            found[Path(name).name] = text
    return jinja2.Environment(loader=jinja2.DictLoader(found), undefined=jinja2.StrictUndefined)


def render(env: jinja2.Environment, template: str, **values) -> str:
    return env.get_template(template).render(**values).strip()


async def chains(env: jinja2.Environment, passages: list[str], args) -> dict:
    spec = load_spec(ROOT / "agents" / "rag")
    subs = [s for s in spec.taxonomy if s.passages == 1]
    items = [(passage, subs[(n * args.per_chunk + k) % len(subs)])
             for n, passage in enumerate(passages) for k in range(args.per_chunk)]
    binary = ensure_binary("llama-server", log=lambda m: print(m, file=sys.stderr))
    settings = ServerSettings(model_path=default_teacher_gguf(), binary=binary,
                              parallel=args.parallel, ctx_per_slot=2048)
    totals = {"calls": 0, "prompt": 0, "cached": 0}
    async with ManagedServer(settings) as server:
        teacher = OpenAICompatTeacher(server.base_url, slots=args.parallel, llama_cpp=True)
        queue: asyncio.Queue = asyncio.Queue()
        for item in items:
            queue.put_nowait(item)

        async def ask(prompt: str) -> None:
            done = await teacher.chat([ChatMessage(role="user", content=prompt)], max_tokens=4,
                                      temperature=0.0, seed=1)
            totals["calls"] += 1
            totals["prompt"] += done.prompt_tokens
            totals["cached"] += done.cached_tokens

        async def worker() -> None:
            while not queue.empty():
                passage, sub = queue.get_nowait()
                question = f"What does the {sub.name.replace('_', ' ')} part of this say?"
                values = {"subcategory": sub, "passages": [passage], "question": question,
                          "anchor": None}
                await ask(render(env, "instruct.j2", **values))
                await ask(render(env, "suggest.j2", **values, goal=spec.refinement_goals[0]))
                await ask(render(env, "edit.j2", **values,
                                 suggestions=["Name the exact program it is about."]))

        try:
            await ask("warm up")
            totals.update(calls=0, prompt=0, cached=0)
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(2 * args.parallel)))
            totals["wall_s"] = time.perf_counter() - started
        finally:
            await teacher.aclose()
    totals["items"] = len(items)
    return totals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="git commit with the earlier layout")
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--per-chunk", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--input", type=Path, default=ROOT.parent / "shared" / "corpus")
    args = ap.parse_args()
    args.input = args.input.resolve()
    print(f"machine: {os.cpu_count()} cores {platform.machine()}, Python "
          f"{platform.python_version()}, load {os.getloadavg()[0]:.1f}; before = {args.before}")
    docs, _ = load_documents(args.input)
    passages = [c.text for d in docs for c in chunk_document(d)][: args.chunks]
    results = {name: asyncio.run(chains(layout(commit), passages, args))
               for name, commit in (("before", args.before), ("after", None))}
    print(f"{args.chunks} chunks × {args.per_chunk} items, 3 calls each, "
          f"--parallel {args.parallel}, {2 * args.parallel} items in flight")
    per_item = {}
    for name, r in results.items():
        evaluated = r["prompt"] - r["cached"]
        per_item[name] = evaluated / max(1, r["items"])
        print(f"{name:>6}: {r['items']} items, {r['calls']} calls, {r['prompt']} prompt tokens, "
              f"{r['cached']} from cache ({r['cached'] / max(1, r['prompt']):.0%}); evaluated "
              f"{per_item[name]:.0f}/item, {evaluated / max(1, r['calls']):.0f}/call; "
              f"{r['wall_s']:.1f} s")
    print(f"prompt tokens evaluated per item, before/after: "
          f"{per_item['before'] / max(1e-9, per_item['after']):.2f}x; wall before/after: "
          f"{results['before']['wall_s'] / results['after']['wall_s']:.2f}x")


if __name__ == "__main__":
    main()
