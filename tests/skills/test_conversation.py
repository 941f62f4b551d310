"""Conversation: hand-written cases for every validator, the skill's configuration checks, and
the turn loop with a scripted teacher over real files."""

import json
import re
import shutil
from collections import Counter

import pytest

from agents.conversation import validators as v
from agents.conversation.skill import ConversationSkill, UserMessage, turn_styles
from agents.registry import SKILLS_ROOT, load_skill
from models import ChatMessage
from tests.fakes import ScriptedTeacher
from tests.skill_harness import run_skill

SKILL = load_skill("conversation")
PASSAGE = ("Honey bees live in colonies of 20,000 to 80,000 workers with a single queen. Worker "
           "bees perform a waggle dance to tell other foragers the direction and distance of "
           "flowers. Bees make honey by evaporating nectar until its water content falls below "
           "about 18 percent.")
Q1 = "How do honey bees tell each other where the flowers are?"
A1 = ("Worker bees perform a waggle dance that tells other foragers the direction and distance "
      "of the flowers.")
Q2 = "What does the waggle dance show about the distance?"
A2 = "The dance tells foragers how far away the flowers are, as well as their direction."


# -- helpers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("a, b, same", [
    ("Why does Etna erupt?", "How does Etna erupt?", True),
    ("What does the waggle dance show?", "what does the waggle dance show", True),
    ("What does the waggle dance show?", "Why do bees evaporate nectar into honey?", False),
    (Q2, "What does the waggle dance show about the direction?", False),
    # seen from the real teacher: a follow-up that only re-spells the opening
    ("How does water vapour form clouds?", "How does water vapor form clouds?", True),
    (Q1, "How do honey bees tell one another where the flowers are?", True),
    ("Why does Etna erupt?", "Why does Fuji erupt?", False),
])
def test_near_copy(a, b, same):
    assert v.near_copy(a, b) is same


def test_subject_overlap_counts_spelling_variants_once():
    assert v.subject_overlap("water vapour clouds", "water vapor clouds") == 1.0
    assert v.subject_overlap("waggle dance distance", "waggle dance direction") == 0.5
    assert v.subject_overlap("the", "a") == 0.0


def test_copied_run_counts_the_longest_verbatim_run():
    assert v.copied_run("the waggle dance tells foragers", A1) == 2  # "waggle dance"
    assert v.copied_run("perform a waggle dance that tells", A1) == 6


def test_user_message_cut_at_its_question_mark():
    msg = UserMessage(question="Why do bees dance? Because they tell foragers where flowers are.")
    assert msg.question == "Why do bees dance?"


# -- user turns ------------------------------------------------------------------------------

@pytest.mark.parametrize("question, reason", [
    (Q1, None),
    ("Explain how bees make honey from nectar.", None),
    ("Why?", "opening question is too short"),
    ("What is this about?", "opening question has no content words"),
    ("Honey bees live in colonies.", "not a question or request"),
    ("How do penguins keep their eggs warm?", "shares no subject word with the text"),
    ("Why do bees dance dance dance " + "dance dance dance " * 5 + "?",
     "opening question: degenerate repetition"),
])
def test_opening_question(question, reason):
    got = v.check_opening(question, PASSAGE)
    assert got is None if reason is None else reason in got


@pytest.mark.parametrize("text, reason", [
    (Q2, None),
    ("I doubt that: can a dance really show distance?", None),
    ("Really true?", "follow-up 2 is too short"),
    ("What about this one?", "follow-up 2 has no content words"),
    ("Could you explain that again?", "follow-up 2 does not refer to the conversation"),
    ("What do penguins eat in winter?", "follow-up 2 does not refer to the conversation"),
    ("How do honey bees tell one another where the flowers are?",
     "follow-up 2 nearly repeats user turn 1"),
    ("Worker bees perform a waggle dance that tells other foragers",
     "follow-up 2 copies answer 1"),
])
def test_follow_up(text, reason):
    got = v.check_follow_up(text, 2, [Q1], [A1])
    assert got is None if reason is None else reason in got


def test_a_re_spelled_opening_is_not_a_follow_up():
    # the real 135M teacher's first follow-up, verbatim
    got = v.check_follow_up("How does water vapor form clouds?", 2,
                            ["How does water vapour form clouds?"],
                            ["Water vapour rises, cools and condenses into droplets that form clouds."])
    assert got == "follow-up 2 nearly repeats user turn 1"


