"""Text classification: hand-written validator cases, the per-item label enum, and the flow with a
scripted teacher over real files."""

import re

import pytest

from agents.text_classification.skill import (
    answer_model, check_chosen, check_excerpt, check_justification, check_label_set, chosen,
    excerpt_overlap)
from tests.skill_harness import run_skill, skill_teacher

SOURCE = ("Honey bees live in colonies of 20,000 to 80,000 workers with a single queen. Worker bees "
          "perform a waggle dance to tell other foragers the direction and distance of flowers.")
TEXT = "Worker bees perform a waggle dance to tell other foragers the direction of flowers."
SENTIMENT = ["positive", "negative", "neutral"]


# -- the task -----------------------------------------------------------------------------------

def test_an_excerpt_of_the_source_passes():
    assert check_excerpt("Honey bees live in colonies of 20,000 to 80,000 workers", SOURCE) is None
    assert check_excerpt("  honey BEES live in colonies of 20000 to 80000 workers ", SOURCE) is None
    assert excerpt_overlap(TEXT, SOURCE) > 0.8


@pytest.mark.parametrize("text, reason", [
    ("Honey bees live in colonies.", "text to classify is too short (5 words)"),
    ("Bees are insects that make honey and live in large hives in summer.",
     "text to classify is not an excerpt of the source (0% of it found)"),
    ("Honey bees live in colonies of many thousands of drones with several queens.",
     "text to classify is not an excerpt of the source (30% of it found)"),
])
def test_invented_or_tiny_texts_are_caught(text, reason):
    assert check_excerpt(text, SOURCE) == reason


@pytest.mark.parametrize("labels, hints", [
    (SENTIMENT, ["positive", "negative", "neutral", "mixed"]),
    (["biology", "history", "cooking", "sports", "finance"], None),
    (["in favour", "against", "no position"], ["favour", "against"]),
])
def test_good_label_sets_pass(labels, hints):
    assert check_label_set(labels, hints) is None


@pytest.mark.parametrize("labels, hints, reason", [
    (["biology", "history"], None, "label set has 2 labels, needs 3 to 8"),
    ([f"topic {i}" for i in range(9)], None, "label set has 9 labels, needs 3 to 8"),
    (["biology", "...", "cooking"], None, "label '...' is empty or a placeholder"),
    (["biology", "the history of the modern world", "cooking"], None,
     "label 'the history of the modern world' is longer than four words"),
    (["Biology", "biology ", "cooking"], None, "duplicate label 'biology'"),
    (["happy", "sad", "positive"], ["positive", "negative", "neutral", "mixed"],
     "sentiment label set has fewer than two labels like positive, negative, neutral, mixed"),
])
def test_broken_label_sets_are_caught(labels, hints, reason):
    assert check_label_set(labels, hints, "sentiment") == reason


# -- the answer ---------------------------------------------------------------------------------

@pytest.mark.parametrize("picked, multi", [(["neutral"], False), (["positive", "neutral"], True)])
def test_labels_from_the_set_pass(picked, multi):
    assert check_chosen(picked, SENTIMENT, multi) is None


@pytest.mark.parametrize("picked, multi, reason", [
    ([], False, "no label chosen"),
    (["Neutral"], False, "label 'Neutral' is not in the label set"),
    (["joyful"], True, "label 'joyful' is not in the label set"),
    (["positive", "negative"], False, "single-label task got 2 labels"),
    (["positive", "positive"], True, "duplicate label 'positive'"),
    (["positive", "negative", "neutral"], True, "multi-label answer chose every label"),
])
def test_labels_outside_the_rules_are_caught(picked, multi, reason):
    assert check_chosen(picked, SENTIMENT, multi) == reason


def test_a_one_sentence_justification_pointing_at_the_text_passes():
    assert check_justification("The text describes the waggle dance of worker bees, e.g. for "
                               "foragers.", TEXT, ["neutral"]) is None


@pytest.mark.parametrize("justification, reason", [
    ("It is neutral.", "justification is shorter than five words"),
    ("The dance is described. No feeling is shown at all.",
     "justification has 2 sentences, not one"),
    ("This label is clearly the neutral one here.", "justification does not point at the text"),
])
def test_weak_justifications_are_caught(justification, reason):
    assert check_justification(justification, TEXT, ["neutral"]) == reason


