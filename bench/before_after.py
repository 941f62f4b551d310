"""The whole engine at an earlier commit (or with other flags) and now, on the same plan: what
a change did to acceptance, waste and prompt tokens with the real teacher.

    python bench/before_after.py --before COMMIT [--skill rag] [--items 40] [--per-chunk 2]
                                 [--keep DIR]
    python bench/before_after.py --before-flags="--sampling off" [--after-flags=...] ...

Each side runs `python -m engine --skill S --input INPUT` for exactly --items work items
(`--max-attempts`; --num is set out of reach) with the same seed, so both sides plan the same
chunks, types and transformations in the same order and differ only by the code. The earlier
side runs from a temporary git worktree (without --before: the working tree too, so the sides
differ only by --before-flags / --after-flags); "now" is the working tree as it is. Prints per side:
accepted / items, accepted per minute, waste share (completion tokens of rejected items), prompt
tokens evaluated per item, the top rejection reasons; then the ratios after / before.
With the 135M teacher a few dozen items leave a wide margin: repeat with --seed to see it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_engine(repo: Path, out: Path, args, flags: str = "") -> dict:
    cmd = [sys.executable, "-m", "engine", "--skill", args.skill, "--input", str(args.input),
           "--out", str(out), "--num", "100000", "--max-attempts", str(args.items),
           "--per-chunk", str(args.per_chunk), "--seed", str(args.seed), "--timeout", "1800",
           "--quiet", *shlex.split(flags)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(repo)}
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    if proc.returncode not in (0, 3):  # 3: ran out of attempts before --num, as intended
        raise SystemExit(f"{repo}: engine exited {proc.returncode}: {proc.stderr[-2000:]}")
    run = json.loads((out / "summary.json").read_text())["this_run"]
    run["wall_s"] = time.perf_counter() - started
    return run


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of an acceptance share: each item is a draw, and the same commit on the
    same seed accepted 10 and 19 of 60 (the server's batching changes what is sampled)."""
    if not n:
        return 0.0, 1.0
    p, spread = k / n, z * ((k * (n - k) / n + z * z / 4) ** 0.5) / n
    centre, scale = p + z * z / (2 * n), 1 + z * z / n
    return (centre - spread) / scale if k else 0.0, (centre + spread) / scale if k < n else 1.0


def report(name: str, run: dict) -> None:
    items = run["accepted"] + run["rejected"]
    low, high = wilson(run["accepted"], items)
    print(f"{name:>6}: {run['accepted']}/{items} accepted ({run['accepted'] / max(1, items):.0%},"
          f" 95% {low:.0%}-{high:.0%}),"
          f" {run['accepted_per_min']:.2f}/min, waste {run['waste_share']:.0%} of "
          f"{run['completion_tokens']} completion tokens, "
          f"{run['evaluated_prompt_tokens_per_item']:.0f} prompt tokens evaluated per item, "
          f"{run['teacher_calls']} calls, {run['wall_s']:.0f} s")
    top = sorted(run["rejected_by_reason"].items(), key=lambda kv: -kv[1])[:6]
    print("        rejected: " + "; ".join(f"{reason} ×{n}" for reason, n in top))
    if retried := run.get("retried_by_reason"):  # absent before commit 21cc2f9
        print("        asked again: " + "; ".join(f"{reason} ×{n}"
                                                  for reason, n in list(retried.items())[:6]))


def ratio(after: float, before: float) -> str:
    return f"{after / before:.2f}x" if before else ("n/a" if not after else "inf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", help="git commit to compare the working tree with (default: the "
                    "working tree itself, for an A/B of flags)")
    ap.add_argument("--before-flags", default="", help="extra engine flags of the before side")
    ap.add_argument("--after-flags", default="", help="extra engine flags of the after side")
    ap.add_argument("--skill", default="rag")
    ap.add_argument("--items", type=int, default=40, help="work items per side")
    ap.add_argument("--per-chunk", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--input", type=Path, default=ROOT.parent / "shared" / "corpus")
    ap.add_argument("--keep", type=Path, help="copy both sides' output folders here")
    args = ap.parse_args()
    if not (args.before or args.before_flags or args.after_flags):
        ap.error("give --before COMMIT, or flags that differ (--before-flags/--after-flags)")
    args.input = args.input.resolve()
    print(f"machine: {os.cpu_count()} cores {platform.machine()}, Python "
          f"{platform.python_version()}, load {os.getloadavg()[0]:.1f}; before = "
          f"{args.before or 'working tree'} {args.before_flags}; after = working tree "
          f"{args.after_flags}; --skill {args.skill}, {args.items} items, seed {args.seed}")
    with tempfile.TemporaryDirectory(prefix="before-after-") as tmp:
        worktree = Path(tmp) / "before" if args.before else ROOT
        if args.before:
            subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.before],
                           cwd=ROOT, check=True, capture_output=True)
        try:
            before = run_engine(worktree, Path(tmp) / "out-before", args, args.before_flags)
            report("before", before)
            after = run_engine(ROOT, Path(tmp) / "out-after", args, args.after_flags)
            report("after", after)
            if args.keep:
                for side in ("out-before", "out-after"):
                    shutil.copytree(Path(tmp) / side, args.keep / side, dirs_exist_ok=True)
        finally:
            if args.before:
                subprocess.run(["git", "worktree", "remove", "--force", str(worktree)],
                               cwd=ROOT, capture_output=True)
    acc = lambda r: r["accepted"] / max(1, r["accepted"] + r["rejected"])  # noqa: E731
    evaluated = "evaluated_prompt_tokens_per_item"
    print(f"after / before: accepted per item {ratio(acc(after), acc(before))}, accepted per min "
          f"{ratio(after['accepted_per_min'], before['accepted_per_min'])}, waste share "
          f"{before['waste_share']:.0%} -> {after['waste_share']:.0%}, prompt tokens evaluated "
          f"per item {ratio(after[evaluated], before[evaluated])}")
    counts = [(r["accepted"], r["accepted"] + r["rejected"]) for r in (before, after)]
    (lo_b, hi_b), (lo_a, hi_a) = (wilson(*c) for c in counts)
    if lo_a <= hi_b and lo_b <= hi_a:
        print("        the two acceptance intervals overlap: this run alone does not tell the "
              "sides apart (more --items, or repeat with other --seed values)")


if __name__ == "__main__":
    main()