def test_a_follow_up_is_compared_with_every_earlier_user_turn():
    got = v.check_follow_up("What does the waggle dance show about distance?", 3, [Q1, Q2], [A1, A2])
    assert "follow-up 3 nearly repeats user turn 2" in got


# -- answers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("answer, earlier, reason", [
    (A2, [A1], None),
    ("Yes.", [A1], "answer 2 only restates the question"),
    ("The waggle dance shows the distance.", [A1], "answer 2 only restates the question"),
    ("Bees measure distance with tiny internal odometers calibrated by optic flow in tunnels.",
     [A1], "answer 2 not grounded in the text"),
    ("Worker bees perform a waggle dance telling other foragers the direction and distance of "
     "flowers.", [A1], "answer 2 repeats answer 1"),
    ("the dance the dance the dance " * 5, [A1], "answer 2: degenerate repetition"),
])
def test_answer(answer, earlier, reason):
    got, support = v.check_answer(answer, 2, Q2, [PASSAGE, Q1, Q2], earlier)
    assert got is None if reason is None else reason in got
    assert 0 <= support <= 1


def test_answer_to_a_new_case_may_use_the_users_own_words():
    q = "Would a bumblebee colony in a greenhouse also need a waggle dance to find flowers?"
    a = "A greenhouse bumblebee colony has its flowers close by, so the direction and distance " \
        "that the waggle dance tells foragers would matter less."
    assert v.check_answer(a, 3, q, [PASSAGE, q], [A1, A2])[0] is None
    assert "not grounded" in v.check_answer(a, 3, q, [PASSAGE], [A1, A2])[0]


@pytest.mark.parametrize("roles, reason", [
    (["system", "user", "assistant", "user", "assistant", "user", "assistant"], None),
    (["user", "assistant", "user", "assistant", "user", "assistant"], None),
    (["system", "user", "assistant", "user", "assistant"], "has 2 user turns, needs at least 3"),
    (["system", "user", "assistant", "assistant", "user", "user"], "do not alternate"),
    (["system", "user", "assistant", "user", "assistant", "user"], "do not alternate"),
    (["system"], "do not alternate"),
])
def test_turns(roles, reason):
    got = v.check_turns(roles, 3)
    assert got is None if reason is None else reason in got


# -- configuration ---------------------------------------------------------------------------

def test_styles_cycle_over_the_turns_and_a_mix_is_shuffled_per_item():
    import random
    assert turn_styles(SKILL.spec.subcategory("clarify"), random.Random(1)) == ["clarify"] * 2
    mixed = SKILL.spec.subcategory("mixed")
    orders = {tuple(turn_styles(mixed, random.Random(s))) for s in range(20)}
    assert len(orders) > 1 and all(len(o) == 3 and len(set(o)) == 3 for o in orders)


@pytest.mark.parametrize("edit, reason", [
    (("turns = 3 }", "turns = 2 }"), "turns < 3"),
    (('styles = ["clarify"]', 'styles = ["summarise"]'), "unknown follow-up styles"),
])
def test_bad_configuration_is_refused(tmp_path, edit, reason):
    folder = tmp_path / "conversation"
    shutil.copytree(SKILLS_ROOT / "conversation", folder)
    toml = folder / "skill.toml"
    toml.write_text(toml.read_text().replace(*edit, 1))
    with pytest.raises(ValueError, match=reason):
        ConversationSkill(folder)


# -- the flow with a scripted teacher ---------------------------------------------------------

FOLLOW_UPS = ["What exactly is meant by {} and {}?", "Why does {} matter for {}, in your view?",
              "How would {} change if {} were different somewhere else?"]


def _long_words(text, skip=()):
    out = []
    for w in re.findall(r"\b[A-Za-z]{5,}\b", text):
        if w.lower() not in skip and w.lower() not in out:
            out.append(w.lower())
    return out


