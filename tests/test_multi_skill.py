"""Several skills in one run: quotas by --mix, interleaved planning, per-skill resume, and the
summary's spread report."""

import json
from collections import Counter

import pytest

from engine.cli import main
from engine.config import RunConfig
from engine.pipeline import interleave, quotas
from models import ChatMessage
from tests.fakes import rag_replies
from tests.skill_harness import run_skill, skill_teacher
from tests.test_pipeline import on_topic_questions


@pytest.mark.parametrize("num, weights, expected", [
    (10, {"a": 0.3, "b": 0.7}, {"a": 3, "b": 7}),
    (10, {"a": 1, "b": 1, "c": 1}, {"a": 4, "b": 3, "c": 3}),
    (1, {"a": 1, "b": 1}, {"a": 1, "b": 0}),
    (7, {"a": 5}, {"a": 7}),
])
def test_quotas_sum_to_num_and_follow_weights(num, weights, expected):
    got = quotas(num, weights)
    assert got == expected and sum(got.values()) == num


def numbered(name):
    return iter([f"{name}{i}" for i in range(100)])


def test_interleave_follows_quotas_and_skips_full_skills():
    plans = {n: numbered(n) for n in ("a", "b")}
    first = [x for _, x in zip(range(20), interleave(plans, {"a": 1, "b": 3}, lambda n: True))]
    counts = Counter(x[0] for x in first)
    assert counts == {"a": 5, "b": 15}
    assert first[:4].count("a0") == 1  # smooth: a is not starved to the end
    plans = {n: numbered(n) for n in ("a", "b")}
    only_b = [x for _, x in zip(range(5), interleave(plans, {"a": 1, "b": 1}, lambda n: n == "b"))]
    assert only_b == ["b0", "b1", "b2", "b3", "b4"]


def test_skill_all_and_lists_resolve_against_the_registry(tmp_path):
    cfg = RunConfig(skill="all", input=tmp_path, out=tmp_path / "o")
    assert {"rag", "mcq"} <= set(cfg.skills)
    assert RunConfig(skill="mcq, rag,mcq", input=tmp_path, out=tmp_path).skills == ["mcq", "rag"]


