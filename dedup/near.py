"""Near-duplicate gate: cosine similarity over sentence embeddings, backed by faiss."""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np

from engine import failpoints

log = logging.getLogger(__name__)

SIDECAR_VERSION = 1

# Past this many vectors the exact scan (O(n) per query, ~0.1 ms per 1,000 stored on 2 cores)
# gives way to an HNSW graph (O(log n)); bench/dedup_scale.py measured the cross-over and the
# decisions' agreement with the exact scan.
FLAT_LIMIT = 20_000
HNSW_M = 16  # graph degree: recall vs ~128 B of links per vector; 32 built 1.6x slower
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 128  # 64 missed 6 of 500 duplicates at 100k (bench/dedup_scale.py), 128 none

# A unit vector's dot product with itself can land a few float32 ulps below 1.0;
# without slack, threshold=1.0 would miss exact duplicates.
_FLOAT32_SLACK = 1e-6


class CorruptIndexError(RuntimeError):
    """The saved index or its sidecar is unreadable or they disagree; rebuild it."""


def _sidecar_path(path: Path) -> Path:
    return Path(str(path) + ".json")


def _tmp_path(path: Path) -> Path:
    return path.with_suffix(path.suffix + ".tmp")


def _fsync_file(path: Path) -> None:
    # Flush the finished temp file to disk so os.replace never exposes a hollow file.
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _check_threshold(threshold: float) -> None:
    if not 0 < threshold <= 1:  # also rejects NaN
        raise ValueError(
            f"NearDupIndex: threshold must satisfy 0 < threshold <= 1, got {threshold!r}; "
            "0.9 suits all-MiniLM-L6-v2"
        )


