"""Near-duplicate gate at scale: per-item cost (check + add, as the sink does it), recall and
memory at 10k, 100k and 1M stored 384-d instruction embeddings, exact scan vs the automatic
index (exact up to FLAT_LIMIT, then a float16 IVF), and optionally the HNSW graph the gate used
before (slow to build at 1M: ~10 min on 2 busy cores).

    python bench/dedup_scale.py [--sizes 10000,100000,1000000] [--probe 1000]
        [--sets synthetic,real] [--kinds exact,auto,hnsw] [--nprobe 8,16] [--exact-probe 200]

Two vector sets (1M real instruction embeddings would take hours to embed on CPU):
  synthetic  2,000 random topic centres plus full-rank noise (cosine ~0.6 within a topic):
             hard for a graph, whose neighbours are then nearly equidistant.
  real       centres are all-MiniLM-L6-v2 embeddings of ~5,000 real sentences and 10-word
             windows of --corpus; the spread around them is drawn from those embeddings' own
             covariance (so it lies along the directions real text varies in), scaled to
             cosine ~0.8 with the centre.
Either way `--probe` items then go through is_duplicate (+ add when new) one at a time: half
are planted near copies of stored vectors at a cosine drawn evenly from [0.90, 0.97] (the
threshold is 0.9, so many sit right at it), half new vectors of the same topics.

The stored vectors go in as a long run puts them: in batches of 1,000 (the auto index moves
from the exact scan to IVF at 20k and re-clusters at ~262k on the way). Each row runs in its own
process (RSS measured there). Recall = duplicate decisions found / those of an exact scan of the
same sequence. The auto index can miss a duplicate; it flags a non-duplicate only within its
float16 rounding of the threshold (cosine >= 0.9 - 2**-11), shown as [false N] when it happens.
ms/item is wall time; CPU is the thread's CPU time per item: what it costs without waiting for
a core, though still slowed by neighbours competing for cache and memory bandwidth.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIM = 384
THRESHOLD = 0.9
BATCH = 1000
COPY_COS = (0.90, 0.97)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM := current RSS


def peak_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def real_texts(corpus: Path) -> list[str]:
    """Sentences and overlapping 10-word windows of the corpus documents."""
    from retrieval.documents import load_documents

    docs, _ = load_documents(corpus)
    texts = []
    for doc in docs:
        for sentence in re.split(r"(?<=[.!?])\s+|\n+", doc.text):
            sentence = " ".join(sentence.split())
            if 30 <= len(sentence) <= 300:
                texts.append(sentence)
        words = doc.text.split()
        texts += [" ".join(words[i:i + 10]) for i in range(0, max(len(words) - 10, 0), 4)]
    return list(dict.fromkeys(texts))


def real_centres(corpus: Path, cache: Path) -> Path:
    """Embed the corpus texts once (cached); children load the .npy."""
    if not cache.exists():
        from retrieval import Embedder

        texts = real_texts(corpus)
        vecs = Embedder().encode(texts)
        np.save(cache, _unit(np.asarray(vecs, np.float32)))
    return cache


def data(kind: str, n: int, probe: int, centres_path: str | None = None,
         seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n stored unit vectors, `probe` unit queries: near copies first, then new ones)."""
    rng = np.random.default_rng(seed)
    if kind == "synthetic":
        centres = rng.normal(size=(2000, DIM)).astype(np.float32)

        def spread(m: int) -> np.ndarray:
            return rng.normal(scale=0.8, size=(m, DIM)).astype(np.float32)
    else:
        centres = np.load(centres_path)
        centred = centres - centres.mean(axis=0)
        _, sing, basis = np.linalg.svd(centred, full_matrices=False)
        axes = (sing / np.sqrt(len(centres)))[:, None] * basis  # covariance square root
        scale = 0.75 / np.sqrt((axes**2).sum())  # E|noise|^2 = 0.5625: cosine ~0.8

        def spread(m: int) -> np.ndarray:
            return (rng.normal(size=(m, len(axes))) @ axes * scale).astype(np.float32)

    stored = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):  # in blocks: bounded temporaries
        m = min(100_000, n - start)
        stored[start:start + m] = _unit(centres[rng.integers(0, len(centres), m)] + spread(m))
    half = probe // 2
    source = stored[rng.integers(0, n, half)]
    away = spread(half) if kind == "real" else rng.normal(size=(half, DIM)).astype(np.float32)
    away = _unit(away - (away * source).sum(1, keepdims=True) * source)  # orthogonal to source
    cos = rng.uniform(*COPY_COS, size=(half, 1)).astype(np.float32)
    copies = cos * source + np.sqrt(1 - cos * cos) * away
    fresh = centres[rng.integers(0, len(centres), probe - half)] + spread(probe - half)
    return stored, _unit(np.vstack([copies, fresh]))


def exact_decisions(stored: np.ndarray, queries: np.ndarray) -> list[bool]:
    """The exact answer for the sequence: a batched scan against the stored vectors, then each
    query against the earlier accepted queries (an accepted query joins the index, as in the
    gate)."""
    import faiss

    flat = faiss.IndexFlatIP(DIM)
    flat.add(stored)
    best = flat.search(queries, 1)[0][:, 0]
    del flat
    out: list[bool] = []
    accepted: list[int] = []
    for i, q in enumerate(queries):
        sim = max(best[i], max((float(queries[j] @ q) for j in accepted), default=-1.0))
        out.append(bool(sim >= THRESHOLD - 1e-6))
        if not out[-1]:
            accepted.append(i)
    return out


