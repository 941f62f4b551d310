"""`--executor ray` scaling: accepted records/min with 1 vs 2 Ray workers on one local cluster.

    python bench/ray_workers.py [--teacher instant|embedded] [--num 400] [--workers 1,2]

instant (default): bench/engine_overhead.py's canned-JSON teacher, mcq skill — times the engine's
own work (flows, validators, retrieval and dedup embeddings, sinks, the job-wide dedup actor)
spread over workers. embedded: each worker owns a managed llama-server on the embedded 135M GGUF
(rag skill, refinement off); it accepts ~1 item in 50, so runs are bounded by --max-attempts
(= --num work items) and items/min (accepted + rejected) is the figure to read.

The same cores either way: 1 worker reserves all of them (and its llama-server uses them all),
2 workers half each. Start-up (Ray, each worker's embedder and teacher) is a one-off cost: the
steady rate is read from the driver's progress samples between 10% and 90% of --num, beside the
wall-clock rate of the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.engine_overhead import InstantTeacher  # noqa: E402
from engine.config import RunConfig  # noqa: E402
from engine.distributed import run_ray  # noqa: E402
from engine.progress import Progress  # noqa: E402


class WorkerTeacher(InstantTeacher):
    """Worker wK numbers its replies K, K+2, K+4…: two workers must not write the same questions
    (the job-wide gate would reject one of each) and the numbers stay small (long numbers embed
    alike, and near-duplicates would be most of the rejections)."""

    def __init__(self) -> None:
        super().__init__()
        import ray

        name = ray.get_runtime_context().get_actor_name() or "w0"
        self.n = itertools.count(int(name.rsplit("-w", 1)[-1]) % 2, 2)


@asynccontextmanager
async def instant(settings, say):
    yield WorkerTeacher()


class Meter(Progress):
    """The driver reports accepted records about once a second: keep (time, count)."""

    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.samples: list[tuple[float, int]] = []

    def update(self, stats) -> None:
        self.samples.append((time.perf_counter(), stats.accepted))

    def steady_rate(self, num: int) -> float | None:
        """Records/min between the first samples at ≥10% and ≥90% of num."""
        lo = next(((t, n) for t, n in self.samples if n >= 0.1 * num), None)
        hi = next(((t, n) for t, n in self.samples if n >= 0.9 * num), None)
        if lo is None or hi is None or hi[0] <= lo[0]:
            return None
        return (hi[1] - lo[1]) / (hi[0] - lo[0]) * 60


def one_run(args, workers: int, num: int, out: Path) -> tuple[float, dict, Meter]:
    corpus = ROOT / "examples" / "docs"
    if args.teacher == "instant":
        base = {"skill": "mcq", "num": num, "max_attempts": num * 60, "max_type_share": 0,
                "near_dup_threshold": 0.99, "flow": {"refine_rounds": 1, "round_trip_k": 0}}
    else:
        base = {"skill": "rag", "num": 10_000, "max_attempts": num,
                "flow": {"refine_rounds": 0, "max_tokens": 256}}
    cfg = RunConfig.model_validate({
        **base, "input": corpus, "out": out, "executor": "ray", "ray_workers": workers,
        "cpus_per_teacher": args.cpus / workers})
    meter = Meter()
    start = time.perf_counter()
    summary = asyncio.run(run_ray(cfg, meter, instant if args.teacher == "instant" else None))
    return time.perf_counter() - start, summary, meter


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", choices=["instant", "embedded"], default="instant")
    ap.add_argument("--num", type=int, default=400, help="records per run (with --teacher "
                    "embedded: work items per run)")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--cpus", type=float, default=float(os.cpu_count() or 2),
                    help="CPUs the Ray cluster gets (shared out over the workers)")
    args = ap.parse_args()
    import ray

    # the workers import this file's teacher (and bench/engine_overhead.py) from the repository
    ray.init(num_cpus=int(args.cpus), include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": f"{ROOT / 'bench'}:{ROOT}"}})
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, python "
          f"{platform.python_version()}, ray {ray.__version__}; teacher {args.teacher}; "
          f"cluster CPUs {args.cpus:g}; num {args.num}", flush=True)
    rates = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            one_run(args, 2, 20 if args.teacher == "instant" else 4, Path(tmp) / "warm-up")
            for workers in (int(w) for w in args.workers.split(",")):
                wall, summary, meter = one_run(args, workers, args.num, Path(tmp) / f"w{workers}")
                run_ = summary["this_run"]
                items = run_["accepted"] + run_["rejected"]
                steady = meter.steady_rate(args.num) if args.teacher == "instant" else None
                rates[workers] = steady if steady is not None else items / wall * 60
                print(f"{workers} worker(s): {run_['accepted']} accepted, {run_['rejected']} "
                      f"rejected in {wall:.1f}s (start-up included): wall "
                      f"{run_['accepted'] / wall * 60:.1f} records/min, {items / wall * 60:.1f} "
                      f"items/min" + (f"; steady (10→90%) {steady:.0f} records/min"
                                      if steady is not None else ""), flush=True)
    finally:
        ray.shutdown()
    if 1 in rates and 2 in rates:
        what = "steady records/min" if args.teacher == "instant" else "items/min"
        print(f"ratio 2 workers / 1 worker ({what}): {rates[2] / rates[1]:.2f}×")


if __name__ == "__main__":
    main()
