"""Reading comprehension: the taxonomy as data, hand-written validator cases, every question type
and transformation through the real flow (scripted teacher, real embedder and FAISS), passage
edits in refinement, and a full engine run with rejections."""

import asyncio
import json
import random
import re
import shutil
from pathlib import Path

import pytest

from agents.fields import line_pattern
from agents.flow import FlowContext, FlowSettings
from agents.items import Rejected, WorkItem
from agents.rag.validators import STOPWORDS
from agents.reading_comprehension import validators as v
from agents.reading_comprehension.skill import ReadingComprehensionSkill, eligible_goals, \
    goal_kind
from agents.registry import load_skill
from tests.conftest import TOPICS
from tests.skill_harness import run_skill, skill_teacher

SKILL = load_skill("reading_comprehension")
SPEC = SKILL.spec
TYPES = {s.name: s for s in SPEC.taxonomy}

BEES = TOPICS["bees.txt"]
ETNA = ("Mount Etna in Sicily rises about 3,357 metres and is one of the most active volcanoes in "
        "the world. Its eruptions have buried villages on its slopes, yet farmers return because "
        "the volcanic soil is rich. Therefore the town council argues that new houses should be "
        "built closer to the crater.")


# -- the taxonomy as data ---------------------------------------------------------------------

PAPER_TYPES = ["literal_short_answer", "literal_list", "numerical_discrete_reasoning",
               "critical_true_false", "evaluative_essay", "vocabulary_fill_in_the_blank",
               "relationship_matching", "event_ordering", "strengthen", "weaken",
               "necessary_assumption", "flaw", "must_be_true", "identify_the_principle",
               "method_of_reasoning"]
CLASSIC_TYPES = ["main_idea", "authors_purpose", "tone_and_attitude", "supporting_detail",
                 "sequence_of_steps", "cause_and_effect", "compare_and_contrast",
                 "vocabulary_in_context", "paraphrase", "summary", "title_choice", "inference",
                 "fact_or_opinion"]


def test_taxonomy_has_43_types_from_literal_to_critical():
    assert len(SPEC.taxonomy) == 43 and SPEC.split == "rc"
    assert set(PAPER_TYPES + CLASSIC_TYPES) <= set(TYPES)
    levels = {s.params["level"] for s in SPEC.taxonomy}
    assert levels == {"literal", "inferential", "critical"}
    for name in ["strengthen", "weaken", "necessary_assumption", "flaw", "identify_the_principle",
                 "method_of_reasoning", "must_be_true"]:
        assert TYPES[name].expects == "choice"
    assert TYPES["critical_true_false"].params["labels"] == ["True", "False"]


def test_unanswerable_types_are_marked_and_refuse():
    no = [s for s in SPEC.taxonomy if not s.answerable]
    assert len(no) >= 2 and all(s.expects == "refusal" for s in no)
    assert all(s.answerable for s in SPEC.taxonomy if s.expects != "refusal")


def test_nine_transformation_agents_each_with_its_template():
    names = {t.name for t in SPEC.transformations}
    assert names == {"identity", "argument_passage", "debate_transcript", "conversation",
                     "meeting_transcript", "poem", "satirical_text", "instructional_text",
                     "long_text"}
    for t in SPEC.transformations:
        if t.name == "identity":
            assert t.template is None
        else:
            prompt = SKILL.render(t.template, passage="PASSAGE BODY")
            assert '"""\nPASSAGE BODY\n"""' in prompt
            assert prompt.endswith('Reply in JSON: {"text": "..."}')


def test_refinement_goals_include_the_papers_three():
    kinds = [goal_kind(g) for g in SPEC.refinement_goals]
    assert "remove" in kinds and "change" in kinds
    assert any("options more complex" in g for g in SPEC.refinement_goals)


def test_passage_goals_only_where_the_answer_follows_the_edit():
    goals = SPEC.refinement_goals
    assert eligible_goals(goals, TYPES["literal_short_answer"]) == goals
    for name in ["strengthen", "critical_true_false", "vocabulary_fill_in_the_blank",
                 "unanswerable_detail"]:
        assert {goal_kind(g) for g in eligible_goals(goals, TYPES[name])} == {"task"}


def _schemas():
    for sub in SPEC.taxonomy:
        yield sub.name, SKILL.task_schema(sub).model_json_schema()


