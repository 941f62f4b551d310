"""The diversity gate's density limit in embedding space, with the real embedder and FAISS."""

import asyncio

from engine.gate import DedupGate

BEES = ["How many workers live in a honey bee colony?",
        "How long does a worker honey bee live in summer?",
        "What is the waggle dance of honey bees for?",
        "How do honey bees turn nectar into honey?"]


def test_a_crowded_region_is_closed_while_distinct_topics_pass(tmp_path, embedder):
    async def go():
        gate = DedupGate(embedder, 0.95, tmp_path / "near.faiss", density_radius=0.45,
                         density_max=2)
        verdicts = []
        for text in BEES + ["At what temperature are coffee beans roasted?"]:
            reason, vec, _ = await gate.check(text)
            verdicts.append(reason)
            if reason is None:
                gate.commit(text, vec)
        return verdicts

    # pairwise cosines of the bee questions are 0.58-0.79: the fourth has three neighbours
    # within 0.45, one more than allowed; the coffee question has none
    assert asyncio.run(go()) == [None, None, None,
                                 "dense region (3 accepted within cosine 0.45)", None]


def test_off_by_default(tmp_path, embedder):
    async def go():
        gate = DedupGate(embedder, 0.95, tmp_path / "near.faiss")
        out = []
        for text in BEES:
            reason, vec, _ = await gate.check(text)
            out.append(reason)
            gate.commit(text, vec)
        return out

    assert asyncio.run(go()) == [None] * 4
