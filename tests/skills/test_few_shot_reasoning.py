"""Few-shot reasoning: hand-written validator cases, and the whole flow with a scripted teacher
that writes exemplars from the passage slices it is given."""

import itertools
import json
import re
import shutil

import pytest

from agents.few_shot_reasoning import checks as v
from agents.few_shot_reasoning.skill import Exemplar, FewShotReasoningSkill, focus_parts
from agents.registry import load_skill
from tests.skill_harness import run_skill, skill_teacher

BEES = ("Honey bees live in colonies of 20,000 to 80,000 workers with a single queen. Worker bees "
        "perform a waggle dance to tell other foragers the direction and distance of flowers. A "
        "worker bee lives about six weeks in summer, while the queen can live three to five years.")


def ex(question, reasoning, answer, check_expression=""):
    return Exemplar(question=question, reasoning=reasoning, answer=answer,
                    check_expression=check_expression)


HIVES = ex("A beekeeper has 12 hives with 20 frames each. How many frames does the beekeeper have?",
           "Each hive holds 20 frames. Twelve hives hold 12 times 20 frames, which is 240.",
           "240 frames", "12*20")
DANCE = ex("A forager bee visits 15 flowers per trip and makes 11 trips. How many flowers is that?",
           "Each trip covers 15 flowers. Eleven trips cover 15 times 11 flowers, which is 165.",
           "165 flowers", "15 * 11")


# -- small helpers ------------------------------------------------------------------------------


def test_numbers_and_steps():
    assert v.numbers("1,200.5 kg, -3 and .5 then 12kg") == [1200.5, -3.0, 0.5, 12.0]
    assert v.steps("Add 3 and 4 to get 7. Then double it to 14.\nSo the result is 14") == [
        "Add 3 and 4 to get 7.", "Then double it to 14.", "So the result is 14"]
    assert v.steps("Just 14.") == []  # under three words is not a step


@pytest.mark.parametrize("a, b, expected", [
    ("How many workers live in a colony?", "how many workers live in a colony", "copies"),
    ("How many workers live in one bee colony?", "How many workers live in a bee colony today?",
     "is a near copy of"),
    ("How many workers live in a colony?", "How long does a queen bee live?", None),
])
def test_same_text(a, b, expected):
    assert v.same_text(a, b) == expected


@pytest.mark.parametrize("answer, value, decimals, ok", [
    (240, 240, 0, True), (3.33, 10 / 3, 2, True), (3, 10 / 3, 0, True), (3.3, 10 / 3, 2, False),
    (241, 240, 0, False), (0.5, 0.5, 1, True),
])
def test_matches_value(answer, value, decimals, ok):
    assert v.matches_value(answer, value, decimals) is ok


# -- check_expression (the calculator recomputes) -----------------------------------------------


@pytest.mark.parametrize("expression, answer, context, reason", [
    ("12*20", "240 frames", "12 hives with 20 frames", None),
    ("10/3", "3.33 kg", "10 kg shared by 3", None),
    ("45/60*100", "75 percent", "45 of 60 minutes", None),  # 100 for percent is implied
    ("(20000 + 80000) / 2", "50,000 workers", "20,000 to 80,000 workers", None),
    ("", "240", "12 and 20", "has no check_expression"),
    ("12 * twenty", "240", "12 and 20", "does not evaluate"),
    ("12*20", "many frames", "12 and 20", "answer contains no number"),
    ("12*21", "240 frames", "12 and 21", "check_expression gives 252, its answer says 240"),
    ("12*20*7", "1680 frames", "12 hives with 20 frames", "uses 7, which its question and reasoning"),
])
def test_check_expression(expression, answer, context, reason):
    got = v.check_expression(expression, answer, context, "exemplar 1")
    assert got is None if reason is None else reason in got


# -- the shared exemplar/response format -------------------------------------------------------