@pytest.mark.parametrize("name, schema", list(_schemas()))
def test_task_schemas_are_bounded_and_their_only_patterns_are_lines(name, schema):
    # a pattern is the string's whole grammar in llama.cpp: one that admitted a bare quote
    # would let the decoder write unparsable JSON (agents/fields.py)
    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "string" and "enum" not in node:
                assert "maxLength" in node, (name, node)
                if "pattern" in node:
                    assert node["pattern"] == line_pattern(node["minLength"], node["maxLength"])
            if node.get("type") == "array":
                assert "maxItems" in node, (name, node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(schema)


def _broken_skill(tmp_path: Path, old: str, new: str) -> Path:
    folder = tmp_path / "reading_comprehension"
    shutil.copytree(Path(SKILL.folder), folder)
    toml = folder / "skill.toml"
    assert old in toml.read_text()
    toml.write_text(toml.read_text().replace(old, new, 1))
    return folder


@pytest.mark.parametrize("old, new, reason", [
    ('expects = "short"', 'expects = "shrot"', "is not one of"),
    ('level = "literal", min_support = 0.6, max_words = 30',
     'level = "literal", min_suport = 0.6', "bad params"),
    ('labels = ["True", "False"]', 'quotes_passage = true', "params.labels goes"),
    ('answerable = false\nexpects = "refusal"', 'answerable = false\nexpects = "short"',
     "refusal"),
])
def test_a_broken_type_definition_fails_at_load_naming_the_type(tmp_path, old, new, reason):
    with pytest.raises(ValueError, match=reason):
        ReadingComprehensionSkill(_broken_skill(tmp_path, old, new))


# -- transformation checks --------------------------------------------------------------------

GOOD_TRANSFORMS = {
    "debate_transcript": "Ana: Honey colonies need their queen, since workers die after six "
    "weeks.\nBen: Yet drones mate with a queen elsewhere, so colonies mix.\nAna: Foragers share "
    "flower distance through the waggle dance.",
    "conversation": "Mia: Did you know worker bees dance?\nLeo: Really? Why?\nMia: The waggle "
    "dance tells foragers the direction of flowers, and honey comes from nectar.",
    "meeting_transcript": "Chair (Dana): Let us review the colony report.\nRavi: Colonies hold "
    "20,000 to 80,000 workers.\nDana: And the queen lives three to five years.",
    "poem": "A queen within the hive,\nsix summer weeks the workers thrive,\nthey dance to "
    "flowers far away,\nand nectar turns to honey gold.",
    "instructional_text": "1. Find the queen among the colony's workers.\n2. Watch the "
    "waggle dance to learn where flowers are.\n3. Evaporate nectar until water falls below 18 "
    "percent.",
    "argument_passage": "Because worker bees live only six weeks while the queen lives for "
    "years, the colony must depend on the queen and not on any worker.",
    "satirical_text": "Behold the drone, the colony's finest gentleman of leisure, whose sole "
    "task is to mate with a queen, while 80,000 worker bees dance and evaporate nectar for him.",
    "long_text": BEES + " Beekeepers in ancient Egypt moved hives along the Nile on rafts, and "
    "medieval monasteries traded beeswax candles. Pesticides and parasitic mites now threaten "
    "colonies across farmland.",
}


@pytest.mark.parametrize("name", sorted(GOOD_TRANSFORMS))
def test_a_good_transformation_passes(name):
    assert v.check_transformed(name, BEES, GOOD_TRANSFORMS[name]) is None


@pytest.mark.parametrize("name, text, reason", [
    ("satirical_text", "The weather in Paris was lovely and the museums were open late, with "
     "long queues of tourists outside.", "of the seed's words"),
    ("satirical_text", BEES, "copies the seed"),
    ("debate_transcript", "Ana: Bees live in colonies with a queen and workers.\nAna: Worker "
     "bees dance to tell foragers about flowers and nectar.", "two named speakers"),
    ("conversation", "Honey bees live in colonies, a single queen leads workers who dance "
     "about flowers, and nectar becomes honey.", "two named speakers"),
    ("poem", "Honey bees in colonies of workers, a single queen,\nthe worker bees dance for "
     "flowers, nectar and honey, drones mate.", "has 2 lines, needs at least 4"),
    ("poem", "Honey bees live in colonies of many thousands of workers with a single queen "
     "who rules.\nWorker bees perform a waggle dance to tell other foragers the direction of "
     "flowers.\nA worker lives about six weeks in summer while the queen can live for years "
     "and years.\nBees make honey by evaporating nectar until its water content falls very "
     "low.", "run on like prose"),
    ("instructional_text", "Honey bees live in colonies; the queen and worker bees dance and "
     "evaporate nectar from flowers.", "numbered or bulleted steps"),
    ("argument_passage", "Honey bees live in colonies. A queen leads worker bees. Workers "
     "dance about flowers and nectar.", "needs a reason and a conclusion"),
    ("argument_passage", "Honey bees live in colonies, so a queen leads worker bees. Workers "
     "dance about flowers and nectar.", "needs a reason and a conclusion"),
    ("long_text", "Honey bees live in colonies of workers with a single queen, and worker "
     "bees dance for flowers and nectar.", "drops most of the seed"),
    ("long_text", BEES.replace("Honey bees", "Bees") + " Bees matter a great deal.",
     "new words"),
])
def test_a_bad_transformation_is_caught(name, text, reason):
    assert reason in v.check_transformed(name, BEES, text)


# -- passage edits ----------------------------------------------------------------------------

def test_locate_and_apply_edit_ignore_whitespace_differences():
    passage = "First line here.\nSecond   line about bees.\nThird line."
    assert v.locate(passage, "Second line about bees.") is not None
    assert v.locate(passage, "Fourth line") is None
    assert v.apply_edit(passage, "Second line about bees.", "") == \
        "First line here.\n\nThird line."
    assert v.apply_edit(passage, "about bees", "about wasps").splitlines()[1] == \
        "Second line about wasps."


Q_WORKERS = "How many workers live in a honey bee colony?"


@pytest.mark.parametrize("kind, find, replace", [
    ("remove", "Honey bees live in colonies of 20,000 to 80,000 workers with a single queen.",
     ""),
    ("change", "20,000 to 80,000 workers", "5,000 to 9,000 workers"),
])
def test_a_sound_passage_edit_passes(kind, find, replace):
    assert v.check_passage_edit(kind, BEES, Q_WORKERS, find, replace) is None


@pytest.mark.parametrize("kind, find, replace, reason", [
    ("remove", "Honey bees live in colonies of 30,000 workers.", "", "not in the passage"),
    ("remove", "Honey bees live in colonies of 20,000 to 80,000 workers with a single queen.",
     "Bees are insects.", "removal adds text"),
    ("remove", "Honey bees", "", "too short"),
    ("remove", "Worker bees perform a waggle dance to tell other foragers the direction and "
     "distance of flowers.", "", "not about what the question asks"),
    ("remove", BEES.split(" Drones")[0], "", "most of the passage"),
    ("change", "20,000 to 80,000 workers", "", "deletes instead of changing"),
    ("change", "20,000 to 80,000 workers", "20,000  to 80,000 workers!", "changes nothing"),
    ("change", "20,000 to 80,000 workers", "20,000 workers", "adds no new fact"),
])
def test_a_bad_passage_edit_is_caught(kind, find, replace, reason):
    assert reason in v.check_passage_edit(kind, BEES, Q_WORKERS, find, replace)


@pytest.mark.parametrize("answer, reason", [
    ("A colony holds 5,000 to 9,000 workers.", None),
    ("A colony holds 20,000 to 80,000 workers.", "answer does not reflect the edited passage"),
])
def test_the_answer_must_reflect_a_changed_passage(answer, reason):
    assert v.check_reflects_edit(answer, "20,000 to 80,000 workers",
                                 "5,000 to 9,000 workers") == reason


# -- question checks --------------------------------------------------------------------------

@pytest.mark.parametrize("question, expects", [
    ("How long does a worker bee live in summer?", "short"),
    ("List the tasks that worker bees perform in the colony.", "list"),
    ("Coffee plants grow best at ___ between 1,000 and 2,000 metres.", "blank"),
    ("True or false: the queen bee lives about six weeks.", "verdict"),
    ("Which option most weakens the council's plan to build near Etna's crater?", "choice"),
])
def test_a_well_formed_question_passes(question, expects):
    assert v.check_question(question, expects) is None


@pytest.mark.parametrize("question, expects, reason", [
    ("Why bees?", "short", "too short"),
    ("What does the passage say about this?", "free", "names no subject"),
    ("When do bees swarm? Where do they go?", "short", "more than one question"),
    ("Which bee lives longest: A) the queen B) a drone C) a worker?", "short",
     "options of its own"),
    ("Honey bees and their waggle dance", "free", "not a question or request"),
])
def test_a_malformed_question_is_caught(question, expects, reason):
    assert reason in v.check_question(question, expects)


def test_fill_in_the_blank_needs_exactly_one_blank():
    assert v.check_blank("Worker bees perform a ___ dance.") is None
    assert "no blank" in v.check_blank("Worker bees perform a waggle dance.")
    assert "2 blanks" in v.check_blank("Worker ___ perform a ___ dance.")


@pytest.mark.parametrize("question, reason", [
    ('What does "waggle dance" mean as it is used about bees?', None),
    ("What does \u201cevaporating nectar\u201d mean for honey making?", None),
    ("What does waggle dance mean for bees?", "question quotes no words from the passage"),
    ('What does "sting the intruder" mean for bees?', "quoted words are not in the passage"),
])
def test_quoting_types_must_quote_the_passage(question, reason):
    assert v.check_quoted(question, BEES) == reason


def test_verdict_questions_must_offer_both_labels():
    assert v.check_labels_named("True or false: drones mate with queens.", ["True", "False"]) \
        is None
    assert v.check_labels_named('Is "bees dance" a fact or an opinion?', ["Fact", "Opinion"]) \
        is None
    assert "True or False" in v.check_labels_named("Is it right that drones mate with queens?",
                                                   ["True", "False"])


# -- answer checks ----------------------------------------------------------------------------

REFUSE = "unanswerable answer does not say the passage lacks the information"


@pytest.mark.parametrize("answer, reason", [
    ("The passage does not say how many drones a colony has.", None),
    ("No information about the hive's location is given.", None),
    ("It isn't mentioned in the text.", None),
    ("A colony has about 300 drones.", REFUSE),
    ("No, drones are male bees.", REFUSE),
])
def test_unanswerable_answers_must_refuse(answer, reason):
    assert v.check_refuses(answer) == reason


@pytest.mark.parametrize("answer, expects, params, reason", [
    ("True. The passage says so.", "verdict", {"labels": ("True", "False")}, None),
    ("Yes, the passage says so.", "verdict", {"labels": ("True", "False")},
     "does not start with True or False"),
    ("Opinion: it judges the plan.", "verdict", {"labels": ("Fact", "Opinion")}, None),
    ("About 18 percent.", "number", {}, None),
    ("Three to five years.", "number", {}, None),
    ("Most of the water.", "number", {}, "contains no number"),
    ("Six weeks in summer.", "short", {"max_words": 3}, "runs to 4 words, at most 3"),
    ("Bees dance.", "essay", {"min_words": 5}, "has 2 words, needs at least 5"),
    ("Bees dance to share where flowers are.", "essay", {"min_words": 5}, None),
])
def test_answer_form_per_expects(answer, expects, params, reason):
    got = v.check_form(answer, expects, params)
    assert got == reason if reason is None else reason in got


@pytest.mark.parametrize("items, reason", [
    (["queen", "workers", "drones"], None),
    (["queen"], "lists 1 item(s), needs at least 2"),
    (["queen", "the"], "empty of content"),
    (["the queen", "The  Queen!"], "same item twice"),
])
def test_list_answers(items, reason):
    got = v.check_items(items, 2)
    assert got == reason if reason is None else reason in got


@pytest.mark.parametrize("pairs, reason", [
    ([("queen", "three to five years"), ("worker", "six weeks")], None),
    ([("queen", "three to five years")], "matches 1 pair(s)"),
    ([("queen", "years"), ("queen", "six weeks")], "same item twice"),
    ([("queen", "queen"), ("worker", "six weeks")], "with itself"),
    ([("queen", "the"), ("worker", "six weeks")], "empty of content"),
])
def test_matching_answers(pairs, reason):
    got = v.check_pairs(pairs, 2)
    assert got == reason if reason is None else reason in got


BLANK_Q = "Fill in the blank: Worker bees perform a ___ dance to tell other foragers."


@pytest.mark.parametrize("answer, reason", [
    ("waggle", None),
    ("", "empty"),
    ("a waggle dance to tell other foragers", "at most 4"),
    ("foragers", "already appears in the question"),
    ("happy", "does not match the passage's wording"),
])
def test_fill_in_the_blank_answers(answer, reason):
    got = v.check_blank_answer(BLANK_Q, answer, BEES, 4)
    assert got == reason if reason is None else reason in got


@pytest.mark.parametrize("calculation, answer, reason", [
    ("80,000 - 20,000", "60,000 workers", None),
    ("80000 / 20000", "The largest colony is 4 times the smallest.", None),
    ("5 \u2212 3", "2 years longer", None),  # operands spelled out: "three to five years"
    ("18", "Below about 18 percent.", None),
    ("80,000 / 3", "About 26,667 workers.", None),  # rounded
    ("80,000 \u00d7 2", "160,000", "calculation uses 2, which the passage does not give"),
    ("80,000 - 20,000", "About 50,000 workers.", "answer does not state the calculated 60000"),
    ("80,000 / (20,000 - 20,000)", "none", "calculation does not evaluate: division by zero"),
    ("import os", "1", "calculation does not evaluate: syntax error"),
])
def test_numerical_answers_show_their_arithmetic(calculation, answer, reason):
    got = v.check_calculation(calculation, answer, BEES)
    assert got == reason if reason is None else got.startswith(reason)


def test_numbers_are_read_with_thousands_commas_and_from_words():
    assert v.numbers_in("between 1,000 and 2,000 metres, 3.5 km") == [1000.0, 2000.0, 3.5]
    assert v.numbers_in("three to five years, twice as much", words=True) == [3, 5, 2]
    assert v.evaluate("3 x (2 + 1) =") == 9.0


def test_grounding_and_verdict_agreement():
    assert v.check_grounding(0.7, 0.6) is None
    assert "support 0.40 < 0.60" in v.check_grounding(0.4, 0.6)
    assert v.check_verdict("True", "True") is None
    assert v.check_verdict("True", "False") == "teacher judged False, the key says True"


# -- every type and every transformation through the real flow ---------------------------------

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{2,}")


def passage_of(prompt: str) -> str:
    return prompt.split('"""')[1].strip()


def content(passage: str) -> list[str]:
    seen: list[str] = []
    for w in _WORD.findall(passage):
        if w.lower() not in STOPWORDS and w.lower() not in {x.lower() for x in seen}:
            seen.append(w)
    return seen


def first_sentence(passage: str) -> str:
    sentences = re.split(r"(?<=[.!?])\s+", passage)
    return next((s for s in sentences if len(s.split()) >= 8),
                max(sentences, key=lambda s: len(s.split())))


def quote_of(passage: str) -> str:
    return " ".join(first_sentence(passage).split()[1:5]).strip(".,;:")


class GoodTeacher:
    """Valid replies for every step of every type, made from the passage in the prompt; the
    question for each type reads as a question of that type."""

    def __init__(self):
        self.blanks: dict[str, str] = {}
        self.calls: list[str] = []
        self.texts: list[str] = []  # the transformations it wrote

    def question(self, sub, passage: str) -> dict:
        w = content(passage)
        labels = sub.params.get("labels")
        quote = quote_of(passage)
        if sub.expects == "blank":
            sentence = first_sentence(passage)
            word = next(x for x in _WORD.findall(sentence)[2:] if len(x) > 4
                        and x.lower() not in STOPWORDS)
            q = "Fill in the blank: " + re.sub(rf"\b{word}\b", "___", sentence, count=1)
            self.blanks[q] = word
            return {"question": q}
        if labels:
            return {"question": f'{labels[0]} or {labels[1]}: "{quote}"', "key": labels[0]}
        # a type that `asks` for its marker word gets the one its demonstration uses
        marker = re.search(sub.asks, SPEC.demonstrations.questions[sub.name].question,
                           re.IGNORECASE).group(0) if sub.asks else None
        about = f" ({marker.lower()})" if marker else ""
        if sub.params.get("quotes_passage"):
            q = f'What does "{quote}" convey in the account of {w[0]}{about}?'
        else:
            q = f"What does the account say about {w[0]} and {w[2]}{about}?"
        if sub.expects == "choice":
            options = [" ".join(w[3 * i:3 * i + 3]) for i in range(4)]
            return {"question": q, "options": options, "correct": 1}
        return {"question": q}

    def __call__(self, prompt: str, schema: dict) -> dict | None:
        props = schema.get("properties", {})
        head = prompt.split("\n", 1)[0]
        passage = passage_of(prompt)
        w = content(passage)
        if "text" in props:
            self.calls.append("transform")
            self.texts.append(transformed(head, passage))
            return {"text": self.texts[-1]}
        if "suggestions" in props:
            return {"suggestions": ["Name the exact subject of the question."]}
        if "question" in props:
            self.calls.append("instruct")
            name = re.search(r'type "([^"]+)"', prompt).group(1).replace(" ", "_")
            return self.question(TYPES[name], passage)
        self.calls.append("respond")
        if "choice" in props:
            return {"reasoning": " ".join(w[4:14]), "choice": 1}
        if "verdict" in props:
            return {"verdict": props["verdict"]["enum"][0], "explanation": " ".join(w[3:12])}
        if "items" in props:
            return {"items": [" ".join(w[2 * i:2 * i + 2]) for i in range(3)]}
        if "calculation" in props:  # the difference of the passage's first two numbers
            nums = re.findall(r"\d+(?:,\d{3})*", passage)[:2]
            big, small = sorted(nums, key=lambda n: -int(n.replace(",", "")))
            value = int(big.replace(",", "")) - int(small.replace(",", ""))
            return {"calculation": f"{big} - {small}", "answer": f"{value:,} {w[0]}"}
        if "pairs" in props:
            return {"pairs": [{"left": w[0], "right": f"{w[1]} {w[2]}"},
                              {"left": w[3], "right": f"{w[4]} {w[5]}"}]}
        if "does not contain this information" in prompt:
            return {"answer": "The passage does not mention this detail."}
        if "missing word" in prompt:
            return {"answer": self.blanks[prompt.split("Question: ", 1)[1].split("\n")[0]]}
        size = 55 if "essay" in prompt else 15 if "one sentence" in prompt else 30
        return {"answer": " ".join((w * 3)[:size]) + "."}


def transformed(head: str, passage: str) -> str:
    """A transformation of the kind the prompt's first line asks for, from the passage's words
    (every other word, so it keeps the subject without copying the seed)."""
    w = content(passage)[::2]
    lines = [" ".join(w[i:i + 4]) for i in range(0, min(len(w), 24), 4)]
    if "debate" in head or "conversation" in head or "meeting" in head:
        return "\n".join(f"{'Ana' if i % 2 else 'Ben'}: {ln}." for i, ln in enumerate(lines))
    if "instructions" in head:
        return "\n".join(f"{i}. {ln}." for i, ln in enumerate(lines, 1))
    if "argument" in head:
        return f"Because {lines[0]}, therefore {lines[1]}. " + ". ".join(lines[2:]) + "."
    if "longer text" in head:
        return passage + " Historians, archives, museums, scholars, travellers, merchants, " \
            "pilgrims, explorers, libraries and festivals record more of it."
    return "\n".join(lines)


def run_item(topic_index, teacher, sub: str, transformation: str = "identity", seed: int = 1,
             refine_rounds: int = 0, doc: str = "bees.txt"):
    chunk = next(c for c in topic_index.chunks if c.doc_path.endswith(doc))
    ctx = FlowContext(teacher=skill_teacher(teacher), index=topic_index,
                      settings=FlowSettings(refine_rounds=refine_rounds))
    item = WorkItem(id="x", skill=SPEC.name, subcategory=sub, transformation=transformation,
                    seed_chunk_id=chunk.id, seed=seed)
    return asyncio.run(SKILL.run(ctx, item)), ctx


@pytest.mark.parametrize("sub", [s.name for s in SPEC.taxonomy])
def test_every_type_yields_a_record_of_its_form(topic_index, sub):
    teacher = GoodTeacher()
    cand, _ = run_item(topic_index, teacher, sub)
    t, md = TYPES[sub], cand.metadata
    roles = [m.role for m in cand.messages]
    assert roles == ["system", "user", "assistant"]
    user, answer = cand.messages[1].content, cand.messages[2].content
    assert BEES.split(".")[0] in user and md["task"]["question"] in user
    assert md["split"] == "rc" and md["instruction_type"] == sub
    assert md["level"] == t.params["level"] and md["expects"] == t.expects
    assert md["answerable"] is t.answerable and md["passage_edit"] is None
    if t.expects == "choice":
        assert md["answer_key"] == "A" and "D) " in user and "Answer: A) " in answer
        assert md["instruction"].startswith(md["task"]["question"] + "\nA) ")
    elif t.expects == "verdict":
        assert md["answer_key"] == t.params["labels"][0]
        assert answer.startswith(t.params["labels"][0] + ". ")
    elif t.expects == "ordered":
        assert answer.startswith("1. ") and "\n3. " in answer
    elif t.expects == "list":
        assert answer.startswith("- ") and answer.count("\n- ") == 2
    elif t.expects == "refusal":
        assert "does not mention" in answer
    elif t.expects == "number":
        assert answer == "60,000 Honey\n\nCalculation: 80,000 - 20,000 = 60000"
    if t.expects not in ("choice", "refusal", "blank", "number"):
        assert md["validator_scores"]["lexical_support"] >= t.params.get("min_support", 0.25)


def test_every_type_shows_the_teacher_a_task_of_its_own_form_first(topic_index):
    """The instruct call's conversation: the demonstration's prompt (its passage, this type's
    instructions) and its task, then the item's own prompt; the record keeps only the item's
    turns."""
    demo = SPEC.demonstrations
    assert set(demo.questions) == set(TYPES)
    teacher = GoodTeacher()
    seen = []
    scripted = skill_teacher(teacher)
    reply = scripted.reply

    def recording(messages, schema):
        if "question" in (schema or {}).get("properties", {}):
            seen.append(messages)
        return reply(messages, schema)

    scripted.reply = recording
    chunk = next(c for c in topic_index.chunks if c.doc_path.endswith("bees.txt"))
    ctx = FlowContext(teacher=scripted, index=topic_index, settings=FlowSettings(refine_rounds=0))
    for sub in ("title_choice", "fact_or_opinion", "literal_short_answer"):
        seen.clear()
        cand = asyncio.run(SKILL.run(ctx, WorkItem(
            id=sub, skill=SPEC.name, subcategory=sub, transformation="identity",
            seed_chunk_id=chunk.id, seed=1)))
        (shown, written, asked), = seen
        assert [m.role for m in seen[0]] == ["user", "assistant", "user"]
        assert "Kestlecombe" in shown.content and f'type "{sub.replace("_", " ")}"' in \
            shown.content
        task = json.loads(written.content)
        assert SKILL.task_schema(TYPES[sub]).model_validate(task).question == \
            demo.questions[sub].question
        assert BEES.split(".")[0] in asked.content and "Kestlecombe" not in asked.content
        assert "Kestlecombe" not in json.dumps([m.content for m in cand.messages])


def test_a_task_that_copies_the_demonstration_is_asked_again(topic_index):
    copied = SPEC.demonstrations.questions["literal_short_answer"].question
    teacher = GoodTeacher()
    asked = []

    def question(sub, passage):
        asked.append(passage)
        return {"question": copied} if len(asked) == 1 else GoodTeacher.question(teacher, sub,
                                                                               passage)

    teacher.question = question
    cand, _ = run_item(topic_index, teacher, "literal_short_answer")
    assert cand.usage.retried == {"instruct: instruction copies the demonstration": 1}
    assert "Kestlecombe" not in cand.metadata["instruction"]


def test_a_demonstration_that_fails_its_types_checks_fails_at_load(tmp_path):
    blank = "was built in 1791 to make ___ for the town's fishing fleet."
    with pytest.raises(ValueError, match=r"skill.toml: the demonstration for "
                                         r"vocabulary_fill_in_the_blank: "):
        ReadingComprehensionSkill(_broken_skill(tmp_path, blank, blank.replace("___", "rigging")))
    with pytest.raises(ValueError, match=r"the demonstration for weaken: correct: "):
        ReadingComprehensionSkill(_broken_skill(tmp_path / "2", "since 2020.\", \"The stone "
                                                "shed is 340 metres long.\", \"Most of the "
                                                "walk's volunteers are over seventy.\"], "
                                                "correct = 2", "since 2020.\", \"The stone shed "
                                                "is 340 metres long.\", \"Most of the walk's "
                                                "volunteers are over seventy.\"], correct = 9"))


@pytest.mark.parametrize("name", [t.name for t in SPEC.transformations if t.template])
def test_every_transformation_agent_feeds_the_question(topic_index, name):
    teacher = GoodTeacher()
    cand, _ = run_item(topic_index, teacher, "main_idea", transformation=name)
    assert cand.metadata["transformation"] == name
    assert teacher.texts and teacher.texts[0] in cand.messages[1].content  # what the student sees


def test_a_bad_transformation_passes_the_seed_on_or_rejects_the_item(topic_index, monkeypatch):
    """skill.toml transform_fallback (off by default, measured): on, the student sees the seed
    itself and the record says so; off, the item ends at transform."""
    def teacher(prompt, schema):
        if "text" in schema.get("properties", {}):
            return {"text": "Ana: Honey bees live in colonies with a single queen.\nAna: Worker "
                    "bees dance about flowers, nectar, drones and honey."}
        return GoodTeacher()(prompt, schema)
    assert not SPEC.transform_fallback
    monkeypatch.setattr(SKILL, "spec", SPEC.model_copy(update={"transform_fallback": True}))
    cand, _ = run_item(topic_index, teacher, "main_idea", transformation="debate_transcript")
    seed = next(c for c in topic_index.chunks if c.doc_path.endswith("bees.txt"))
    assert cand.metadata["transformation"] == "debate_transcript"
    assert cand.metadata["transformation_fell_back"] is True
    assert seed.text in cand.messages[1].content and "Ana:" not in cand.messages[1].content
    good, _ = run_item(topic_index, GoodTeacher(), "main_idea", transformation="debate_transcript")
    assert good.metadata["transformation_fell_back"] is False

    monkeypatch.setattr(SKILL, "spec", SPEC)
    with pytest.raises(Rejected) as exc:
        run_item(topic_index, teacher, "main_idea", transformation="debate_transcript")
    assert exc.value.stage == "transform" and "two named speakers" in exc.value.reason


@pytest.mark.parametrize("sub, bad, stage, reason", [
    ("literal_short_answer", {"question": "Tell me something nice about honey"}, "instruct",
     "not a question or request"),
    ("vocabulary_in_context", {"question": "What does the word waggle mean for honey bees?"},
     "instruct", "quotes no words"),
    ("critical_true_false", {"question": "Do drones mate with queens of other colonies?",
                             "key": "True"}, "instruct", "True or False"),
    ("strengthen", {"question": "Which option most strengthens the case for honey bees?",
                    "options": ["queen", "queen", "drone", "worker"], "correct": 1},
     "instruct", "two options are the same"),
    # seen accepted as these types: a question of another type (skill.toml `asks`)
    ("event_ordering", {"question": "What is the purpose of the waggle dance of honey bees?"},
     "instruct", "question is not a event ordering question"),
    ("title_choice", {"question": "Which caste of the honey bee colony lays the eggs?",
                      "options": ["queen", "drone", "worker", "forager"], "correct": 1},
     "instruct", "question is not a title choice question"),
])
def test_a_bad_question_is_rejected_before_the_answer(topic_index, sub, bad, stage, reason):
    teacher = GoodTeacher()

    def reply(prompt, schema):
        return bad if "question" in schema.get("properties", {}) else teacher(prompt, schema)
    with pytest.raises(Rejected) as exc:
        run_item(topic_index, reply, sub)
    assert exc.value.stage == stage and reason in exc.value.reason
    assert "respond" not in teacher.calls


@pytest.mark.parametrize("sub, props_key, bad, reason", [
    ("unanswerable_detail", "answer", {"answer": "A colony has about 300 drones in it."},
     "does not say the passage lacks"),
    ("critical_true_false", "verdict", {"verdict": "False", "explanation": "Drones mate."},
     "teacher judged False, the key says True"),
    ("strengthen", "choice", {"reasoning": "The queen matters most here.", "choice": 3},
     "teacher chose option 3"),
    ("literal_short_answer", "answer", {"answer": "Paris is the capital city of France."},
     "not supported by the passage"),
    ("event_ordering", "items", {"items": ["the queen", "workers", "The Queen"]},
     "same item twice"),
    ("numerical_discrete_reasoning", "calculation",
     {"calculation": "80,000 - 20,000", "answer": "Many workers live there."},
     "numeric answer contains no number"),
    ("numerical_discrete_reasoning", "calculation",
     {"calculation": "80,000 - 20,000", "answer": "About 6,000 workers."},
     "answer does not state the calculated 60000"),
    ("numerical_discrete_reasoning", "calculation",
     {"calculation": "80,000 / 4", "answer": "20,000 workers."},
     "calculation uses 4, which the passage does not give"),
])
def test_a_bad_answer_is_rejected_with_its_reason(topic_index, sub, props_key, bad, reason):
    teacher = GoodTeacher()

    def reply(prompt, schema):
        if props_key in schema.get("properties", {}) and "question" not in schema["properties"]:
            return bad
        return teacher(prompt, schema)
    with pytest.raises(Rejected) as exc:
        run_item(topic_index, reply, sub)
    assert exc.value.stage == "validate" and reason in exc.value.reason


# -- refinement: passage edits ------------------------------------------------------------------

def seed_for(sub: str, kind: str) -> int:
    goals = eligible_goals(SPEC.refinement_goals, TYPES[sub])
    return next(s for s in range(1000)
                if goal_kind(random.Random(s).choice(goals)) == kind)


class EditingTeacher(GoodTeacher):
    def __init__(self, find: str, replace: str = "", answer: str | None = None):
        super().__init__()
        self.find, self.replace, self.answer = find, replace, answer

    def __call__(self, prompt, schema):
        props = schema.get("properties", {})
        if "find" in props:
            return {"find": self.find, **({"replace": self.replace} if "replace" in props
                                          else {})}
        if self.answer and "answer" in props:
            return {"answer": self.answer}
        return super().__call__(prompt, schema)

    def question(self, sub, passage):
        return {"question": "How many workers live in a honey bee colony?"}


def test_refinement_can_make_the_question_unanswerable_by_removing_its_sentence(topic_index):
    sentence = "Honey bees live in colonies of 20,000 to 80,000 workers with a single queen."
    teacher = EditingTeacher(sentence)
    cand, _ = run_item(topic_index, teacher, "literal_short_answer",
                       seed=seed_for("literal_short_answer", "remove"), refine_rounds=1)
    md, user = cand.metadata, cand.messages[1].content
    assert md["passage_edit"] == {"kind": "remove", "find": sentence, "replace": ""}
    assert md["answerable"] is False and md["expects"] == "refusal"
    assert sentence not in user and "waggle dance" in user
    assert "does not mention" in cand.messages[2].content
    assert md["refinement"][0]["edits"] == "passage" and md["refinement"][0]["kept"]


def test_refinement_can_change_the_passage_so_the_answer_changes(topic_index):
    teacher = EditingTeacher("20,000 to 80,000 workers", "5,000 to 9,000 workers",
                             answer="A colony holds 5,000 to 9,000 workers with one queen.")
    cand, _ = run_item(topic_index, teacher, "literal_short_answer",
                       seed=seed_for("literal_short_answer", "change"), refine_rounds=1)
    md, user = cand.metadata, cand.messages[1].content
    assert md["passage_edit"]["kind"] == "change" and md["answerable"] is True
    assert "5,000 to 9,000 workers" in user and "20,000" not in user


def test_an_answer_that_ignores_the_changed_passage_is_rejected(topic_index):
    teacher = EditingTeacher("20,000 to 80,000 workers", "5,000 to 9,000 workers",
                             answer="Honey bees live in colonies with a single queen and "
                             "many workers.")
    with pytest.raises(Rejected) as exc:
        run_item(topic_index, teacher, "literal_short_answer",
                 seed=seed_for("literal_short_answer", "change"), refine_rounds=1)
    assert exc.value.reason == "answer does not reflect the edited passage"


def test_a_broken_passage_edit_is_dropped_and_the_passage_kept(topic_index):
    teacher = EditingTeacher("Bees live on the moon and eat cheese.")
    cand, _ = run_item(topic_index, teacher, "literal_short_answer",
                       seed=seed_for("literal_short_answer", "remove"), refine_rounds=1)
    md = cand.metadata
    assert md["passage_edit"] is None and md["answerable"] is True
    assert md["refinement"][0]["kept"] is False
    assert "not in the passage" in md["refinement"][0]["dropped_because"]
    assert "20,000 to 80,000 workers" in cand.messages[1].content


def test_question_rewrites_keep_the_task_shape(topic_index):
    seed = seed_for("strengthen", "task")
    cand, ctx = run_item(topic_index, GoodTeacher(), "strengthen", seed=seed, refine_rounds=2)
    steps = cand.metadata["refinement"]
    assert [s["edits"] for s in steps] == ["task", "task"]
    assert set(steps[0]["after"]) == {"question", "options", "correct"}
    # instruct, suggest and edit open with the same passage block, so the prompt cache serves it
    prompts = [p[-1].content for p in ctx.teacher.prompts]
    chain = [p for p in prompts if "Write ONE" in p or "Suggest one to three" in p
             or "\nRewrite the question" in p]
    assert len(chain) == 5
    source = chain[0][:chain[0].index('"""', len('Source:\n"""')) + 3]
    assert source.startswith('Source:\n"""') and all(p.startswith(source) for p in chain)


# -- the whole engine -------------------------------------------------------------------------

def test_engine_run_writes_rc_records_and_explains_rejections(corpus, tmp_path):
    good = GoodTeacher()

    def reply(prompt, schema):
        props = schema.get("properties", {})
        if "question" in props:  # every other question is a title, not a question
            reply.n += 1
            if reply.n % 2 == 0:
                return {**good(prompt, schema), "question": "Honey bees and their colonies"}
        return good(prompt, schema)
    reply.n = 0

    summary, data, rejected = run_skill("reading_comprehension", corpus, tmp_path / "out",
                                        skill_teacher(reply), num=3, flow={"refine_rounds": 0})
    assert summary["complete"] and len(data) == 3
    for rec in data:
        md = rec["metadata"]
        assert rec["skill"] == "reading_comprehension" and md["split"] == "rc"
        assert rec["subcategory"] == md["instruction_type"] in TYPES
        assert {"level", "expects", "answerable", "passage_edit"} <= set(md)
        assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant"]
        assert rec["messages"][1]["content"].startswith("Read the passage and answer")
        assert md["task"]["question"] in rec["messages"][1]["content"]
    title_reasons = {"not a question or request", "fill-in-the-blank question has no blank (___)",
                     "question does not offer the choice True or False",
                     "question does not offer the choice Fact or Opinion",
                     "question quotes no words from the passage",
                     "question shares no subject word with its source passage"}
    # each title fails a cheap check and is written again: the item goes on with the question
    retried = summary["this_run"]["retried_by_reason"]
    assert retried and all(k.startswith("instruct: ") and k.split(": ", 1)[1] in title_reasons
                           for k in retried), retried
    assert all(r["stage"] != "instruct" for r in rejected)
