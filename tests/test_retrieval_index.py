from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from retrieval.embedder import Embedder, default_embedder_path
from retrieval.index import CorpusIndex
from tests.test_retrieval_support import TOPIC_DOCS, shared_embedder, write_topic_corpus

QUERIES = {
    "how often should I feed my sourdough starter?": "baking.md",
    "what makes an eruption explosive?": "volcanoes.txt",
    "which chess opening starts with c5 against e4?": "chess/openings.md",
    "run coroutines concurrently with gather": "code/asyncio_notes.py",
    "how do worker bees tell each other where flowers are": "bees.html",
    "why are spring tides larger than neap tides": "tides.txt",
}


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return shared_embedder()


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    return write_topic_corpus(tmp_path / "corpus")


def test_default_embedder_path_is_a_model_folder() -> None:
    path = default_embedder_path()
    assert path.is_dir() and (path / "modules.json").is_file()


def test_embedder_returns_normalized_float32_rows(embedder: Embedder) -> None:
    vectors = embedder.encode(["a cat sat on the mat", "volcanic ash cloud", "a kitten on a rug"])
    assert vectors.shape == (3, embedder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    # Semantics, not just shape: the two cat sentences are closer than cat vs volcano.
    assert vectors[0] @ vectors[2] > vectors[0] @ vectors[1]
    assert embedder.encode([]).shape == (0, embedder.dim)
    assert embedder.name == "all-MiniLM-L6-v2" and embedder.dim == 384


def test_embedder_is_safe_from_threads(embedder: Embedder) -> None:
    texts = [f"sentence number {i} about threads" for i in range(8)]
    expected = embedder.encode(texts)
    results: list[np.ndarray] = [np.empty(0)] * 4

    def work(slot: int) -> None:
        results[slot] = embedder.encode(texts)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in results:
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_bad_embedder_path_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--embedder"):
        Embedder(tmp_path / "no-such-model")


def test_each_query_finds_its_topic_first(corpus: Path, tmp_path: Path, embedder: Embedder) -> None:
    index = CorpusIndex.build_or_load(corpus, tmp_path / "idx", embedder, chunk_size=400, overlap=50)

    assert len(index) == len(TOPIC_DOCS)  # every doc is short: one chunk each
    assert [s.path for s in index.skipped] == ["logo.png"]
    for query, expected_doc in QUERIES.items():
        assert index.search(query, k=3)[0].chunk.doc_path == expected_doc, query

    batched = index.search_many(list(QUERIES), k=2)
    assert [hits[0].chunk.doc_path for hits in batched] == list(QUERIES.values())

    everything = index.search("bees", k=100)  # k is clipped to the corpus size
    assert len(everything) == len(index)
    scores = [h.score for h in everything]
    assert scores == sorted(scores, reverse=True)

    async_hits = asyncio.run(index.asearch("honeybee queen and drones", k=1))
    assert async_hits[0].chunk.doc_path == "bees.html"

    chunk = everything[0].chunk
    assert index.get(chunk.id) == chunk
    with pytest.raises(KeyError):
        index.get("0000000000000000")
    with pytest.raises(ValueError, match="k must be"):
        index.search("bees", k=0)


def test_second_build_reuses_and_edit_triggers_rebuild(corpus: Path, tmp_path: Path, embedder: Embedder) -> None:
    index_dir = tmp_path / "idx"
    messages: list[str] = []
    CorpusIndex.build_or_load(corpus, index_dir, embedder, log=messages.append)
    assert any(m.startswith("embedding 6 chunks") for m in messages)
    manifest = json.loads((index_dir / "manifest.json").read_text())
    assert manifest["version"] == 1 and manifest["num_documents"] == 6 and manifest["num_chunks"] == 6
    assert manifest["embedder"] == "all-MiniLM-L6-v2" and manifest["dim"] == 384
    assert manifest["skipped"] == [{"path": "logo.png", "reason": "unsupported extension .png"}]
    faiss_mtime = (index_dir / "index.faiss").stat().st_mtime_ns

    messages.clear()
    CorpusIndex.build_or_load(corpus, index_dir, embedder, log=messages.append)
    assert any(m.startswith("reusing index") for m in messages)
    assert not any(m.startswith("embedding") for m in messages)
    assert (index_dir / "index.faiss").stat().st_mtime_ns == faiss_mtime

    # Same files, different chunking: a different index.
    messages.clear()
    CorpusIndex.build_or_load(corpus, index_dir, embedder, chunk_size=300, overlap=20, log=messages.append)
    assert any(m.startswith("embedding") for m in messages)

    (corpus / "chess" / "openings.md").write_text(
        "Knitting a sweater starts with a gauge swatch; cast on with wool yarn and circular needles."
    )
    messages.clear()
    rebuilt = CorpusIndex.build_or_load(corpus, index_dir, embedder, chunk_size=300, overlap=20, log=messages.append)
    assert any(m.startswith("embedding") for m in messages)
    assert rebuilt.search("which needles and yarn for knitting", k=1)[0].chunk.doc_path == "chess/openings.md"


def test_missing_manifest_forces_rebuild(corpus: Path, tmp_path: Path, embedder: Embedder) -> None:
    index_dir = tmp_path / "idx"
    CorpusIndex.build_or_load(corpus, index_dir, embedder)
    (index_dir / "manifest.json").unlink()  # as after a crash between data files and manifest
    messages: list[str] = []
    CorpusIndex.build_or_load(corpus, index_dir, embedder, log=messages.append)
    assert any(m.startswith("embedding") for m in messages)
    assert (index_dir / "manifest.json").is_file()


def test_load_serves_the_persisted_index(corpus: Path, tmp_path: Path, embedder: Embedder) -> None:
    index_dir = tmp_path / "idx"
    built = CorpusIndex.build_or_load(corpus, index_dir, embedder)

    loaded = CorpusIndex.load(index_dir, embedder)

    assert loaded.chunks == built.chunks and loaded.skipped == built.skipped
    query = "magma and lava"
    assert [(h.chunk.id, round(h.score, 5)) for h in loaded.search(query, k=3)] == [
        (h.chunk.id, round(h.score, 5)) for h in built.search(query, k=3)
    ]


def test_load_refuses_missing_or_mismatched_index(corpus: Path, tmp_path: Path, embedder: Embedder) -> None:
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        CorpusIndex.load(tmp_path / "nowhere", embedder)

    index_dir = tmp_path / "idx"
    CorpusIndex.build_or_load(corpus, index_dir, embedder)
    manifest_path = index_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "embedder": "some-other-model"}))
    with pytest.raises(ValueError, match="some-other-model"):
        CorpusIndex.load(index_dir, embedder)

    manifest_path.write_text(json.dumps(manifest))
    (index_dir / "chunks.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="chunks.jsonl"):
        CorpusIndex.load(index_dir, embedder)


def test_no_usable_documents_is_a_clear_error(tmp_path: Path, embedder: Embedder) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "empty.txt").write_text("")
    (corpus / "pic.png").write_bytes(b"\x89PNG")
    with pytest.raises(ValueError, match=r"no usable documents under .*2 files skipped: empty.txt: empty file"):
        CorpusIndex.build_or_load(corpus, tmp_path / "idx", embedder)
    assert not (tmp_path / "idx").exists()