@pytest.mark.parametrize("question, reasoning, answer, expects, reason", [
    (HIVES.question, HIVES.reasoning, HIVES.answer, "number", None),
    ("Q?", "Step one is here. Step two is here.", " ", "any", "has an empty answer"),
    ("Q?", "Step one is here. Step two is here.", "a\nb", "any", "not a short answer line"),
    ("Q?", "Step one is here. Step two is here.", "one two three four five six seven eight nine ten "
     "eleven twelve thirteen", "any", "not a short answer line"),
    ("Q?", "Step one is here. Answer: 5", "5", "number", "runs into another example"),
    ("Q?", "The colony has one queen bee in it.", "queen", "any", "not step by step (needs 2"),
    ("Q?", "Each hive holds 20 frames. Twelve hives hold many frames.", "240", "number",
     "does not reach its answer"),
    ("Q?", "Workers dance to show flowers. Dancing shows the direction.", "the queen bee", "any",
     "does not reach its answer"),
    ("Q?", "Every worker is female. A forager is a worker.", "Probably", "yes_no",
     "does not start with Yes or No"),
    ("Q?", "Every worker is female. A forager is a worker.", "Yes, she is", "yes_no", None),
    ("What does a queen bee do?", "The queen lays eggs for the colony. Workers tend them.",
     "lays eggs", "analogy", "not an 'A is to B as C is to ?' analogy"),
    ("Queen is to colony as captain is to what?", "A queen leads a colony. A captain leads a "
     "ship, so the ship fits.", "ship", "analogy", None),
])
def test_check_worked(question, reasoning, answer, expects, reason):
    got = v.check_worked(question, reasoning, answer, expects, "exemplar 2")
    assert got is None if reason is None else reason in got


@pytest.mark.parametrize("exemplar, expects, reason", [
    (HIVES, "number", None),
    (ex("How many bees?", HIVES.reasoning, HIVES.answer, "12*20"), "number", "question is too short"),
    (ex("How many trains leave the station on Sunday?", "Two trains leave each hour. Over "
        "12 hours that gives 24.", "24", "2*12"), "number", "not drawn from the source"),
    (HIVES.model_copy(update={"check_expression": "12*21"}), "number", "gives 252"),
    (HIVES.model_copy(update={"question": "How many frames do the hives in the passage hold?"}),
     "number", "refers to 'the text'"),
    (HIVES.model_copy(update={"answer": ""}), "number", "empty answer"),
])
def test_check_exemplar(exemplar, expects, reason):
    got = v.check_exemplar(exemplar, BEES + " A beekeeper keeps hives of frames.", expects, 2)
    assert got is None if reason is None else f"exemplar 2" in got and reason in got


QUEEN = ex("Rule: bees that lay eggs are queens, bees that forage are workers. Which is a bee "
           "that forages?", "The rule says foraging bees are workers. This bee forages, so it is "
           "a worker.", "worker")
LAYER = ex("Rule: bees that lay eggs are queens, bees that forage are workers. Which is a bee "
           "that lays eggs in spring?", "The rule says egg-laying bees are queens. This bee "
           "lays eggs, so it is a queen.", "queen")


@pytest.mark.parametrize("exemplars, k, expects, reason", [
    ([HIVES, DANCE], 2, "number", None),
    ([QUEEN, LAYER], 2, "label", None),
    ([HIVES, DANCE], 3, "number", "expected 3 exemplars, got 2"),
    ([HIVES, HIVES.model_copy(update={"question": HIVES.question.upper()})], 2, "number",
     "exemplars 1 and 2 ask the same question"),
    ([HIVES, DANCE.model_copy(update={"reasoning": HIVES.reasoning})], 2, "number",
     "exemplars 1 and 2 share their reasoning"),
    ([QUEEN, LAYER.model_copy(update={"answer": "Worker"})], 2, "label",
     "exemplars all have the same label"),
])
def test_check_exemplar_set(exemplars, k, expects, reason):
    got = v.check_exemplar_set(exemplars, k, expects)
    assert got is None if reason is None else reason in got


@pytest.mark.parametrize("query, expects, reason", [
    ("A queen bee lives 4 years and a worker 6 weeks. How many weeks longer does the queen live?",
     "number", None),
    ("How many?", "number", "query is too short"),
    ("How many worker bees are in 3 colonies? Answer: 60000", "number", "carries its own"),
    (HIVES.question, "number", "query copies exemplar 1"),
    ("A beekeeper has 12 hives with 20 frames each. How many frames does this beekeeper have now?",
     "number", "query is a near copy of exemplar 1"),
    ("How many trains leave the station on a Sunday?", "number", "not drawn from the source"),
    ("How many worker bees does the text say a colony has?", "number", "refers to 'the text'"),
    ("Which bee lives longest in a colony of honey bees?", "analogy", "not an 'A is to B"),
])
def test_check_query(query, expects, reason):
    got = v.check_query(query, [HIVES, DANCE], BEES + " hives frames beekeeper", expects)
    assert got is None if reason is None else reason in got


