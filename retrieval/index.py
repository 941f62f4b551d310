"""Cosine-similarity search over chunked documents, persisted so reruns skip re-embedding.

On-disk layout of an index folder:
  index.faiss   faiss IndexFlatIP over L2-normalized chunk embeddings (row i = chunks[i])
  chunks.jsonl  one Chunk per line, in row order
  manifest.json written last; its fingerprint says which inputs the two files above belong to
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
from pydantic import BaseModel, ConfigDict

from retrieval.chunking import Chunk, chunk_document
from retrieval.documents import SkippedFile, load_documents
from retrieval.embedder import Embedder

MANIFEST_VERSION = 1
MANIFEST_FILE = "manifest.json"
INDEX_FILE = "index.faiss"
CHUNKS_FILE = "chunks.jsonl"
EMBED_BATCH = 256  # texts per encode() call, so progress can be logged on big corpora


class Hit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    chunk: Chunk
    score: float


class CorpusIndex:
    def __init__(
        self,
        chunks: list[Chunk],
        skipped: list[SkippedFile],
        faiss_index: faiss.Index,
        embedder: Embedder,
    ) -> None:
        if faiss_index.ntotal != len(chunks):
            raise ValueError(
                f"index has {faiss_index.ntotal} vectors but {len(chunks)} chunks; rebuild it"
            )
        self.chunks = chunks
        self.skipped = skipped
        self.faiss_index = faiss_index
        self.embedder = embedder
        self._by_id = {chunk.id: chunk for chunk in chunks}

    # ---- building and loading -------------------------------------------------------------

    @classmethod
    def build_or_load(
        cls,
        input_path: Path,
        index_dir: Path,
        embedder: Embedder,
        chunk_size: int = 1200,
        overlap: int = 200,
        log: Callable[[str], None] = lambda m: None,
    ) -> CorpusIndex:
        """Index `input_path`, reusing `index_dir` when it already holds exactly this index."""
        input_path, index_dir = Path(input_path), Path(index_dir)
        docs, skipped = load_documents(input_path)
        chunks = [c for doc in docs for c in chunk_document(doc, chunk_size, overlap)]
        if not chunks:
            raise ValueError(_no_documents_message(input_path, skipped))
        fingerprint = _fingerprint(embedder, chunk_size, overlap, chunks)

        reused = _try_reuse(index_dir, fingerprint, chunks, embedder, log)
        if reused is not None:
            log(f"reusing index at {index_dir} ({len(chunks)} chunks, fingerprint {fingerprint[:12]}...)")
            return cls(chunks, skipped, reused, embedder)

        log(f"embedding {len(chunks)} chunks from {len(docs)} documents with {embedder.name}")
        vectors = np.zeros((len(chunks), embedder.dim), dtype=np.float32)
        for lo in range(0, len(chunks), EMBED_BATCH):
            batch = chunks[lo : lo + EMBED_BATCH]
            vectors[lo : lo + len(batch)] = embedder.encode([c.text for c in batch])
            if len(chunks) > EMBED_BATCH:
                log(f"embedded {lo + len(batch)}/{len(chunks)} chunks")
        faiss_index = faiss.IndexFlatIP(embedder.dim)
        faiss_index.add(vectors)

        manifest = {
            "version": MANIFEST_VERSION,
            "fingerprint": fingerprint,
            "embedder": embedder.name,
            "dim": embedder.dim,
            "chunk_size": chunk_size,
            "overlap": overlap,
            "num_chunks": len(chunks),
            "num_documents": len(docs),
            "skipped": [s.model_dump() for s in skipped],
        }
        _persist(index_dir, faiss_index, chunks, manifest)
        log(f"wrote index to {index_dir} ({len(chunks)} chunks, {len(skipped)} files skipped)")
        return cls(chunks, skipped, faiss_index, embedder)

    @classmethod
    def load(cls, index_dir: Path, embedder: Embedder) -> CorpusIndex:
        """Open a persisted index as is (no input folder needed), e.g. for the HTTP server."""
        index_dir = Path(index_dir)
        manifest = _read_manifest(index_dir)
        if manifest is None:
            raise FileNotFoundError(
                f"loading index from {index_dir}: {MANIFEST_FILE} is missing or unreadable; "
                "build the index first (a run over your input folder writes it)"
            )
        if manifest.get("embedder") != embedder.name or manifest.get("dim") != embedder.dim:
            raise ValueError(
                f"loading index from {index_dir}: it was built with embedder "
                f"{manifest.get('embedder')!r} (dim {manifest.get('dim')}), but "
                f"{embedder.name!r} (dim {embedder.dim}) is loaded; pass the same --embedder "
                "that built it, or rebuild the index"
            )
        for name in (INDEX_FILE, CHUNKS_FILE):
            if not (index_dir / name).is_file():
                raise FileNotFoundError(
                    f"loading index from {index_dir}: {name} is missing; rebuild the index"
                )
        try:
            chunks = _read_chunks(index_dir / CHUNKS_FILE)
            faiss_index = _read_faiss(index_dir / INDEX_FILE)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ValueError(
                f"loading index from {index_dir}: files are damaged ({exc}); rebuild the index"
            ) from exc
        if len(chunks) != manifest.get("num_chunks") or faiss_index.ntotal != len(chunks):
            raise ValueError(
                f"loading index from {index_dir}: manifest says {manifest.get('num_chunks')} "
                f"chunks, {CHUNKS_FILE} has {len(chunks)}, {INDEX_FILE} has "
                f"{faiss_index.ntotal} vectors; rebuild the index"
            )
        if faiss_index.d != embedder.dim:
            raise ValueError(
                f"loading index from {index_dir}: vectors have dim {faiss_index.d}, embedder "
                f"{embedder.name!r} has {embedder.dim}; rebuild the index"
            )
        skipped = [SkippedFile.model_validate(s) for s in manifest.get("skipped", [])]
        return cls(chunks, skipped, faiss_index, embedder)

    # ---- searching -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.chunks)

    def get(self, chunk_id: str) -> Chunk:
        try:
            return self._by_id[chunk_id]
        except KeyError:
            raise KeyError(f"no chunk with id {chunk_id!r} in this index") from None

    def search(self, query: str, k: int = 5) -> list[Hit]:
        return self.search_many([query], k)[0]

    def search_many(self, queries: list[str], k: int = 5) -> list[list[Hit]]:
        """Top-k chunks per query, best first; one batched embedding call for all queries."""
        k = self._depth(k)
        if not queries:
            return []
        return self._hits(self.embedder.encode(list(queries)), k)

    def _depth(self, k: int) -> int:
        if k < 1:
            raise ValueError(f"searching the index: k must be >= 1, got {k}")
        return min(k, len(self.chunks))

    def _hits(self, vectors: np.ndarray, k: int) -> list[list[Hit]]:
        scores, rows = self.faiss_index.search(vectors, k)
        results: list[list[Hit]] = []
        for row_scores, row_ids in zip(scores, rows, strict=True):
            hits = [
                Hit(chunk=self.chunks[int(i)], score=float(s))
                for s, i in zip(row_scores, row_ids, strict=True)
                if i >= 0
            ]
            hits.sort(key=lambda h: h.score, reverse=True)
            results.append(hits)
        return results

    async def asearch(self, query: str, k: int = 5) -> list[Hit]:
        # Embedding is CPU-bound torch work: off the event loop, batched with other callers'
        # (Embedder.aencode); the scan too, as a large corpus takes milliseconds.
        k = self._depth(k)
        vectors = await self.embedder.aencode([query])
        return (await asyncio.to_thread(self._hits, vectors, k))[0]


# ---- helpers -------------------------------------------------------------------------------


def _fingerprint(embedder: Embedder, chunk_size: int, overlap: int, chunks: list[Chunk]) -> str:
    h = hashlib.sha256()
    for part in (embedder.name, str(embedder.dim), str(chunk_size), str(overlap)):
        h.update(part.encode("utf-8") + b"\0")
    for chunk in chunks:  # ids already hash path, span and text
        h.update(chunk.id.encode("ascii") + b"\0")
    return h.hexdigest()


def _no_documents_message(input_path: Path, skipped: list[SkippedFile]) -> str:
    first = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:3])
    more = f"; ... {len(skipped) - 3} more" if len(skipped) > 3 else ""
    detail = f" ({len(skipped)} files skipped: {first}{more})" if skipped else " (no files found)"
    return (
        f"no usable documents under {input_path}{detail}; point the input at text, markdown, "
        "HTML, code or jsonl files"
    )


def _read_manifest(index_dir: Path) -> dict | None:
    try:
        manifest = json.loads((index_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
        return None
    return manifest


def _try_reuse(
    index_dir: Path,
    fingerprint: str,
    chunks: list[Chunk],
    embedder: Embedder,
    log: Callable[[str], None],
) -> faiss.Index | None:
    manifest = _read_manifest(index_dir)
    if manifest is None or manifest.get("fingerprint") != fingerprint:
        return None
    try:
        stored_ids = [c.id for c in _read_chunks(index_dir / CHUNKS_FILE)]
        faiss_index = _read_faiss(index_dir / INDEX_FILE)
    except (OSError, ValueError, RuntimeError) as exc:
        log(f"index at {index_dir} is unreadable ({exc}); rebuilding")
        return None
    # Belt and braces: the manifest matches, so the files should too, unless edited by hand.
    matches = (
        stored_ids == [c.id for c in chunks]
        and faiss_index.ntotal == len(chunks)
        and faiss_index.d == embedder.dim
    )
    if not matches:
        log(f"index files at {index_dir} do not match their manifest; rebuilding")
        return None
    return faiss_index


def _read_chunks(path: Path) -> list[Chunk]:
    with path.open(encoding="utf-8") as f:
        return [Chunk.model_validate_json(line) for line in f if line.strip()]


def _read_faiss(path: Path) -> faiss.Index:
    return faiss.deserialize_index(np.fromfile(path, dtype=np.uint8))


def _persist(index_dir: Path, faiss_index: faiss.Index, chunks: list[Chunk], manifest: dict) -> None:
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        # Invalidate first: if we crash below, no manifest can vouch for half-written files.
        (index_dir / MANIFEST_FILE).unlink(missing_ok=True)
        _atomic_write(index_dir / INDEX_FILE, faiss.serialize_index(faiss_index).tobytes())
        chunk_lines = "".join(c.model_dump_json() + "\n" for c in chunks)
        _atomic_write(index_dir / CHUNKS_FILE, chunk_lines.encode("utf-8"))
        manifest_text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
        _atomic_write(index_dir / MANIFEST_FILE, manifest_text.encode("utf-8"))
    except OSError as exc:
        raise OSError(
            f"writing the index to {index_dir} failed ({exc}); check that the folder is "
            "writable and the disk has space, or pass a different index folder"
        ) from exc


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