def test_answer_schema_is_an_enum_of_the_tasks_labels_but_parsing_leaves_strays_to_validators():
    single = answer_model(SENTIMENT, multi=False)
    assert single.model_json_schema()["properties"]["label"]["enum"] == SENTIMENT
    multi = answer_model(SENTIMENT, multi=True)
    prop = multi.model_json_schema()["properties"]["labels"]
    assert prop["items"]["enum"] == SENTIMENT and prop["minItems"] == 1 and prop["maxItems"] == 3
    stray = single.model_validate_json('{"justification": "The dance is described.", '
                                       '"label": "joyful"}')
    assert check_chosen(chosen(stray), SENTIMENT, False) == "label 'joyful' is not in the label set"


# -- the flow -----------------------------------------------------------------------------------

LABELS = {"sentiment": SENTIMENT, "stance": ["in favour", "against", "neutral"],
          "intent": ["inform", "request", "complain", "ask"]}
WORD = re.compile(r"\b[a-z]{5,}\b")


def test_flow_classifies_excerpts_with_labels_from_the_set(corpus, tmp_path):
    calls = {"instruct": 0, "respond": 0}

    def reply(prompt, schema):
        props = schema.get("properties", {})
        source = prompt.split('"""')[1] if '"""' in prompt else ""
        if set(props) == {"text"} and "Passage:" in prompt:  # transformations: unchanged
            return {"text": prompt.split("Passage:\n", 1)[1].rsplit("\n\nReply", 1)[0][:1500]}
        if "labels" in props and "text" in props:  # the writer (instruct and edit)
            calls["instruct"] += 1
            kind = re.search(r'type "([a-z ]+)"', prompt).group(1)
            words = " ".join(source.split())
            text = words[:220].rsplit(" ", 1)[0]
            if calls["instruct"] == 1:  # not from the source
                text = "Completely invented words about matters unrelated to anything here."
            labels = LABELS.get(kind, ["science", "history", "cooking", "sports"])
            return {"instruction": f"Classify the {kind} of this text about {WORD.findall(text)[0]}.",
                    "text": text, "labels": labels}
        if "justification" in props:  # the teacher
            calls["respond"] += 1
            words = WORD.findall(source)
            justification = f"The text speaks of {words[0]} and {words[1]} directly."
            if calls["respond"] == 2:
                justification = "It fits. The words show it."
            if "labels" in props:
                enum = props["labels"]["items"]["enum"]
                picked = ["astrology"] if calls["respond"] == 1 else enum[:2]
                return {"justification": justification, "labels": picked}
            enum = props["label"]["enum"]
            return {"justification": justification,
                    "label": "astrology" if calls["respond"] == 1 else enum[1]}
        return None

    summary, data, rejected = run_skill("text_classification", corpus, tmp_path / "out",
                                        skill_teacher(reply), num=2, flow={"refine_rounds": 1})
    assert summary["complete"] and len(data) == 2
    for rec in data:
        meta = rec["metadata"]
        assert meta["split"] == "text_classification"
        multi = meta["instruction_type"] == "multi_label"
        assert meta["multi_label"] is multi
        assert set(meta["chosen"]) <= set(meta["labels"]) == set(meta["task"]["labels"])
        assert len(meta["chosen"]) == (2 if multi else 1)
        assert meta["validator_scores"]["excerpt_overlap"] == 1.0
        assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant"]
        user, answer = rec["messages"][1]["content"], rec["messages"][2]["content"]
        assert meta["task"]["text"] in user
        assert ("Labels (choose all that apply): " if multi else "Labels (choose one): ") \
            + ", ".join(meta["labels"]) in user
        head = "Labels: " if multi else "Label: "
        assert answer.splitlines()[0] == head + ", ".join(meta["chosen"])
        assert answer.splitlines()[1].startswith("The text speaks of ")
    stages = {(r["stage"], r["reason"]) for r in rejected}
    # the invented text fails the cheap check and is written again, so its item goes on
    assert summary["this_run"]["retried_by_reason"] == {
        "instruct: text to classify is not an excerpt of the source (0% of it found)": 1}
    assert all(stage != "instruct" for stage, _ in stages)
    assert ("validate", "label 'astrology' is not in the label set") in stages
    assert ("validate", "justification has 2 sentences, not one") in stages
