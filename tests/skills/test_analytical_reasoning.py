"""Analytical reasoning: the static rule checks, the sandboxed enumerator on hand-written puzzles
(unique, ambiguous, contradictory, broken), the answer checks, and the flow over real files."""

import asyncio
import json
import re

import pytest

from agents.analytical_reasoning.puzzle import (ENUMERATOR, Enumeration, Structure,
                                                check_assignment, check_rule, check_rule_text,
                                                check_unique, enumerate_solutions,
                                                enumeration_program, is_conditional)
from agents.analytical_reasoning.skill import (Constraint, check_constraints, check_entities,
                                               check_explanation, check_groups,
                                               check_puzzle_question)
from agents.rag.validators import content_words
from tests.skill_harness import run_skill, skill_teacher

PASSAGE = ("The water cycle moves water between the oceans, the air and the land. Evaporation "
           "lifts water from the oceans, condensation forms clouds, and precipitation returns "
           "it as rain or snow; runoff carries it back to the sea.")
STEPS = ["Evaporation", "Condensation", "Precipitation", "Runoff"]
ORDER = Structure.of("ordering", STEPS, None)
GROUPS = Structure.of("grouping", STEPS, ["air", "land"])
ROLES = Structure.of("assignment", STEPS[:3], ["first", "second", "third"])


def solve(entities, structure, rules) -> Enumeration:
    return asyncio.run(enumerate_solutions(entities, structure, rules))


# -- the enumerator, run in the sandbox -----------------------------------------------------------

def test_a_unique_ordering_is_found_with_its_redundant_clues():
    rules = ['pos["Evaporation"] == 1', 'pos["Condensation"] == pos["Evaporation"] + 1',
             'pos["Precipitation"] < pos["Runoff"]', 'pos["Runoff"] == 4']
    result = solve(STEPS, ORDER, rules)
    assert result == Enumeration(count=1, redundant=[3, 4], solutions=[
        {"Evaporation": 1, "Condensation": 2, "Precipitation": 3, "Runoff": 4}])
    assert check_unique(result) is None


def test_an_ambiguous_ordering_is_counted():
    result = solve(STEPS, ORDER, ['pos["Evaporation"] == 1', 'pos["Runoff"] == 4'])
    assert result.count == 2 and len(result.solutions) == 2
    assert check_unique(result) == "puzzle is ambiguous: 2 solutions"


def test_a_contradictory_puzzle_has_no_solution():
    result = solve(STEPS, ORDER, ['pos["Runoff"] < pos["Evaporation"]',
                                  'pos["Evaporation"] < pos["Runoff"]'])
    assert result.count == 0 and result.solutions == []
    assert check_unique(result) == "puzzle has no solution"


def test_grouping_allows_repeats_and_assignment_does_not():
    grouped = solve(STEPS, GROUPS, ['group["Evaporation"] == "air"',
                                    'group["Condensation"] == group["Evaporation"]',
                                    'group["Precipitation"] != "air"',
                                    'group["Runoff"] == group["Precipitation"]'])
    assert grouped.solutions == [{"Evaporation": "air", "Condensation": "air",
                                  "Precipitation": "land", "Runoff": "land"}]
    assigned = solve(STEPS[:3], ROLES, ['group["Evaporation"] == "first"',
                                        'group["Precipitation"] != "second"'])
    assert assigned.solutions == [{"Evaporation": "first", "Condensation": "second",
                                   "Precipitation": "third"}]
    # the same two rules over groups (repeats allowed) leave 2 * 3 * 2 arrangements
    loose = Structure("group", ("first", "second", "third"), distinct=False)
    assert solve(STEPS[:3], loose, ['group["Evaporation"] == "first"',
                                    'group["Precipitation"] != "second"']).count == 6


@pytest.mark.parametrize("rule, error", [
    ('pos["Rain"] == 1', "constraint 2 raised KeyError: 'Rain'"),
    ('pos["Runoff"] // 0 == 1', "constraint 2 raised ZeroDivisionError"),
    ('pos["Runoff"] - 1', "constraint 2 gave int, not True or False"),
    ('pos["Runoff"] ==', "constraint 2 is not a Python expression"),
    ('open("/etc/passwd") is None', "constraint 2 raised NameError"),
    ('__import__("os").system("echo hacked")', "constraint 2 raised NameError"),
])
def test_a_constraint_that_fails_is_reported_not_raised(rule, error):
    result = solve(STEPS, ORDER, ['pos["Evaporation"] == 1', rule])
    assert error in result.error
    assert check_unique(result).startswith("puzzle cannot be checked: " + error)