def model_calls(embedder, monkeypatch):
    """The texts each call hands the model (the shared fixture's memory emptied first), and
    the model's own encode."""
    calls: list[list[str]] = []
    real = embedder._encode_unlocked

    def counting(texts, batch_size):
        calls.append(list(texts))
        return real(texts, batch_size)

    monkeypatch.setattr(embedder, "_encode_unlocked", counting)
    monkeypatch.setattr(embedder, "_cache", OrderedDict())
    return calls, real


def test_the_embedder_answers_recent_texts_from_memory(embedder, monkeypatch):
    """An item embeds its instruction several times (round trip, retrieval, both dedup checks):
    only texts not seen recently reach the model, in one batch, and rows keep the input order."""
    import retrieval.embedder as module

    seen, real = model_calls(embedder, monkeypatch)
    a, b, c = ("How tall is Mount Etna in Sicily?", "Who built Locomotion No. 1?",
               "What is a waggle dance for?")
    first = embedder.encode([a, b, a])
    assert seen == [[a, b]]  # the repeat inside one call is embedded once
    again = embedder.encode([b, c, a])
    assert seen == [[a, b], [c]]
    np.testing.assert_array_equal(again[0], first[1])
    np.testing.assert_array_equal(again[2], first[0])
    np.testing.assert_array_equal(first[0], first[2])
    fresh = real([c], 8)[0]  # what the model says for c on its own
    assert float(again[1] @ fresh) > 0.9999
    again[0][:] = 0  # a caller writing into its rows does not change what is remembered
    assert float(embedder.encode([b])[0] @ first[1]) > 0.9999
    # bulk work (a corpus) bypasses the memory, so it cannot evict what items reuse
    monkeypatch.setattr(module, "CACHE_TEXTS", 2)
    seen.clear()
    embedder.encode([a, b, c])
    assert seen == [[a, b, c]]


