"""Near-duplicate gate: cosine similarity over sentence embeddings, backed by faiss."""

from __future__ import annotations

import json
import logging
import math
import os
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np

from engine import failpoints

log = logging.getLogger(__name__)

SIDECAR_VERSION = 1

# Past this many vectors the exact scan (O(n) per query, ~0.1 ms per 1,000 stored on 2 cores)
# gives way to an inverted file (IVF): k-means cells, and a query scans only the IVF_NPROBE
# cells whose centroids are nearest it, with vectors kept as float16 (half the memory and the
# memory traffic of a scan; a cosine moves by 1e-5 typically, 5e-4 at most). Chosen over HNSW
# by bench/dedup_scale.py (bench/RESULTS.md): at 1M, HNSW (M 16, efSearch 128) missed 13-33%
# of duplicates and took 11 min to build; an IVF add is one centroid lookup and an append.
FLAT_LIMIT = 20_000
# cells scanned per query: 12 found >= 99.5% of the exact scan's duplicates on real-text
# vectors at 100k-1M (8: 99.35%, 16: 99.7%); 16 cost ~1.4x the time at 1M
IVF_NPROBE = 12
IVF_POINTS_PER_CELL = 39  # k-means wants this many training points per centroid (faiss)
IVF_TRAIN_CAP = 40_000  # training sample cap: 20k trained points gave the recall 100k did
IVF_NITER = 10  # k-means iterations: the cells need to be reasonable, not optimal
IVF_REGROW = 4  # re-cluster once the ideal cell count is 4x the current one (~16x growth)
_BLOCK = 65_536  # add_many normalizes a block at a time: no full-size temporary at 1M

# A unit vector's dot product with itself can land a few float32 ulps below 1.0;
# without slack, threshold=1.0 would miss exact duplicates.
_FLOAT32_SLACK = 1e-6
# Rounding each coordinate to float16 (relative error <= 2**-11) moves the dot product of two
# unit vectors by at most 2**-11 (Cauchy-Schwarz); typically ~1e-5.
_FLOAT16_SLACK = 2.0**-11


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


def _nlist_for(n: int) -> int:
    """Cells for n vectors: a power of two at or below 4·sqrt(n), the low end of the usual
    4-16·sqrt(n) (re-clustering assigns every vector against every centroid: fewer cells keep
    that pause short), and no more than k-means can train from n points."""
    target = min(4 * math.sqrt(n), n / IVF_POINTS_PER_CELL)
    return 2 ** max(0, int(math.log2(max(target, 1))))


def _evenly_spaced(n: int, k: int) -> np.ndarray:
    """min(n, k) positions spread over range(n): a deterministic sample across the run."""
    return np.unique(np.linspace(0, n - 1, num=min(n, k)).astype(np.int64))