class _Hnsw:
    """The gate's previous index, for comparison: HNSW M 16, efConstruction 40, efSearch 128."""

    kind = "hnsw"

    def __init__(self) -> None:
        import faiss

        self.index = faiss.IndexHNSWFlat(DIM, 16, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = 40
        self.index.hnsw.efSearch = 128

    def add_many(self, vecs: np.ndarray) -> None:
        self.index.add(_unit(vecs))

    def is_duplicate(self, vec: np.ndarray) -> tuple[bool, float]:
        from dedup.near import one_thread

        with one_thread():
            sim = float(self.index.search(_unit(vec.reshape(1, DIM)), 1)[0][0, 0])
        return sim >= THRESHOLD - 1e-6, sim

    def add(self, vec: np.ndarray) -> None:
        from dedup.near import one_thread

        with one_thread():
            self.index.add(_unit(vec.reshape(1, DIM)))


def one(kind: str, vecset: str, n: int, probe: int, centres: str | None,
        nprobe: int | None, limit: int | None = None) -> dict:
    """Runs in a child process: build, then time the first `limit` of the `probe` check+add
    steps (all of them by default)."""
    import faiss

    import dedup.near as near
    from dedup import NearDupIndex

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    if nprobe:
        near.IVF_NPROBE = nprobe
    stored, queries = data(vecset, n, probe, centres)
    queries = queries[:limit]
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand data()'s freed temporaries back first
    base = rss_mb()
    reset_peak()
    if kind == "hnsw":
        index = _Hnsw()
    else:
        index = NearDupIndex(DIM, THRESHOLD, flat_limit=10**12 if kind == "exact" else None)
    started, longest = time.perf_counter(), 0.0
    for start in range(0, n, BATCH):
        step = time.perf_counter()
        index.add_many(stored[start:start + BATCH])
        longest = max(longest, time.perf_counter() - step)
    build = time.perf_counter() - started
    build_peak = peak_mb() - base
    decisions, times = [], []
    cpu = time.thread_time()  # what the item costs the CPU, without waiting for one
    for q in queries:
        step = time.perf_counter()
        duplicate, _ = index.is_duplicate(q)
        if not duplicate:
            index.add(q)
        times.append(time.perf_counter() - step)
        decisions.append(bool(duplicate))
    cpu = time.thread_time() - cpu
    cells = int(index._index.nlist) if getattr(index, "kind", "") == "ivf" else None
    return {"kind": index.kind, "build_s": build, "longest_add_s": longest,
            "ms_per_item": float(np.mean(times)) * 1e3, "cpu_ms": cpu / len(queries) * 1e3,
            "p99_ms": float(np.percentile(times, 99)) * 1e3, "index_mb": rss_mb() - base,
            "build_peak_mb": build_peak, "decisions": decisions, "cells": cells,
            "nprobe": index._index.nprobe if cells else None}


def child(*args) -> dict:
    code = (f"import json,sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import dedup_scale as b; print(json.dumps(b.one(*{args!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"bench child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--probe", type=int, default=1000)
    p.add_argument("--sets", default="synthetic,real")
    p.add_argument("--kinds", default="exact,auto", help="of exact, auto, hnsw")
    p.add_argument("--nprobe", default="", help="IVF cells probed, one auto row per value "
                   "(default: dedup/near.py's IVF_NPROBE)")
    p.add_argument("--exact-probe", type=int, default=0,
                   help="time the exact scan on only the first N probe items (it is slow at "
                   "1M; its decisions are the reference anyway)")
    p.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    args = p.parse_args()
    import faiss

    print(f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
          f"faiss {faiss.__version__}; {args.probe} check+add steps per size; "
          f"load average {load_average()}")
    centres = None
    if "real" in args.sets:
        key = hashlib.sha1(str(args.corpus.resolve()).encode()).hexdigest()[:12]
        cache = Path(tempfile.gettempdir()) / f"dedup_scale_centres_{key}.npy"
        centres = str(real_centres(args.corpus, cache))
        print(f"real set: {len(np.load(centres))} embedded texts of {args.corpus}")
    nprobes = [int(x) for x in args.nprobe.split(",") if x] or [None]
    for vecset in args.sets.split(","):
        for n in [int(x) for x in args.sizes.split(",")]:
            stored, queries = data(vecset, n, args.probe, centres)
            truth = exact_decisions(stored, queries)
            del stored
            duplicates = [i for i, t in enumerate(truth) if t]
            for kind in args.kinds.split(","):
                for nprobe in (nprobes if kind == "auto" else [None]):
                    probe = args.probe
                    if kind == "exact" and args.exact_probe:
                        probe = min(probe, args.exact_probe)
                    before = load_average()
                    r = child(kind, vecset, n, args.probe, centres, nprobe, probe)
                    found = sum(r["decisions"][i] for i in duplicates if i < probe)
                    wrong = sum(d and not truth[i] for i, d in enumerate(r["decisions"]))
                    label = r["kind"] + (f" {r['cells']} cells, nprobe {r['nprobe']}"
                                         if r["cells"] else "")
                    print(f"{vecset:>9} {n:>9,} {kind:>5} ({label}): "
                          f"{r['ms_per_item']:6.3f} ms/item "
                          f"(CPU {r['cpu_ms']:6.3f}, p99 {r['p99_ms']:5.1f})  "
                          f"recall {found}/{sum(1 for i in duplicates if i < probe)}"
                          f"{f' [false {wrong}]' if wrong else ''}  "
                          f"build {r['build_s']:6.1f}s (longest batch {r['longest_add_s']:5.1f}s)  "
                          f"index ~{r['index_mb']:5.0f} MB (build peak +{r['build_peak_mb']:5.0f})"
                          f"{f'  [{probe} items]' if probe < args.probe else ''}  "
                          f"load {before} -> {load_average()}", flush=True)


if __name__ == "__main__":
    main()