def test_the_puzzle_enters_the_program_only_as_a_json_string_literal():
    nasty = ['"""); print("escaped"); ("""', "pos['a'] == 1\n"]
    entities = ['A"B', "C'D", "E\\F\u2028"]
    three = Structure.of("ordering", entities, None)
    program = enumeration_program(entities, three, nasty)
    literal = json.dumps(json.dumps({"entities": entities, "variable": "pos", "values": [1, 2, 3],
                                     "distinct": True, "rules": nasty}))
    assert program == ENUMERATOR.replace("__PUZZLE__", literal)
    assert program.isascii() and program.count("\n") == ENUMERATOR.count("\n")
    result = solve(entities, three, nasty)
    assert result.error == "constraint 1 gave str, not True or False"


def test_a_rule_that_runs_away_hits_the_sandbox_limit():
    from agents.tools import Limits

    # the static check would refuse '**'; the enumerator alone must still survive it
    result = asyncio.run(enumerate_solutions(STEPS, ORDER, ["9 ** 9 ** 9 > 0"],
                                             limits=Limits(wall_s=3, cpu_s=1)))
    assert result.error.startswith("enumeration failed (")
    assert check_unique(result).startswith("puzzle cannot be checked: enumeration failed")


# -- static checks (no evaluation) ----------------------------------------------------------------

@pytest.mark.parametrize("rule, structure", [
    ('pos["Evaporation"] < pos["Runoff"]', ORDER),
    ("abs(pos['Evaporation'] - pos['Runoff']) == 1", ORDER),
    ('pos["Runoff"] in (3, 4) and not pos["Evaporation"] == 4', ORDER),
    ('(not group["Evaporation"] == "air") or group["Runoff"] == "land"', GROUPS),
    ('group["Runoff"] != group["Evaporation"]', GROUPS),
    ('group["Runoff"] == "land" if group["Evaporation"] == "air" else True', GROUPS),
])
def test_well_formed_rules_pass(rule, structure):
    assert check_rule(1, rule, STEPS, structure) is None


@pytest.mark.parametrize("rule, structure, reason", [
    ('pos["Evaporation"] <', ORDER, "constraint 3 is not a Python expression"),
    ('pos["Rain"] == 1', ORDER, "constraint 3 refers to unknown entity 'Rain'"),
    ('pos["Evaporation"] == 7', ORDER, "uses 7; positions run from 1 to 4"),
    ('pos["Evaporation"] == "first"', ORDER, "uses 'first'; positions run from 1 to 4"),
    ('group["Evaporation"] == "sea"', GROUPS, "uses 'sea', which is not one of the groups"),
    ('group["Evaporation"] == 1', GROUPS, "uses 1, which is not one of the groups"),
    ('pos["Evaporation"] == 1', GROUPS, "uses the name 'pos'; only group[...] is defined"),
    ('pos[0] == 1', ORDER, "indexes something other than pos"),
    ('pos.get("Runoff") == 1', ORDER, "uses Attribute, which rules may not use"),
    ('len(pos) == 4', ORDER, "uses the name 'len'; only pos[...] is defined"),
    ('abs(pos["Runoff"], 2) == 1', ORDER, "calls something other than abs(x)"),
    ('pos["Runoff"] ** 2 == 1', ORDER, "uses Pow, which rules may not use"),
    ('[x for x in pos] == []', ORDER, "uses ListComp"),
    ('1 == 1', ORDER, "names no entity"),
])
def test_bad_rules_are_caught_before_anything_runs(rule, structure, reason):
    assert reason in check_rule(3, rule, STEPS, structure)


def test_a_rule_text_must_name_the_rules_entities():
    assert check_rule_text(1, "Evaporation comes before runoff.",
                           'pos["Evaporation"] < pos["Runoff"]') is None
    assert check_rule_text(2, "Evaporation comes first.", 'pos["Evaporation"] < pos["Runoff"]') \
        == "constraint 2's text does not mention 'Runoff', which its rule uses"


def test_conditional_constraints_need_if_and_an_implication():
    rule = '(not group["Evaporation"] == "air") or group["Runoff"] == "land"'
    assert is_conditional("If evaporation is in the air, runoff is on land.", rule)
    assert is_conditional("Runoff is on land if evaporation is in the air.",
                          'group["Runoff"] == "land" if group["Evaporation"] == "air" else True')
    assert not is_conditional("Evaporation is not in the air or runoff is on land.", rule)
    assert not is_conditional("If evaporation is in the air, so is runoff.",
                              'group["Runoff"] == group["Evaporation"]')


GOOD_RULES = [Constraint(text="Evaporation is in the air.", rule='group["Evaporation"] == "air"'),
              Constraint(text="If Evaporation is in the air, Runoff is on land.",
                         rule='(not group["Evaporation"] == "air") or group["Runoff"] == "land"')]


def test_good_constraints_pass():
    assert check_constraints(GOOD_RULES, STEPS, GROUPS, conditional=True) is None