@pytest.mark.parametrize("argv, message", [
    (["--skill", "rag,nope"], "unknown skill 'nope'"),
    (["--skill", "rag", "--mix", "mcq=1"], "--mix names 'mcq'"),
    (["--skill", "rag,mcq", "--mix", "rag=0"], "must be positive"),
    (["--skill", "rag,mcq", "--mix", "rag:1"], "is not NAME=WEIGHT"),
    (["--skill", "rag,mcq", "--mix", "rag=x"], "is not NAME=WEIGHT"),
    (["--skill", "rag", "--unanswerable-share", "1.5"], "--unanswerable-share"),
])
def test_bad_skill_selections_are_usage_errors(argv, message, corpus, tmp_path, capsys):
    code = main([*argv, "--input", str(corpus), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def mixed_teacher():
    rag = rag_replies(on_topic_questions())

    def reply(prompt, schema):
        props = schema.get("properties", {})
        if "options" in props or "choice" in props:
            return None  # mcq: the schema filler writes distinct options and agrees with key 1
        return json.loads(rag([ChatMessage(role="user", content=prompt)], schema))
    return skill_teacher(reply, slots=3)


def test_a_mixed_run_fills_each_skills_share_and_resumes_per_skill(corpus, tmp_path):
    out = tmp_path / "out"
    summary, data, rejected = run_skill("rag,mcq", corpus, out, mixed_teacher(), num=5,
                                        mix={"rag": 2, "mcq": 3}, max_attempts=60,
                                        flow={"refine_rounds": 0})
    assert summary["complete"], summary["this_run"]["rejected_by_reason"]
    assert Counter(r["skill"] for r in data) == {"rag": 2, "mcq": 3}
    assert {r["metadata"]["split"] for r in data} == {"rag", "mcq"}
    report = summary["skills"]
    assert report["rag"]["quota"] == 2 and report["mcq"]["accepted"] == 3
    assert sum(report["mcq"]["by_subcategory"].values()) == 3
    # raising --num resumes: earlier records count towards each skill's share
    summary, data, _ = run_skill("rag,mcq", corpus, out, mixed_teacher(), num=10,
                                 mix={"rag": 2, "mcq": 3}, max_attempts=80,
                                 flow={"refine_rounds": 0})
    assert summary["complete"] and summary["resumed_from"] == 5
    assert Counter(r["skill"] for r in data) == {"rag": 4, "mcq": 6}
    assert len({r["id"] for r in data}) == 10


def test_type_caps_follow_weights_and_can_be_turned_off():
    from engine.pipeline import type_caps

    caps = type_caps({"rc": 100}, {"rc": [("a", 1.0), ("b", 1.0), ("c", 2.0)]}, 2.0)
    assert caps == {("rc", "a"): 50, ("rc", "b"): 50, ("rc", "c"): 100}
    assert type_caps({"rc": 1}, {"rc": [("a", 1.0)] * 43}, 2.0)[("rc", "a")] == 1
    assert type_caps({"rc": 100}, {"rc": [("a", 1.0)]}, 0) == {}


def test_shares_count_in_flight_items_against_a_types_cap():
    from engine.pipeline import Shares

    shares = Shares(quota={"rc": 10}, caps={("rc", "a"): 2})
    key = ("rc", "a")
    assert shares.type_open(key) and shares.full(key) is None
    shares.in_flight[key] = 1
    shares.by_type[key] = 1
    assert not shares.type_open(key)  # one written + one in flight = the cap
    assert shares.full(key) is None  # the one in flight may still be kept
    shares.by_type[key] = 2
    assert shares.full(key) == "subcategory share reached (2 records)"
    shares.by_skill["rc"] = 10
    assert shares.full(("rc", "b")) == "skill quota reached" and shares.done


@pytest.mark.parametrize("value, ok", [(0, True), (1, True), (2.5, True), (0.5, False)])
def test_max_type_share_is_off_or_at_least_one(tmp_path, value, ok):
    from pydantic import ValidationError

    make = lambda: RunConfig(skill="rag", input=tmp_path, out=tmp_path, max_type_share=value)
    if ok:
        assert make().max_type_share == value
    else:
        with pytest.raises(ValidationError, match="at least 1"):
            make()


def test_a_subcategory_that_keeps_failing_backs_off_and_warms_up_on_acceptance():
    from engine.pipeline import COLD_AFTER, COLD_MAX_GAP, Shares

    shares = Shares(quota={"rc": 10}, types={"rc": ["a", "b"]})
    key = ("rc", "a")
    for _ in range(COLD_AFTER - 1):
        shares.settle(key, accepted=False, stage="validate")
    shares.last_attempt[key] = 100
    assert not shares.cold(key, 100)  # four failures: still dealt as usual
    shares.settle(key, accepted=False, stage="quota")  # a full share is not the type's fault
    assert not shares.cold(key, 100)
    shares.settle(key, accepted=False, stage="validate")
    assert shares.cold(key, 101) and not shares.cold(key, 102)  # waits for 2 attempts
    for _ in range(10):
        shares.settle(key, accepted=False, stage="instruct")
    assert shares.cold(key, 100 + COLD_MAX_GAP - 1) and not shares.cold(key, 100 + COLD_MAX_GAP)
    for _ in range(COLD_AFTER):  # "b" fails as often: nothing works, so nothing is held back
        shares.settle(("rc", "b"), accepted=False, stage="validate")
    assert not shares.cold(key, 101) and not shares.warm_left("rc")
    shares.settle(("rc", "b"), accepted=True, stage="")
    assert shares.cold(key, 101)
    shares.settle(key, accepted=True, stage="")
    assert not shares.cold(key, 101)


def test_a_type_the_teacher_cannot_do_does_not_eat_the_attempt_budget(corpus, tmp_path):
    """mcq with one question type whose every task is rejected at once: the run still fills its
    quota from the others, and the dead type gets far fewer than its even share of attempts."""
    from agents.registry import load_skill

    types = [s.name for s in load_skill("mcq").spec.taxonomy]
    dead = types[0]

    def reply(prompt, schema):
        if f'\nWrite ONE multiple-choice question of type "{dead.replace("_", " ")}"' in prompt:
            return {k: "x" for k in schema.get("properties", {})}  # too short: fails its schema
        return None

    summary, data, rejected = run_skill("mcq", corpus, tmp_path / "out", skill_teacher(reply),
                                        num=40, max_attempts=400, flow={"refine_rounds": 0})
    per_type = Counter(r["subcategory"] for r in rejected)
    attempts = len(data) + len(rejected)
    assert summary["complete"] and len(data) == 40 and dead not in {r["subcategory"] for r in data}
    assert per_type[dead] < attempts / len(types), (per_type, attempts)