def test_embeddings_asked_for_together_share_one_forward_pass(embedder, monkeypatch):
    """aencode: calls made while one is running wait and then go to the model as one batch;
    each caller gets its own rows, a cancelled caller costs the others nothing."""
    calls, real = model_calls(embedder, monkeypatch)
    texts = [f"How many bridges cross the river number {n}?" for n in range(9)]

    async def main():
        first = asyncio.ensure_future(embedder.aencode(texts[:1]))
        while not calls:  # the first call is running; the next eight arrive meanwhile
            await asyncio.sleep(0.001)
        doomed = asyncio.ensure_future(embedder.aencode(["a question nobody waits for"]))
        rest = [asyncio.ensure_future(embedder.aencode([t, t])) for t in texts[1:]]
        await asyncio.sleep(0)
        doomed.cancel()
        return await first, await asyncio.gather(*rest)

    first, rest = asyncio.run(main())
    assert calls[0] == texts[:1] and len(calls) == 2  # one pass for the first, one for the rest
    assert calls[1] == ["a question nobody waits for"] + texts[1:]  # each text once
    solo = real(texts, 16)
    assert first.shape == (1, embedder.dim) and float(first[0] @ solo[0]) > 0.9999
    for n, rows in enumerate(rest, 1):
        assert rows.shape == (2, embedder.dim)
        assert float(rows[0] @ solo[n]) > 0.9999 and float(rows[1] @ solo[n]) > 0.9999
    # a later event loop (the next run in the same process) is served as well
    again = asyncio.run(embedder.aencode([texts[0]]))
    assert float(again[0] @ solo[0]) > 0.9999


def test_callers_released_by_a_batch_join_the_texts_already_waiting(embedder, monkeypatch):
    """When a batch returns, its callers run on before the next batch is taken: items that
    come straight back for their next text join the ones that waited meanwhile, in one forward
    pass, instead of a small batch now and another right after (the engine's workers did
    exactly that: batches of 4 and 12 in turn, where 16 together cost less)."""
    calls, _ = model_calls(embedder, monkeypatch)
    counting = embedder._encode_unlocked

    def slow_first(texts, batch_size):  # the first batch runs long enough for a late caller
        out = counting(texts, batch_size)
        if len(calls) == 1:
            time.sleep(0.3)
        return out

    monkeypatch.setattr(embedder, "_encode_unlocked", slow_first)
    first = [f"Which harbour has the deepest berth number {n}?" for n in range(3)]
    second = [f"How deep is the berth of harbour {n}?" for n in range(3)]
    late = "When was the lighthouse of the harbour built?"

    async def item(n):
        await embedder.aencode([first[n]])
        return await embedder.aencode([second[n]])  # straight back, as a worker does

    async def main():
        items = [asyncio.ensure_future(item(n)) for n in range(3)]
        while not calls:  # the first batch is running
            await asyncio.sleep(0.001)
        return await asyncio.gather(*items, embedder.aencode([late]))

    rows = asyncio.run(main())
    assert calls == [first, [late, *second]]
    assert all(r.shape == (1, embedder.dim) for r in rows)