@pytest.mark.parametrize("constraints, conditional, reason", [
    (GOOD_RULES[:1], False, "at least two constraints"),
    ([GOOD_RULES[0], GOOD_RULES[0].model_copy(update={"text": "Evaporation is up in the air."})],
     False, "same rule"),
    ([GOOD_RULES[0], Constraint(text="Runoff is on land.", rule='group["Runoff"] == "lnd"')],
     False, "constraint 2 uses 'lnd'"),
    ([GOOD_RULES[0], Constraint(text="It is on land.", rule='group["Runoff"] == "land"')],
     False, "constraint 2's text does not mention 'Runoff'"),
    ([GOOD_RULES[0], Constraint(text="Runoff is on land.", rule='group["Runoff"] == "land"')],
     True, "no if-then constraint"),
])
def test_bad_constraints_are_caught(constraints, conditional, reason):
    assert reason in check_constraints(constraints, STEPS, GROUPS, conditional)


def test_entities_must_be_distinct_names_from_the_source():
    assert check_entities(STEPS, PASSAGE) is None
    assert "needs 3 to 5" in check_entities(STEPS[:2], PASSAGE)
    assert "same name" in check_entities(["Runoff", "runoff", "Evaporation"], PASSAGE)
    assert "'Glaciers' is not taken from the source" in check_entities(
        ["Evaporation", "Runoff", "Glaciers"], PASSAGE)
    assert "not a clean name" in check_entities(["Evaporation", "Runoff", "..."], PASSAGE)


@pytest.mark.parametrize("kind, groups, n, reason", [
    ("grouping", ["air", "land"], 4, None),
    ("assignment", ["first", "second", "third"], 3, None),
    ("grouping", ["air", "Air "], 4, "distinct"),
    ("grouping", ["air", "land", "sea", "ice"], 4, "needs 2 or 3 groups"),
    ("assignment", ["first", "second"], 3, "needs 3 options"),
])
def test_groups_fit_the_structure(kind, groups, n, reason):
    problem = check_groups(kind, groups, n)
    assert problem is None if reason is None else reason in problem


@pytest.mark.parametrize("question, reason", [
    ("In which order do the four stages of the water cycle happen?", None),
    ("Determine the stage of the water cycle each process belongs to.", None),
    ("Water cycle order?", "too short"),
    ("Which order of stages does the passage describe for the water cycle?", "the passage"),
    ("The water cycle has four stages in a fixed order.", "asks for nothing"),
])
def test_questions_must_ask_for_the_arrangement(question, reason):
    problem = check_puzzle_question(question)
    assert problem is None if reason is None else reason in problem


SOLUTION = {"Evaporation": 1, "Condensation": 2, "Precipitation": 3, "Runoff": 4}


def test_the_teachers_assignment_must_be_the_unique_solution():
    assert check_assignment(STEPS, list(SOLUTION.items()), SOLUTION) is None
    assert check_assignment(STEPS, SOLUTION, SOLUTION) is None


@pytest.mark.parametrize("pairs, reason", [
    ([("Evaporation", 1), ("Condensation", 2), ("Precipitation", 4), ("Runoff", 3)],
     "differs from the unique solution: Precipitation 4 (should be 3), Runoff 3 (should be 4)"),
    ([("Evaporation", 1), ("Evaporation", 2), ("Precipitation", 3), ("Runoff", 4)],
     "placed 'Evaporation' more than once"),
    ([("Evaporation", 1), ("Precipitation", 3), ("Runoff", 4)], "did not place 'Condensation'"),
])
def test_wrong_assignments_are_caught(pairs, reason):
    assert reason in check_assignment(STEPS, pairs, SOLUTION)


def test_explanations_must_say_something():
    assert check_explanation("Evaporation is fixed first, so condensation follows it.") is None
    assert "says nothing" in check_explanation("It is so, as it is.")


# -- the flow -------------------------------------------------------------------------------------