@pytest.mark.parametrize("reasoning, answer, expr, exemplars, expects, reason", [
    ("A worker lives 6 weeks. Four years hold 208 weeks, so the gap is 208 minus 6, which is 202.",
     "202 weeks", "4*52-6", [HIVES, DANCE], "number", "uses 52, which"),
    ("A worker lives 6 weeks. Four years of 52 weeks are 208 weeks, so the gap is 202.",
     "202 weeks", "4*52-6", [HIVES, DANCE], "number", None),
    ("A worker lives 6 weeks. Four years of 52 weeks are 208 weeks, so the gap is 202.",
     "202 weeks", "4*52+6", [HIVES, DANCE], "number", "gives 214, its answer says 202"),
    (HIVES.reasoning, "240 frames", "12*20", [HIVES, DANCE], "number",
     "response copies exemplar 1's reasoning"),
    ("The rule says foraging bees are workers. This bee guards, so it is a guard.", "guard", "",
     [QUEEN, LAYER], "label", "not one of the exemplars' labels"),
    ("Under the rule, egg layers count as queens. The bee in question lays eggs in spring, so it "
     "is a queen.", "Queen", "",
     [QUEEN, LAYER], "label", None),
    ("It is a queen.", "queen", "", [QUEEN, LAYER], "label", "response's reasoning is not step"),
])
def test_check_response(reasoning, answer, expr, exemplars, expects, reason):
    query = "A queen bee lives 4 years and a worker 6 weeks. How many weeks longer does the queen live?"
    got = v.check_response(reasoning, answer, expr, query, exemplars, expects)
    assert got is None if reason is None else reason in got


def test_focus_parts_hand_out_distinct_slices():
    parts = focus_parts(BEES, 3)
    assert len(parts) == 3 and len(set(parts)) == 3
    assert " ".join(parts) == BEES
    assert focus_parts("One short sentence here.", 3) == ["One short sentence here."] * 3


def test_k_comes_from_params_and_bad_params_are_refused(tmp_path):
    skill = load_skill("few_shot_reasoning")
    for sub in skill.spec.taxonomy:
        ks = {skill.k_for(sub, seed) for seed in range(200)}
        assert ks == set(range(sub.params["k_min"], sub.params["k_max"] + 1))
    folder = tmp_path / "fs"
    shutil.copytree(skill.folder, folder)
    toml = (folder / "skill.toml").read_text()
    (folder / "skill.toml").write_text(toml.replace("k_min = 3, k_max = 4", "k_min = 1, k_max = 4"))
    with pytest.raises(ValueError, match="2 <= k_min <= k_max <= 4"):
        FewShotReasoningSkill(folder)
    (folder / "skill.toml").write_text(toml.replace('expects = "yes_no"', 'expects = "poem"'))
    with pytest.raises(ValueError, match="unknown expects 'poem'"):
        FewShotReasoningSkill(folder)


# -- the whole flow -----------------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z]{5,}")