def conversation_teacher():
    """Valid replies for every step, except: the first follow-up written repeats the opening
    question, and the first third answer repeats the second. Records what answers were sent."""
    calls = Counter()
    answer_calls = []

    def reply(messages, schema):
        prompt = messages[-1].content
        props = (schema or {}).get("properties", {})
        if "answer" in props:
            answer_calls.append(messages)
            users = [m for m in messages if m.role == "user"]
            n = len(users)
            if n == 3:
                calls["third answer"] += 1
                if calls["third answer"] == 1:
                    return json.dumps({"answer": messages[-2].content})
            words = users[0].content.split()  # the shared text comes first
            return json.dumps({"answer": " ".join(words[12 * (n - 1): 12 * n]) + "."})
        if "question" in props and prompt.startswith("Text:"):
            calls["follow-up"] += 1
            opening = re.search(r"^User: (.+)$", prompt, re.MULTILINE).group(1)
            if calls["follow-up"] == 1:
                return json.dumps({"question": opening})
            asked = re.findall(r"^User: (.+)$", prompt, re.MULTILINE)
            last = re.findall(r"^Assistant: (.+)$", prompt, re.MULTILINE)[-1]
            fresh = _long_words(last, skip=" ".join(asked).lower().split())
            x, y = (fresh + _long_words(prompt.split('"""')[1]))[:2]
            return json.dumps({"question": FOLLOW_UPS[(len(asked) - 1) % 3].format(x, y)})
        if "question" in props:  # the opening (or its edit): about the text's first long words
            x, y = _long_words(prompt.split('"""')[1])[:2]
            verb = "What made" if "\nRewrite the question" in prompt else "How did"
            return json.dumps({"question": f"{verb} {x} and {y} come about?"})
        if "suggestions" in props:
            return json.dumps({"suggestions": ["Ask what caused it."]})
        if "text" in props:  # transformation: pass the passage on
            return json.dumps({"text": prompt.split("Passage:\n", 1)[1].split("\n\nReply")[0]})
        raise AssertionError(f"unexpected call: {prompt[:80]}")

    teacher = ScriptedTeacher(reply, slots=2)
    teacher.answer_calls = answer_calls
    return teacher


def test_flow_writes_checked_multi_turn_conversations(corpus, tmp_path):
    teacher = conversation_teacher()
    summary, data, rejected = run_skill("conversation", corpus, tmp_path / "out", teacher,
                                        num=2, flow={"refine_rounds": 1})
    assert summary["complete"] and len(data) == 2
    for rec in data:
        meta, messages = rec["metadata"], rec["messages"]
        sub = SKILL.spec.subcategory(meta["instruction_type"])
        assert meta["split"] == "follow_up" and meta["seed_in"] == "first_user_turn"
        turns = sub.params["turns"]
        assert meta["turns"] == turns >= 3
        assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * turns
        users = [m["content"] for m in messages if m["role"] == "user"]
        # the opening carries the shared text, then the (refined) opening question
        assert meta["refinement"][0]["kept"]
        assert users[0].endswith("\n\n" + meta["task"]["question"])
        assert meta["task"]["question"].startswith("What made")
        assert all(len(u) < 200 for u in users[1:])  # follow-ups do not repeat the text
        # the dedup gate sees every user question, not the shared text
        assert meta["instruction"] == "\n".join([meta["task"]["question"], *users[1:]])
        assert len(meta["follow_up_styles"]) == turns - 1
        assert set(meta["follow_up_styles"]) <= set(sub.params["styles"])
        scores = meta["validator_scores"]
        assert all(scores[f"support_{n}"] >= 0.5 for n in range(1, turns + 1))
        assert scores["min_support"] == min(scores[f"support_{n}"] for n in range(1, turns + 1))
    # the opening's instruct, suggest and edit prompts open with the same text block (prompt cache)
    for rec in data:
        text = rec["messages"][1]["content"].rsplit("\n\n", 1)[0]
        opening = [p[-1].content for p in teacher.prompts if text in p[-1].content and any(
            mark in p[-1].content for mark in ("Read the source text above",
                                               "Suggest one to three", "\nRewrite the question"))]
        assert len(opening) >= 3
        assert all(p.startswith(f'Source:\n"""\n{text}\n"""') for p in opening)
    # the teacher answered with the conversation so far as chat messages
    longest = max(teacher.answer_calls, key=len)
    assert [m.role for m in longest][:6] == ["system", "user", "assistant", "user", "assistant",
                                             "user"]
    assert longest[-1].content.rstrip().endswith('Reply in JSON: {"answer": "..."}')
    assert isinstance(longest[1], ChatMessage) and "Reply in JSON" not in longest[1].content
    got = {(r["stage"], r["reason"]) for r in rejected}
    assert ("follow_up", "follow-up 2 nearly repeats user turn 1") in got
    assert ("validate", "answer 3 repeats answer 2") in got
