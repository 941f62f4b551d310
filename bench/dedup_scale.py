"""Near-duplicate gate at scale: per-item cost (check + add, as the sink does it) and memory at
10k, 100k and 1M stored 384-d instruction embeddings, exact scan vs the automatic HNSW switch.

    python bench/dedup_scale.py [--sizes 10000,100000,1000000] [--probe 1000]

Vectors are semi-synthetic: 2,000 topic centres with spread around them (real instruction
embeddings cluster by topic; 1M real ones would take hours to embed on CPU). Each size is built
in its own process (RSS measured there); then `--probe` items go through is_duplicate + add one
at a time, half of them planted near-copies (cosine ~0.93) of stored vectors, half new ones.
Prints ms per item, RSS, the ratio exact/auto, and how many duplicate decisions agree with the
exact scan.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DIM = 384


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def data(n: int, probe: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2000, DIM)).astype(np.float32)
    stored = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):  # in blocks: bounded temporaries
        m = min(100_000, n - start)
        stored[start:start + m] = centres[rng.integers(0, 2000, m)] + rng.normal(
            scale=0.8, size=(m, DIM)).astype(np.float32)
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    copies = stored[rng.integers(0, n, probe // 2)]
    copies = copies + rng.normal(scale=0.4 / np.sqrt(DIM), size=copies.shape).astype(np.float32)
    fresh = centres[rng.integers(0, 2000, probe - probe // 2)] + rng.normal(
        scale=0.8, size=(probe - probe // 2, DIM)).astype(np.float32)
    return stored, np.vstack([copies, fresh])


def one(kind: str, n: int, probe: int) -> dict:
    """Runs in a child process: build, then time `probe` check+add steps."""
    import faiss

    from dedup import NearDupIndex
    from dedup.near import FLAT_LIMIT

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    stored, queries = data(n, probe)
    base = rss_mb()
    index = NearDupIndex(DIM, 0.9, flat_limit=10**12 if kind == "exact" else FLAT_LIMIT)
    started = time.perf_counter()
    index.add_many(stored)
    build = time.perf_counter() - started
    decisions = []
    started = time.perf_counter()
    for q in queries:
        duplicate, _ = index.is_duplicate(q)
        decisions.append(bool(duplicate))
        if not duplicate:
            index.add(q)
    per_item = (time.perf_counter() - started) / len(queries)
    return {"kind": index.kind, "n": n, "build_s": build, "ms_per_item": per_item * 1e3,
            "index_mb": rss_mb() - base, "decisions": decisions}


def exact_decisions(n: int, probe: int) -> list[bool]:
    """The exact answer for the same sequence (batched brute force, so it is cheap at 1M)."""
    import faiss

    stored, queries = data(n, probe)
    flat = faiss.IndexFlatIP(DIM)
    flat.add(stored)
    out = []
    for q in queries:  # sequential: an accepted query joins the index, as in the gate
        q = (q / np.linalg.norm(q)).reshape(1, DIM).astype(np.float32)
        duplicate = float(flat.search(q, 1)[0][0, 0]) >= 0.9 - 1e-6
        out.append(duplicate)
        if not duplicate:
            flat.add(q)
    return out


def child(kind: str, n: int, probe: int) -> dict:
    code = (f"import json,sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import dedup_scale as b; print(json.dumps(b.one({kind!r}, {n}, {probe})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--probe", type=int, default=1000)
    args = p.parse_args()
    print(f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}; "
          f"{args.probe} check+add steps per size")
    for n in [int(x) for x in args.sizes.split(",")]:
        truth = exact_decisions(n, args.probe)
        rows = {kind: child(kind, n, args.probe) for kind in ("exact", "auto")}
        for kind, r in rows.items():
            agree = sum(a == b for a, b in zip(r["decisions"], truth)) / len(truth)
            print(f"{n:>8,} {kind:>5} ({r['kind']:>5}): {r['ms_per_item']:7.3f} ms/item  "
                  f"build {r['build_s']:6.1f}s  index ~{r['index_mb']:6.0f} MB  "
                  f"decisions agreeing with exact {agree:.4f} ({sum(truth)} duplicates)")
        print(f"{n:>8,} exact/auto per-item time: "
              f"{rows['exact']['ms_per_item'] / rows['auto']['ms_per_item']:.1f}x")


if __name__ == "__main__":
    main()