@contextmanager
def one_thread():
    """One query at a time runs fastest on one OpenMP thread: a team's start-up and barriers
    cost more than the scan saves, 10x more on a loaded machine (22 ms vs 1.8 ms at 10k on 2
    busy cores). The setting is per calling thread, so bulk work elsewhere keeps its team."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _hnsw(dim: int) -> faiss.IndexHNSWFlat:
    index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.hnsw.efSearch = HNSW_EF_SEARCH  # saved with the index
    return index


class NearDupIndex:
    """Incremental gate: a vector is a duplicate if its cosine to any stored one >= threshold.

    Vectors are L2-normalized on the way in, so inner product equals cosine. The index is an
    exact scan up to `flat_limit` vectors, then moves itself to HNSW (approximate, but it keeps
    every vector, so positions, vectors() and persistence work the same).
    """

    def __init__(self, dim: int, threshold: float = 0.9, flat_limit: int = FLAT_LIMIT) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"NearDupIndex: dim must be a positive int, got {dim!r}")
        _check_threshold(threshold)
        self.dim = dim
        self.threshold = float(threshold)
        self.flat_limit = flat_limit
        self._index: faiss.Index = faiss.IndexFlatIP(dim)

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def kind(self) -> str:
        return "hnsw" if isinstance(self._index, faiss.IndexHNSWFlat) else "flat"

    def _store(self, rows: np.ndarray) -> None:
        if self.kind == "flat" and self.ntotal + len(rows) > self.flat_limit:
            # one-off move: re-insert what the exact index holds into the graph, in order
            log.info("near-duplicate index passes %d vectors: moving it to HNSW", self.flat_limit)
            graph = _hnsw(self.dim)
            if self.ntotal:
                graph.add(self._index.reconstruct_n(0, self.ntotal))
            self._index = graph
        self._index.add(rows)

    def _unit_rows(self, vecs: np.ndarray, *, single: bool) -> np.ndarray:
        """Return a C-contiguous float32 (n, dim) copy with every row scaled to length 1."""
        arr = np.asarray(vecs, dtype=np.float32)
        if single and arr.shape == (self.dim,):
            arr = arr.reshape(1, self.dim)
        expected = f"({self.dim},) or (1, {self.dim})" if single else f"(n, {self.dim})"
        if arr.ndim != 2 or arr.shape[1] != self.dim or (single and arr.shape[0] != 1):
            raise ValueError(
                f"NearDupIndex: expected a vector of shape {expected}, got shape {arr.shape}; "
                f"embed with the model this index was built for (dim {self.dim})"
            )
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        if not np.all(np.isfinite(norms)) or np.any(norms == 0):
            raise ValueError(
                "NearDupIndex: vector is all zeros or contains NaN/inf; "
                "check the embedder output for empty or broken input text"
            )
        return np.ascontiguousarray(arr / norms, dtype=np.float32)

    def nearest(self, vec: np.ndarray) -> tuple[float, int | None]:
        """(highest cosine, its position), or (0.0, None) while the index is empty."""
        row = self._unit_rows(vec, single=True)
        if self.ntotal == 0:
            return 0.0, None
        with one_thread():
            sims, ids = self._index.search(row, 1)
        return min(float(sims[0, 0]), 1.0), int(ids[0, 0])

    def neighbours_within(self, vec: np.ndarray, radius: float, limit: int) -> int:
        """How many stored vectors have cosine >= radius with `vec` (counted up to `limit`)."""
        if self.ntotal == 0 or limit <= 0:
            return 0
        with one_thread():
            sims, _ = self._index.search(self._unit_rows(vec, single=True),
                                         min(limit, self.ntotal))
        return int((sims[0] >= radius).sum())

    def is_duplicate(self, vec: np.ndarray) -> tuple[bool, float]:
        max_sim, _ = self.nearest(vec)
        return max_sim >= self.threshold - _FLOAT32_SLACK, max_sim

    def add(self, vec: np.ndarray) -> int:
        """Store one vector; returns its position (0-based insertion order)."""
        with one_thread():  # one graph insertion is a few searches: same reason
            self._store(self._unit_rows(vec, single=True))
        return self.ntotal - 1

    def vector(self, position: int) -> np.ndarray:
        return self._index.reconstruct(position)

    def vectors(self) -> np.ndarray:
        """The stored unit vectors, in insertion order (for diversity statistics)."""
        n = self.ntotal
        return self._index.reconstruct_n(0, n) if n else np.zeros((0, self.dim), np.float32)

    def add_many(self, vecs: np.ndarray) -> None:
        """Store a (n, dim) batch in order; positions continue from ntotal."""
        if np.asarray(vecs).size == 0:
            return
        self._store(self._unit_rows(vecs, single=False))

    def save(self, path: Path) -> None:
        """Write the index, then its sidecar, each via temp file + os.replace.

        Sidecar goes last: a crash between the two leaves an ntotal mismatch,
        which load() reports as corrupt instead of serving a stale pairing.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_path(path)
        try:
            faiss.write_index(self._index, str(tmp))
            _fsync_file(tmp)
            failpoints.hit("index.tmp_written")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

        failpoints.hit("index.replaced")  # the new index beside the old sidecar
        sidecar = _sidecar_path(path)
        meta = {
            "dim": self.dim,
            "threshold": self.threshold,
            "ntotal": self.ntotal,
            "version": SIDECAR_VERSION,
        }
        sidecar_tmp = _tmp_path(sidecar)
        try:
            with open(sidecar_tmp, "w", encoding="utf-8") as handle:
                json.dump(meta, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(sidecar_tmp, sidecar)
        finally:
            sidecar_tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path, threshold: float) -> NearDupIndex:
        """Read an index saved by save(). `threshold` is the caller's current setting;
        the one in the sidecar is informational only.

        Raises FileNotFoundError if the index file is absent, CorruptIndexError if it
        or its sidecar is unreadable or they disagree.
        """
        path = Path(path)
        _check_threshold(threshold)  # a caller bug, not corruption: fail before reading
        if not path.exists():
            raise FileNotFoundError(f"near-dup index {path} does not exist")

        def corrupt(problem: str) -> CorruptIndexError:
            return CorruptIndexError(
                f"near-dup index {path}: {problem}; "
                "it will be rebuilt from data.jsonl"
            )

        sidecar = _sidecar_path(path)
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise corrupt(f"sidecar {sidecar} is missing") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise corrupt(f"sidecar {sidecar} is unreadable ({exc})") from exc

        if not isinstance(meta, dict) or meta.get("version") != SIDECAR_VERSION:
            raise corrupt(f"sidecar {sidecar} is not a version-{SIDECAR_VERSION} sidecar")
        dim, ntotal = meta.get("dim"), meta.get("ntotal")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (dim, ntotal)):
            raise corrupt(f"sidecar {sidecar} lacks integer dim/ntotal: {meta}")

        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            first_line = (str(exc).splitlines() or ["no detail"])[0][:200]
            raise corrupt(f"faiss cannot read it ({first_line})") from exc

        if not isinstance(index, (faiss.IndexFlatIP, faiss.IndexHNSWFlat)) \
                or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise corrupt(f"it is a {type(index).__name__}, expected an inner-product "
                          "IndexFlatIP or IndexHNSWFlat")
        if index.d != dim:
            raise corrupt(f"index dim {index.d} disagrees with sidecar dim {dim}")
        if index.ntotal != ntotal:
            raise corrupt(f"index holds {index.ntotal} vectors but sidecar says {ntotal}")

        loaded = cls(dim, threshold)
        loaded._index = index
        return loaded