def _teacher():
    """Writer: a unique puzzle of the asked structure over three words of the passage (every
    third one ambiguous). Teacher: the solution, with two entities swapped on the 2nd, 6th, ...
    answer."""
    def reply(prompt, schema):
        props = schema.get("properties", {})
        if "entities" in props and "\nWrite ONE" in prompt:
            words = [w for w in prompt.split('"""')[1].split()
                     if w.isalpha() and len(w) > 4 and content_words(w)]
            a, b, c = list(dict.fromkeys(w.capitalize() for w in words))[:3]
            reply.puzzles += 1
            ambiguous = reply.puzzles % 3 == 0
            if "groups" not in props:  # ordering: a first, b before c
                rules = [{"text": f"{a} comes first.", "rule": f'pos["{a}"] == 1'},
                         {"text": f"If {a} is first, then {c} is last.",
                          "rule": f'(not pos["{a}"] == 1) or pos["{c}"] == 3'}]
                groups = {}
            elif "as many as there are entities" in prompt:  # assignment
                rules = [{"text": f"{a} is red.", "rule": f'group["{a}"] == "red"'},
                         {"text": f"{b} is not blue.", "rule": f'group["{b}"] != "blue"'}]
                groups = {"groups": ["red", "green", "blue"]}
            else:
                rules = [{"text": f"{a} is in the north.", "rule": f'group["{a}"] == "north"'},
                         {"text": f"If {a} is in the north, then {b} is in the south.",
                          "rule": f'(not group["{a}"] == "north") or group["{b}"] == "south"'},
                         {"text": f"{c} and {b} are in the same group.",
                          "rule": f'group["{c}"] == group["{b}"]'}]
                groups = {"groups": ["north", "south"]}
            return {"entities": [a, b, c], **groups,
                    "constraints": rules[1:] if ambiguous else rules,
                    "question": "Work out the complete arrangement of these three items."}
        if "assignment" in props:
            place = schema["$defs"]["Placement"]["properties"]
            a, b, c = place["entity"]["enum"]
            if "position" in place:
                values = [1, 2, 3]
            elif "matched with a different one" in prompt:
                values = ["red", "green", "blue"]
            else:
                values = ["north", "south", "south"]
            reply.answers += 1
            if reply.answers % 4 == 2:
                values = [values[1], values[0], values[2]]
            key = "position" if "position" in place else "group"
            return {"explanation": f"The first condition fixes {a}; the others then leave one "
                                   f"place each for {b} and {c}.",
                    "assignment": [{"entity": e, key: v} for e, v in zip((a, b, c), values)]}
        return None
    reply.puzzles = reply.answers = 0
    return skill_teacher(reply)


def test_flow_keeps_only_unique_puzzles_solved_right(corpus, tmp_path):
    teacher = _teacher()
    summary, data, rejected = run_skill("analytical_reasoning", corpus, tmp_path / "out",
                                        teacher, num=4, flow={"refine_rounds": 0})
    assert summary["complete"] and len(data) == 4
    for rec in data:
        meta, messages = rec["metadata"], rec["messages"]
        task = meta["task"]
        a, b, c = task["entities"]
        assert meta["split"] == "analytical_reasoning"
        assert meta["validator_scores"]["solutions"] == 1
        assert [m["role"] for m in messages] == ["system", "user", "assistant"]
        user, answer = messages[1]["content"], messages[2]["content"]
        assert user.startswith("Work out the complete arrangement")
        assert "\nConditions:\n1. " in user and "rule" not in user and "pos[" not in user
        assert meta["instruction"] == user
        if meta["instruction_type"] in ("linear_ordering", "conditional_ordering"):
            assert meta["structure"] == "ordering"
            assert meta["solution"] == {a: 1, b: 2, c: 3}
            assert f"each take a different position, numbered 1 to 3" in user
            assert answer.endswith(f"Answer:\n1. {a}\n2. {b}\n3. {c}")
        elif meta["instruction_type"] == "assignment":
            assert meta["structure"] == "assignment"
            assert meta["solution"] == {a: "red", b: "green", c: "blue"}
            assert answer.endswith(f"Answer:\n{a}: red\n{b}: green\n{c}: blue")
        else:
            assert meta["structure"] == "grouping"
            assert meta["solution"] == {a: "north", b: "south", c: "south"}
            assert answer.endswith(f"Answer:\n{a}: north\n{b}: south\n{c}: south")
    reasons = {r["reason"].split(":")[0] for r in rejected}
    # the scripted writer repeats its puzzle for a passage's second item: the dedup gate's early
    # check rejects that copy before it is answered
    assert reasons <= {"puzzle is ambiguous", "teacher's assignment differs from the unique "
                       "solution", "conditional puzzle has no if-then constraint",
                       "exact duplicate"}
    assert any(r["reason"].startswith("puzzle is ambiguous: ") for r in rejected)
    wrong = [r for r in rejected if r["reason"].startswith("teacher's assignment differs")]
    assert wrong
    # ambiguous puzzles were rejected before the teacher was asked to solve them
    # (every unique puzzle above opens with its fixing condition; ambiguous ones lack it)
    solved = [p[-1].content for p in teacher.prompts
              if p[-1].content.startswith("Solve this puzzle")]
    assert len(solved) >= len(data) + len(wrong)
    assert all(re.search(r"\n1\. \w+ (comes first|is red|is in the north)\.\n", p) for p in solved)
    ambiguous = next(r for r in rejected if r["reason"].startswith("puzzle is ambiguous"))
    count = ambiguous["reason"].split(": ")[1].split()[0]
    assert int(count) > 1 and f"solutions {count}," in ambiguous["detail"]
    assert '"constraints"' in ambiguous["raw"]