class NearDupIndex:
    """Incremental gate: a vector is a duplicate if its cosine to any stored one >= threshold.

    Vectors are L2-normalized on the way in, so inner product equals cosine. The index is an
    exact scan up to `flat_limit` vectors, then moves itself to an inverted file (IVF:
    approximate, a near copy in a cell the query does not probe is missed; every vector is
    kept, as float16, so positions, vectors() and persistence work the same). As it grows it
    re-clusters into more cells now and then, so the cells stay small.
    """

    def __init__(self, dim: int, threshold: float = 0.9, flat_limit: int | None = None) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"NearDupIndex: dim must be a positive int, got {dim!r}")
        _check_threshold(threshold)
        self.dim = dim
        self.threshold = float(threshold)
        self.flat_limit = FLAT_LIMIT if flat_limit is None else flat_limit
        self._index: faiss.Index = faiss.IndexFlatIP(dim)
        # (unit row, its nearest cell) from the last IVF search: the gate checks a vector, then
        # adds that same vector, and finding its cell again would cost a quarter of the check
        self._probed: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def kind(self) -> str:
        if isinstance(self._index, faiss.IndexIVFScalarQuantizer):
            return "ivf"
        return "hnsw" if isinstance(self._index, faiss.IndexHNSWFlat) else "flat"

    def _outgrown(self, total: int) -> bool:
        """Whether `total` vectors call for a new index: past the flat limit, or an IVF whose
        cells would hold 16x what they were made for (scans grow, recall does not)."""
        if self.kind == "flat":
            return total > self.flat_limit
        if self.kind == "ivf":
            return _nlist_for(total) >= IVF_REGROW * self._index.nlist
        return True  # HNSW, from a run saved before IVF

    def rebuilds_at_next_add(self) -> bool:
        """Whether the next add() re-clusters (seconds at ~262k vectors): the gate runs that
        one off the event loop."""
        return self._outgrown(self.ntotal + 1)

    def _rebuild(self, incoming: np.ndarray, norms: np.ndarray, total: int) -> None:
        """Move what is stored, in order, into a new index sized for `total` vectors, trained
        on a sample spread over the stored and the `incoming` rows (the caller adds those).
        Runs on every OpenMP thread: k-means and a bulk add are matrix products."""
        held = self.vectors()
        if total <= self.flat_limit:  # only a small HNSW from an older run lands here
            index = faiss.IndexFlatIP(self.dim)
        else:
            nlist = _nlist_for(total)
            log.info("near-duplicate index: clustering %d vectors into %d cells (again after "
                     "~16x growth)", total, nlist)
            picks = _evenly_spaced(len(held) + len(incoming),
                                   min(IVF_TRAIN_CAP, IVF_POINTS_PER_CELL * nlist))
            new = picks[picks >= len(held)] - len(held)
            sample = np.concatenate([held[picks[picks < len(held)]],
                                     incoming[new] / norms[new, None]]).astype(np.float32)
            index = faiss.IndexIVFScalarQuantizer(
                faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.ScalarQuantizer.QT_fp16,
                faiss.METRIC_INNER_PRODUCT, False)  # False: code the vector, not its residual
            index.cp.niter = IVF_NITER
            index.cp.min_points_per_centroid = 1  # the sample is sized above: no warning
            index.train(sample)
            index.set_direct_map_type(faiss.DirectMap.Array)  # reconstruct(position)
            index.nprobe = min(IVF_NPROBE, nlist)
        index.add(held)
        self._index, self._probed = index, None  # swapped only once complete: a failure
        # (out of memory) leaves the old index serving

    def _append(self, rows: np.ndarray) -> None:
        probed, self._probed = self._probed, None
        if len(rows) > 1:
            self._index.add(rows)  # bulk: the OpenMP team pays off
            return
        with one_thread():  # one insertion: same reason as one search
            if probed is not None and np.array_equal(probed[0], rows):
                self._index.add_core(1, faiss.swig_ptr(rows), None, faiss.swig_ptr(probed[1]))
            else:
                self._index.add(rows)

    def _search(self, row: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "flat":
            return self._flat_search(row, k)
        with one_thread():
            if self.kind != "ivf":
                return self._index.search(row, k)
            sims, cells = self._index.quantizer.search(row, self._index.nprobe)
            self._probed = (row, np.ascontiguousarray(cells[:, :1]))  # nearest cell first
            return self._index.search_preassigned(row, k, cells, sims)

    def _flat_search(self, row: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The exact scan as one matrix-vector product over the flat index's own storage (no
        copy): 2-3x faster than FAISS's one-query scan at 2k-20k vectors (90 vs 53 us at 2k,
        1.07 vs 0.34 ms at 10k). The view is made per search: an add may move the storage."""
        n = self.ntotal
        stored = faiss.rev_swig_ptr(self._index.get_xb(), n * self.dim).reshape(n, self.dim)
        sims = stored @ row[0]
        k = min(k, n)
        top = np.array([int(np.argmax(sims))]) if k == 1 else np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top], kind="stable")]
        return sims[top][None, :], top[None, :].astype(np.int64)

    def _shaped(self, vecs: np.ndarray, *, single: bool) -> np.ndarray:
        arr = np.asarray(vecs, dtype=np.float32)
        if single and arr.shape == (self.dim,):
            arr = arr.reshape(1, self.dim)
        expected = f"({self.dim},) or (1, {self.dim})" if single else f"(n, {self.dim})"
        if arr.ndim != 2 or arr.shape[1] != self.dim or (single and arr.shape[0] != 1):
            raise ValueError(
                f"NearDupIndex: expected a vector of shape {expected}, got shape {arr.shape}; "
                f"embed with the model this index was built for (dim {self.dim})"
            )
        return arr

    @staticmethod
    def _norms(arr: np.ndarray) -> np.ndarray:
        """Row lengths, computed a block at a time (no full-size temporary at 1M rows)."""
        norms = np.concatenate([np.linalg.norm(arr[start:start + _BLOCK], axis=1)
                                for start in range(0, len(arr), _BLOCK)])
        if not np.all(np.isfinite(norms)) or np.any(norms == 0):
            raise ValueError(
                "NearDupIndex: vector is all zeros or contains NaN/inf; "
                "check the embedder output for empty or broken input text"
            )
        return norms

    def _unit_row(self, vec: np.ndarray) -> np.ndarray:
        """A C-contiguous float32 (1, dim) copy scaled to length 1."""
        arr = self._shaped(vec, single=True)
        norm = math.sqrt(float(np.dot(arr[0], arr[0])))  # one row: no blocks, no temporaries
        if not math.isfinite(norm) or norm == 0:
            self._norms(arr)  # raises the explained error
        return np.ascontiguousarray(arr / np.float32(norm), dtype=np.float32)

    def nearest(self, vec: np.ndarray) -> tuple[float, int | None]:
        """(highest cosine, its position), or (0.0, None) while the index is empty (or, past
        the flat limit, when every probed cell is empty)."""
        row = self._unit_row(vec)
        if self.ntotal == 0:
            return 0.0, None
        sims, ids = self._search(row, 1)
        if ids[0, 0] < 0:
            return 0.0, None
        return min(float(sims[0, 0]), 1.0), int(ids[0, 0])

    def neighbours_within(self, vec: np.ndarray, radius: float, limit: int) -> int:
        """How many stored vectors have cosine >= radius with `vec` (counted up to `limit`)."""
        if self.ntotal == 0 or limit <= 0:
            return 0
        sims, ids = self._search(self._unit_row(vec), min(limit, self.ntotal))
        return int(((sims[0] >= radius) & (ids[0] >= 0)).sum())

    def is_duplicate(self, vec: np.ndarray) -> tuple[bool, float]:
        max_sim, _ = self.nearest(vec)
        return self.duplicate_at(max_sim), max_sim

    def duplicate_at(self, similarity: float) -> bool:
        """Whether a nearest cosine this high makes a duplicate (float16 storage rounds)."""
        slack = _FLOAT16_SLACK if self.kind == "ivf" else _FLOAT32_SLACK
        return similarity >= self.threshold - slack

    def nearest_since(self, vec: np.ndarray, start: int) -> float:
        """Highest cosine between `vec` and the vectors stored at position `start` and after,
        by an exact scan of just those: the ones added since an earlier search covered the
        rest (0.0 when there are none)."""
        added = self.ntotal - start
        if added <= 0:
            return 0.0
        rows = self._index.reconstruct_n(start, added)
        return min(float((rows @ self._unit_row(vec)[0]).max()), 1.0)

    def add(self, vec: np.ndarray) -> int:
        """Store one vector; returns its position (0-based insertion order)."""
        row = self._unit_row(vec)
        if self._outgrown(self.ntotal + 1):
            self._rebuild(row, np.ones(1, np.float32), self.ntotal + 1)
        self._append(row)
        return self.ntotal - 1

    def vector(self, position: int) -> np.ndarray:
        return self._index.reconstruct(position)

    def vectors(self) -> np.ndarray:
        """The stored unit vectors, in insertion order (for diversity statistics)."""
        n = self.ntotal
        return self._index.reconstruct_n(0, n) if n else np.zeros((0, self.dim), np.float32)

    def add_many(self, vecs: np.ndarray) -> None:
        """Store a (n, dim) batch in order; positions continue from ntotal. All or nothing:
        a bad row is reported before any is stored."""
        arr = np.asarray(vecs)
        if arr.size == 0:
            return
        arr = self._shaped(arr, single=False)
        norms = self._norms(arr)
        total = self.ntotal + len(arr)
        if self._outgrown(total):  # sized for the whole batch, not for its first rows
            self._rebuild(arr, norms, total)
        for start in range(0, len(arr), _BLOCK):
            block = arr[start:start + _BLOCK] / norms[start:start + _BLOCK, None]
            self._append(np.ascontiguousarray(block, dtype=np.float32))

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

        ivf = isinstance(index, faiss.IndexIVFScalarQuantizer)
        kinds = (faiss.IndexFlatIP, faiss.IndexIVFScalarQuantizer,
                 faiss.IndexHNSWFlat)  # HNSW: saved by a run from before the IVF
        if not isinstance(index, kinds) or index.metric_type != faiss.METRIC_INNER_PRODUCT \
                or ivf and index.sq.qtype != faiss.ScalarQuantizer.QT_fp16:
            raise corrupt(f"it is a {type(index).__name__}, expected an inner-product "
                          "IndexFlatIP, float16 IndexIVFScalarQuantizer or IndexHNSWFlat")
        if index.d != dim:
            raise corrupt(f"index dim {index.d} disagrees with sidecar dim {dim}")
        if index.ntotal != ntotal:
            raise corrupt(f"index holds {index.ntotal} vectors but sidecar says {ntotal}")
        if ivf:
            if index.direct_map.type != faiss.DirectMap.Array:
                raise corrupt("its IVF lacks the position map vector() needs")
            index.nprobe = min(IVF_NPROBE, index.nlist)  # this version's, like the threshold

        loaded = cls(dim, threshold)
        loaded._index = index
        if loaded.kind == "hnsw":  # saved before IVF: the graph missed duplicates at 1M
            log.info("near-duplicate index %s is an HNSW graph from an older run: moving its "
                     "%d vectors to %s", path, ntotal,
                     "an IVF" if ntotal > loaded.flat_limit else "the exact scan")
            loaded._rebuild(np.zeros((0, dim), np.float32), np.ones(0, np.float32), ntotal)
        return loaded
