"""The dedup gate's persistence: sparse saves, and a resume that embeds only what the saved
index lacks (real embedder, real FAISS files)."""

import asyncio

import numpy as np

from dedup import NearDupIndex
from engine.gate import DedupGate

QUESTIONS = [
    "How tall is Mount Etna in Sicily?", "What caused the year without a summer in 1816?",
    "How many workers live in a honey bee colony?", "When did the Stockton and Darlington "
    "Railway open?", "Which share of world coffee production is Arabica?",
    "What kind of lava builds shield volcanoes?",
]


class Counting:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, embedder):
        self.inner, self.dim, self.texts = embedder, embedder.dim, []

    def encode(self, texts):
        self.texts += list(texts)
        return self.inner.encode(texts)

    async def aencode(self, texts):
        return self.encode(texts)


def gate(embedder, path):
    return DedupGate(Counting(embedder), 0.9, path)


def unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_resume_embeds_only_the_records_after_the_last_save(embedder, tmp_path):
    path = tmp_path / "near.faiss"
    first = gate(embedder, path)
    asyncio.run(first.restore(QUESTIONS[:4]))  # a save of the first four records
    later = gate(embedder, path)
    asyncio.run(later.restore(QUESTIONS))
    # the last saved instruction (to check the pairing) and the two records after it
    assert later.embedder.texts == [QUESTIONS[3], *QUESTIONS[4:]]
    assert later.near.ntotal == 6
    assert np.allclose(later.near.vectors(), unit(embedder.encode(QUESTIONS)), atol=1e-5)
    assert NearDupIndex.load(path, 0.9).ntotal == 6  # caught up and saved


def test_an_index_that_is_not_data_jsonls_prefix_is_rebuilt(embedder, tmp_path):
    path = tmp_path / "near.faiss"
    asyncio.run(gate(embedder, path).restore(QUESTIONS[2:5]))  # other records, same count
    other = gate(embedder, path)
    asyncio.run(other.restore(QUESTIONS[:3]))
    assert other.embedder.texts[-3:] == QUESTIONS[:3]  # rebuilt from data.jsonl
    assert np.allclose(other.near.vectors(), unit(embedder.encode(QUESTIONS[:3])), atol=1e-5)

    asyncio.run(gate(embedder, path).restore(QUESTIONS))  # more vectors than records
    shorter = gate(embedder, path)
    asyncio.run(shorter.restore(QUESTIONS[:2]))
    assert shorter.near.ntotal == 2 and shorter.embedder.texts == QUESTIONS[:2]


def test_saves_grow_sparse_as_the_index_grows(embedder, tmp_path):
    path = tmp_path / "near.faiss"
    g = gate(embedder, path)
    rng = np.random.default_rng(1)
    g.near.add_many(rng.normal(size=(2000, g.near.dim)))
    g.save()
    for i in range(99):  # 5% of 2,000 = 100 commits between saves
        g.commit(f"question {i}", rng.normal(size=g.near.dim))
    assert NearDupIndex.load(path, 0.9).ntotal == 2000
    g.commit("question 99", rng.normal(size=g.near.dim))
    assert NearDupIndex.load(path, 0.9).ntotal == 2100
