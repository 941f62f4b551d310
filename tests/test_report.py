"""The dataset card, stats.json, plots and diversity metrics written after every run."""

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from engine.report import distinct_n, diversity, mean_nearest_cosine, vendi_score
from tests.skill_harness import run_skill
from tests.test_multi_skill import mixed_teacher


def test_vendi_is_one_for_copies_and_n_for_orthogonal_items():
    same = np.tile(np.eye(4)[0], (5, 1))
    assert vendi_score(same) == pytest.approx(1.0)
    assert vendi_score(np.eye(6)) == pytest.approx(6.0)
    # n > d uses the d×d form of the same eigenvalues
    many = np.vstack([np.eye(3)] * 4)  # 12 items, 3 distinct directions
    assert vendi_score(many) == pytest.approx(3.0)


def test_distinct_n_and_nearest_neighbour():
    assert distinct_n(["a b c", "a b d"], 1) == pytest.approx(4 / 6)
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)
    assert distinct_n([], 2) == 0.0
    assert mean_nearest_cosine(np.eye(3)) == pytest.approx(0.0)
    assert mean_nearest_cosine(np.eye(3)[:1]) is None
    d = diversity(["x y", "x z"], np.eye(2))
    assert d["vendi_score"] == 2.0 and d["distinct_1"] == 0.75


def test_every_run_leaves_a_card_stats_and_valid_plots(corpus, tmp_path):
    out = tmp_path / "out"
    summary, data, rejected = run_skill("rag,mcq", corpus, out, mixed_teacher(), num=5,
                                        max_attempts=60, flow={"refine_rounds": 0})
    assert summary["complete"]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["records"] == 5 and stats["rejected"] == len(rejected)
    assert stats["records_by_skill"] == {
        s: sum(r["skill"] == s for r in data) for s in ("mcq", "rag")}
    assert sum(stats["records_by_subcategory"].values()) == 5
    # each record's content transformation, a fallback to the seed counted apart
    assert stats["records_by_transformation"] == dict(sorted(Counter(
        f"{r['skill']}/{r['metadata']['transformation']}"
        + (" (fell back to the seed)" if r["metadata"].get("transformation_fell_back") else "")
        for r in data).items()))
    assert stats["tokens"]["calls"] > 0
    # replies asked again, from the records and rejections on disk: what the run counted
    assert stats["retried_by_reason"] == summary["this_run"]["retried_by_reason"]
    div = stats["diversity"]["instructions"]
    assert summary["diversity"] == stats["diversity"]  # in the run summary too
    assert 1.0 <= div["vendi_score"] <= 5.0 and div["vendi_sample"] == 5
    assert 0 < div["distinct_2"] <= 1
    card = (out / "README.md").read_text()
    header = card.split("---\n")[1]
    assert "license:" in header and "configs:" in header and "path: data.jsonl" in header
    assert "| skill/content transformation | records |" in card
    assert "| mcq |" in card and "Vendi score" in card and "SmolLM2-135M" in card
    assert "sha256" in card and "Replies asked again instead of ending their item" in card
    # the sampler settings the requests carried, not "null" for "the default"
    assert '"sampling": {"dry_allowed_length": 4, "dry_base": 1.75' in card
    for name in ("subcategories", "rejections", "instruction_length", "embeddings"):
        png = out / "plots" / f"{name}.png"
        with Image.open(png) as img:
            img.verify()
            assert img.format == "PNG" and img.size[0] >= 300 and img.size[1] >= 150
