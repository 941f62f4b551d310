"""Prompt-prefix reuse: prompt tokens the teacher evaluates per call, per work item and per
accepted record, for the current tree and for an earlier commit, on the same real RAG run.

    python bench/prefix_reuse.py --before f53df2b [--items 24] [--input ../shared/corpus]

Each side runs `python -m engine --skill rag` with the embedded 135M teacher (managed
llama-server, `cache_prompt` on) for exactly --items work items (`--max-attempts`, with a
--num it cannot reach), the earlier commit from a temporary `git worktree`. The figures come
from each run's summary.json: prompt tokens minus those the server served from its prompt cache
(`timings.cache_n`). Token counts do not depend on how busy the machine is, so the two sides may
run at once (--together); records/min do, and are printed for orientation only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_side(repo: Path, out: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "engine", "--skill", "rag", "--input", str(args.input),
           "--out", str(out), "--num", "100000", "--max-attempts", str(args.items),
           "--seed", str(args.seed), "--per-chunk", str(args.per_chunk), "--quiet"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(repo)}
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    if proc.returncode not in (0, 3):  # 3: ran out of attempts before --num, as intended
        raise SystemExit(f"{repo}: engine exited {proc.returncode}: {proc.stderr[-2000:]}")
    run = json.loads((out / "summary.json").read_text())["this_run"]
    items = run["accepted"] + run["rejected"]
    evaluated = run["prompt_tokens"] - run["cached_prompt_tokens"]
    return {
        "wall_s": round(time.perf_counter() - started, 1),
        "items": items, "accepted": run["accepted"], "calls": run["teacher_calls"],
        "prompt_tokens": run["prompt_tokens"], "cached": run["cached_prompt_tokens"],
        "cached_share": run["cached_prompt_tokens"] / max(1, run["prompt_tokens"]),
        "evaluated_per_call": evaluated / max(1, run["teacher_calls"]),
        "evaluated_per_item": evaluated / max(1, items),
        "evaluated_per_accepted": evaluated / run["accepted"] if run["accepted"] else None,
        "accepted_per_min": run["accepted_per_min"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="git commit to compare against")
    ap.add_argument("--items", type=int, default=24, help="work items per side")
    ap.add_argument("--input", type=Path, default=ROOT.parent / "shared" / "corpus")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-chunk", type=int, default=2)
    ap.add_argument("--together", action="store_true", help="run both sides at once")
    args = ap.parse_args()
    args.input = args.input.resolve()
    with tempfile.TemporaryDirectory(prefix="prefix-reuse-") as tmp:
        tmp_path = Path(tmp)
        worktree = tmp_path / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.before],
                       cwd=ROOT, check=True, capture_output=True)
        try:
            sides = {"before": (worktree, tmp_path / "out-before"),
                     "after": (ROOT, tmp_path / "out-after")}
            with ThreadPoolExecutor(max_workers=2 if args.together else 1) as pool:
                futures = {name: pool.submit(run_side, repo, out, args)
                           for name, (repo, out) in sides.items()}
                results = {name: f.result() for name, f in futures.items()}
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT,
                           capture_output=True)
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, {platform.processor() or ''}"
          f" Python {platform.python_version()}; rag, {args.items} items per side, "
          f"--per-chunk {args.per_chunk}, before = {args.before}")
    print(f"{'':8}{'items':>6}{'acc':>5}{'calls':>6}{'prompt tok':>11}{'cached':>8}"
          f"{'eval/call':>10}{'eval/item':>10}{'eval/acc':>10}{'acc/min':>8}{'wall s':>8}")
    for name, r in results.items():
        per_acc = f"{r['evaluated_per_accepted']:.0f}" if r["evaluated_per_accepted"] else "-"
        print(f"{name:8}{r['items']:>6}{r['accepted']:>5}{r['calls']:>6}{r['prompt_tokens']:>11}"
              f"{r['cached_share']:>8.0%}{r['evaluated_per_call']:>10.0f}"
              f"{r['evaluated_per_item']:>10.0f}{per_acc:>10}{r['accepted_per_min']:>8}"
              f"{r['wall_s']:>8}")
    b, a = results["before"], results["after"]
    print(f"evaluated prompt tokens per call, before/after: "
          f"{b['evaluated_per_call'] / max(1e-9, a['evaluated_per_call']):.2f}x; per item: "
          f"{b['evaluated_per_item'] / max(1e-9, a['evaluated_per_item']):.2f}x")
    if b["evaluated_per_accepted"] and a["evaluated_per_accepted"]:
        print(f"per accepted record, before/after: "
              f"{b['evaluated_per_accepted'] / a['evaluated_per_accepted']:.2f}x")


if __name__ == "__main__":
    main()
