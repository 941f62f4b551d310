"""MCQ: hand-written validator cases, and the flow with a scripted teacher over real files."""

import pytest

from agents.mcq.skill import Mcq, check_agreement, check_negative_form, check_options, \
    check_stem
from tests.skill_harness import run_skill, skill_teacher

GOOD = Mcq(question="Which volcano erupted in 1815 and caused the year without a summer?",
           options=["Mount Tambora", "Mount Etna", "Mauna Loa", "Mount Fuji"], correct=1)


def test_distinct_options_with_a_key_in_range_pass():
    assert check_options(GOOD) is None


@pytest.mark.parametrize("change, reason", [
    ({"correct": 5}, "is not one of the 4 options"),
    ({"options": ["Mount Etna", "mount etna.", "Mauna Loa", "Mount Fuji"]}, "same"),
    ({"options": ["Mount Tambora", "Mount Etna", "Mauna Loa", "None of the above"]}, "other options"),
    ({"options": ["Mount Tambora", "Mount Etna", "Mauna Loa", "the"]}, "empty"),
])
def test_broken_options_are_caught(change, reason):
    assert reason in check_options(GOOD.model_copy(update=change))


def test_all_except_questions_must_say_except_or_not():
    assert check_negative_form(GOOD, "negative") is not None
    q = GOOD.model_copy(update={"question": "All of these are volcanoes EXCEPT which one?"})
    assert check_negative_form(q, "negative") is None
    assert check_negative_form(GOOD, "any") is None


@pytest.mark.parametrize("stem", [
    GOOD.question, "All of the following are volcanoes EXCEPT:",
    "All of the following erupted in the 19th century EXCEPT", "Which of these is a volcano",
    "Select the volcano that erupted in 1815.", "1. What is the version of the package?"])
def test_a_stem_that_asks_passes(stem):
    assert check_stem(stem) is None


@pytest.mark.parametrize("stem", [
    # kept by a 60-item run before this check (bench/RESULTS.md, session 19)
    "facts and definitions,", "The system can be configured to check for systemd checks.",
    "1. What is the purpose of IPTABLES-translate and IPTV",
    "The most recent answer is: 14.2. Firewall /Buffer/Packet Filtering"])
def test_a_statement_or_fragment_is_not_a_stem(stem):
    assert check_stem(stem) == "not a question or request"


def test_teacher_must_agree_with_the_key():
    assert check_agreement(GOOD, 1) is None
    assert "chose option 2" in check_agreement(GOOD, 2)


def test_flow_keeps_agreeing_items_and_explains_disagreements(corpus, tmp_path):
    def reply(prompt, schema):
        props = schema.get("properties", {})
        if "options" in props:  # the writer: distinct options, key 2; NOT for all_except
            head = prompt.split("\nWrite ONE", 1)[1].split("\n", 1)[0]
            word = "NOT" if "EXCEPT" in head else "mainly"
            topic = prompt.split('"""')[1].split()[:6]
            return {"question": f"Which statement is {word} true about {' '.join(topic)}?",
                    "options": [f"{topic[0]} variant {i}" for i in range(4)], "correct": 2}
        if "choice" in props:  # the teacher: right on odd calls, wrong on even
            reply.calls += 1
            return {"reasoning": "The source states it plainly.",
                    "choice": 2 if reply.calls % 2 else 3}
        return None
    reply.calls = 0

    summary, data, rejected = run_skill("mcq", corpus, tmp_path / "out",
                                        skill_teacher(reply), num=2,
                                        flow={"refine_rounds": 0})
    assert summary["complete"] and len(data) == 2
    for rec in data:
        assert rec["metadata"]["split"] == "mcq" and rec["metadata"]["answer_key"] == "B"
        assert "B) " in rec["messages"][1]["content"] and "Answer: B)" in rec["messages"][-1]["content"]
    assert any("teacher chose option 3" in r["reason"] for r in rejected)
