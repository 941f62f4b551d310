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


def test_a_heavy_commit_runs_off_the_event_loop_and_prechecks_wait_for_it(embedder, tmp_path):
    """A re-clustering commit runs in a thread: the event loop stays free (only the loop can
    release the stalled rebuild below, so a commit on the loop would hang until the timeout),
    and a precheck meanwhile waits, then sees the committed instruction."""
    import threading

    g = gate(embedder, tmp_path / "near.faiss")
    g.near = NearDupIndex(embedder.dim, 0.9, flat_limit=0)  # the next add re-clusters
    assert g.near.rebuilds_at_next_add()
    started, release = threading.Event(), threading.Event()
    rebuild = g.near._rebuild

    def stalled_rebuild(*args):
        started.set()
        assert release.wait(30), "the event loop was blocked by the commit"
        rebuild(*args)
    g.near._rebuild = stalled_rebuild

    async def main():
        text = QUESTIONS[0]
        vec = (await g.embedder.aencode([text]))[0]
        commit = asyncio.create_task(g.acommit(text, vec))
        while not started.is_set():
            await asyncio.sleep(0.01)
        pending = asyncio.create_task(g.precheck("How tall is Mount Etna in Sicily, Italy?"))
        await asyncio.sleep(0.05)
        waited = not pending.done()
        release.set()  # the loop is free: it runs this line while the commit is in its thread
        await commit
        return waited, await pending

    waited, verdict = asyncio.run(main())
    assert waited and verdict is not None and verdict[1].startswith("near duplicate")
    assert g.near.ntotal == 1 and g.exact.seen(QUESTIONS[0])


def test_acommit_saves_when_commit_would(embedder, tmp_path):
    """acommit decides 'heavy' with the same rule commit() saves by: both gates save alike."""
    vecs = embedder.encode([f"Question number {i} about honey bees and volcanoes?"
                            for i in range(60)])
    sync, async_ = gate(embedder, tmp_path / "a.faiss"), gate(embedder, tmp_path / "b.faiss")
    saves = {"a": [], "b": []}
    sync.save = lambda: saves["a"].append(sync.near.ntotal) or DedupGate.save(sync)
    async_.save = lambda: saves["b"].append(async_.near.ntotal) or DedupGate.save(async_)

    async def fill():
        for i, vec in enumerate(vecs):
            await async_.acommit(f"q{i}", vec, save_every=7)
    for i, vec in enumerate(vecs):
        sync.commit(f"q{i}", vec, save_every=7)
    asyncio.run(fill())
    assert saves["a"] == saves["b"] and len(saves["a"]) >= 8


def test_the_sinks_check_after_a_precheck_sees_what_was_committed_in_between(embedder, tmp_path):
    """A precheck that found an instruction new is remembered; the sink's check then compares
    it only with what was committed since (a paraphrase committed by another item meanwhile is
    still caught), and decides as a full check would."""
    paraphrase = ["How tall is Mount Etna in Sicily?", "What is the height of Mount Etna in Sicily?"]
    full, remembered = gate(embedder, tmp_path / "a.faiss"), gate(embedder, tmp_path / "b.faiss")
    for g in (full, remembered):
        asyncio.run(g.restore(QUESTIONS[1:4]))
    assert asyncio.run(remembered.precheck(paraphrase[1])) is None  # new at this moment
    assert paraphrase[1] in remembered._passed
    for g in (full, remembered):  # another item's instruction lands first
        reason, vec, _ = asyncio.run(g.check(paraphrase[0]))
        assert reason is None
        g.commit(paraphrase[0], vec)
    want = asyncio.run(full.check(paraphrase[1]))
    got = asyncio.run(remembered.check(paraphrase[1]))
    assert want[0] is not None and want[0].startswith("near duplicate")
    assert got[0] == want[0] and abs(got[2] - want[2]) < 1e-5
    assert paraphrase[1] not in remembered._passed  # used once
    # with nothing committed in between, the remembered verdict is the full one
    assert asyncio.run(remembered.precheck(QUESTIONS[5])) is None
    reason, vec, similarity = asyncio.run(remembered.check(QUESTIONS[5]))
    assert reason is None and vec is not None
    assert abs(similarity - remembered.near.nearest(vec)[0]) < 1e-5