def fs_teacher():
    """Writes valid exemplars, queries and responses from the passage slice in each prompt, except
    for one deliberately bad reply per type (first time that step runs for that type)."""
    calls: dict[tuple[str, str], int] = {}
    counter = itertools.count(11)

    def nth(stage, kind):
        calls[stage, kind] = calls.get((stage, kind), 0) + 1
        return calls[stage, kind]

    def words(prompt):
        focus = prompt.split('"""')[1]
        found = [w.lower() for w in _WORD.findall(focus) if w.lower() not in {"which", "there"}]
        return (found * 4)[:8] if found else ["thing"] * 8

    def worked(kind, w, n, labels=()):
        a, b = n, n + 3
        if kind == "arithmetic_word_problem":
            return {"question": f"A {w[0]} store packs {a} {w[1]} items per box and sells {b} boxes. "
                                f"How many {w[1]} items does it sell?",
                    "reasoning": f"Each box holds {a} {w[1]} items. The {b} boxes hold {a} times "
                                 f"{b} items, which is {a * b}.",
                    "answer": f"{a * b} items", "check_expression": f"{a} * {b}"}
        if kind == "classification_by_rule":
            label = "Beta" if labels == ["Alpha"] else "Alpha"
            return {"question": f"Rule: things tied to {w[0]} are Alpha, things tied to {w[1]} are "
                                f"Beta. Which category fits a {w[2]} tied to {w[n % 2]}?",
                    "reasoning": f"The rule sorts things by what they are tied to. The {w[2]} is "
                                 f"tied to {w[n % 2]}, so it is {label}.",
                    "answer": label}
        if kind == "analogy":
            return {"question": f"{w[0]} is to {w[1]} as {w[2]} is to what?",
                    "reasoning": f"The {w[0]} goes with the {w[1]} in one fact. The same link joins "
                                 f"the {w[2]} with the {w[3]}.",
                    "answer": w[3]}
        if kind == "cause_effect_chain":
            return {"question": f"What does a change in {w[0]} finally lead to for {w[1]}?",
                    "reasoning": f"A change in {w[0]} alters the {w[1]} first. The altered {w[1]} "
                                 f"affects the {w[2]} next. In the end the {w[3]} gets smaller.",
                    "answer": f"a smaller {w[3]}"}
        return {"question": f"If every {w[0]} needs {w[1]}, and a {w[2]} is a {w[0]}, does the "
                            f"{w[2]} need {w[1]}?",
                "reasoning": f"Every {w[0]} needs {w[1]}. The {w[2]} is a {w[0]}. So the {w[2]} "
                             f"needs {w[1]} too.",
                "answer": "Yes, it does"}

    def kind_of_user_turn(prompt):
        examples = prompt.split("Example 1", 1)[1]
        if "items per box" in examples:
            return "arithmetic_word_problem"
        if "Rule:" in examples:
            return "classification_by_rule"
        if " is to " in examples:
            return "analogy"
        if "finally lead to" in examples:
            return "cause_effect_chain"
        return "rule_deduction"

    def reply(prompt, schema):
        props = schema.get("properties", {})
        if "text" in props:  # transformations: hand the passage back
            return {"text": prompt.split("Passage:\n", 1)[1].rsplit("\n\nReply in JSON", 1)[0]}
        if prompt.startswith("Write ONE worked example"):
            kind = re.search(r'type "([a-z ]+)"', prompt).group(1).replace(" ", "_")
            n = next(counter)
            if nth("exemplar", kind) == 1 and kind == "arithmetic_word_problem":
                bad = worked(kind, words(prompt), n)
                return bad | {"check_expression": f"{n} + {n + 3}"}  # not what the answer says
            labels = re.search(r"as before \(([^)]*)\)", prompt)
            return worked(kind, words(prompt), n, labels.group(1).split(", ") if labels else [])
        if prompt.startswith("Write ONE new question"):
            kind = re.search(r'type "([a-z ]+)"', prompt).group(1).replace(" ", "_")
            if nth("query", kind) == 1 and kind == "analogy":  # copy the exemplar's question
                return {"query": reply.last_question[kind]}
            w = words(prompt)
            return {"query": worked(kind, w[3:] + w[:3], 97)["question"]}  # other words
        if "reasoning" in props:
            kind = kind_of_user_turn(prompt)
            query = prompt.rsplit("\nQuestion: ", 1)[1].split("\n", 1)[0]
            first = nth("respond", kind) == 1
            example = prompt.split("Example 1", 1)[1]
            if kind == "arithmetic_word_problem":
                a, b = map(int, re.search(r"packs (\d+) .* sells (\d+) boxes", query).groups())
                return {"reasoning": f"Each box holds {a} items. The {b} boxes hold {a} times {b} "
                                     f"items, which is {a * b}.",
                        "answer": f"{a * b} items", "check_expression": f"{a}*{b}"}
            if kind == "classification_by_rule":
                label = "Gamma" if first else "Alpha"
                return {"reasoning": "The rule sorts things by what they are tied to. This one is "
                                     f"tied to the first thing, so it is {label}.", "answer": label}
            if kind == "cause_effect_chain" and first:  # the exemplar's reasoning, copied
                return {"reasoning": example.split("Reasoning: ", 1)[1].split("\n", 1)[0],
                        "answer": "a smaller " + example.split("Answer: a smaller ", 1)[1].split()[0]}
            if kind == "rule_deduction" and first:
                return {"reasoning": "The rule covers every case here. The case is one of them. "
                                     "So it follows.", "answer": "Maybe so"}
            w = [x.lower() for x in _WORD.findall(query)] * 4
            return {k: val for k, val in worked(kind, w, 97).items() if k in props} | {
                "reasoning": f"The {w[0]} is linked with {w[1]} here. Then {w[2]} links the same "
                             f"way to {w[3]}. So the answer is {w[3]}, a smaller {w[3]} indeed.",
                "answer": {"analogy": w[3], "cause_effect_chain": f"a smaller {w[3]}",
                           "rule_deduction": "Yes, it does"}[kind]}
        if "\nRewrite the task" in prompt:  # the editor: a small, valid change
            query = json.loads(prompt.split("Task (JSON):\n", 1)[1].split("\n", 1)[0])["query"]
            return {"query": query + " Show each step."}
        return None  # suggest: the harness fills the schema with prompt words

    reply.last_question = {}
    return skill_teacher(lambda p, s: _remember(reply, p, s))


def _remember(reply, prompt, schema):
    out = reply(prompt, schema)
    if prompt.startswith("Write ONE worked example") and out:
        kind = re.search(r'type "([a-z ]+)"', prompt).group(1).replace(" ", "_")
        reply.last_question[kind] = out["question"]
    return out


def test_flow_builds_k_shot_prompts_and_rejects_with_precise_reasons(corpus, tmp_path):
    summary, data, rejected = run_skill("few_shot_reasoning", corpus, tmp_path / "out",
                                        fs_teacher(), num=5, max_attempts=60,
                                        max_type_share=1.0, flow={"refine_rounds": 1})
    assert summary["complete"] and len(data) == 5
    skill = load_skill("few_shot_reasoning")
    by_type = {r["metadata"]["instruction_type"]: r for r in data}
    assert set(by_type) == {s.name for s in skill.spec.taxonomy}
    for rec in data:
        meta, (system, user, assistant) = rec["metadata"], rec["messages"]
        sub = skill.spec.subcategory(meta["instruction_type"])
        assert meta["split"] == "fs_cot_flow"
        assert [system["role"], user["role"], assistant["role"]] == ["system", "user", "assistant"]
        k = meta["k"]
        assert sub.params["k_min"] <= k <= sub.params["k_max"] and len(meta["task"]["exemplars"]) == k
        # the k-shot prompt: k worked examples, then the new question, last
        for i, e in enumerate(meta["task"]["exemplars"], 1):
            assert f"Example {i}\nQuestion: {e['question']}\nReasoning: {e['reasoning']}\n" \
                   f"Answer: {e['answer']}" in user["content"]
        assert f"Example {k + 1}" not in user["content"]
        assert user["content"].endswith(f"\nQuestion: {meta['task']['query']}")
        assert meta["instruction"] == meta["task"]["query"]
        assert re.fullmatch(r"Reasoning: .+\nAnswer: .+", assistant["content"], re.DOTALL)
        assert meta["refinement_rounds"] == 1
    arith = by_type["arithmetic_word_problem"]["metadata"]
    assert arith["check_value"] == eval(arith["check_expression"])  # the calculator's value
    assert str(arith["check_value"]) in by_type["arithmetic_word_problem"]["messages"][2]["content"]
    assert by_type["classification_by_rule"]["messages"][2]["content"].endswith("Answer: Alpha")

    reasons = {r["reason"]: r for r in rejected}
    assert any(re.fullmatch(r"exemplar 1's check_expression gives \d+, its answer says \d+", r)
               for r in reasons), reasons
    assert "query copies exemplar" in " ".join(reasons)
    for reason in ("response answer is not one of the exemplars' labels",
                   "response copies exemplar 1's reasoning",
                   "response's answer does not start with Yes or No"):
        assert reason in reasons, (reason, list(reasons))
    assert reasons["response copies exemplar 1's reasoning"]["stage"] == "validate"
    assert next(r for r in rejected if "check_expression gives" in r["reason"])["stage"] == "exemplar"
    assert next(r for r in rejected if "query copies" in r["reason"])["stage"] == "instruct"
