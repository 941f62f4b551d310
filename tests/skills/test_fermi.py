"""Fermi: hand-written validator cases, and the flow (with the calculator tool loop) through a
scripted teacher over real files."""

import math

import pytest

from agents.fermi.skill import (Assumption, FermiAnswer, check_assumptions, check_estimate,
                                check_explanation, check_fermi_question, check_traceable,
                                expression_numbers, num, recompute)
from tests.skill_harness import run_skill, skill_teacher

PASSAGE = ("Honey bees live in colonies of 20,000 to 80,000 workers. Bees make honey by "
           "evaporating nectar; a hive in a good year yields about 25 kilograms of honey.")
QUESTION = ("Approximately how many kilograms of honey do all the bee hives in France produce "
            "each year?")
ASSUMPTIONS = [Assumption(name="hives in France", value=1_500_000),
               Assumption(name="honey per hive per year", value=20)]
GOOD = FermiAnswer(assumptions=ASSUMPTIONS, calculation="1500000 * 20", estimate=30_000_000,
                   explanation="Each hive yields its honey once a season, so the hive count times "
                               "the yield per hive gives the national harvest.")


def test_a_self_contained_estimation_question_passes():
    assert check_fermi_question(QUESTION, "kilograms", PASSAGE) is None
    assert check_fermi_question("Estimate the yearly honey harvest of bee hives in France.",
                                "kg", PASSAGE) is None


@pytest.mark.parametrize("question, unit, reason", [
    ("How many bees?", "bees", "too short"),
    ("How many kilograms of honey does the passage say hives in France make?", "kg", "the passage"),
    ("Why do honey bees in France evaporate nectar to make honey?", "kg", "asks for no quantity"),
    ("The total number of bee hives in France is roughly known by farmers", "hives",
     "not a question or request"),
    (QUESTION, "...", "unit names nothing"),
    ("Roughly how many cars drive through the streets of Paris every single day?", "cars",
     "shares no subject word"),
    ("How many " + "hives hives hives " * 8 + "?", "hives", "repetition"),
])
def test_bad_questions_are_caught(question, unit, reason):
    assert reason in check_fermi_question(question, unit, PASSAGE)


def test_good_answer_passes_every_check():
    assert check_assumptions(GOOD.assumptions) is None
    assert recompute(GOOD.calculation) == (30_000_000.0, None)
    assert check_traceable(GOOD.calculation, GOOD.assumptions) is None
    assert check_estimate(GOOD.estimate, 30_000_000.0) is None
    assert check_explanation(QUESTION, GOOD.explanation) is None


@pytest.mark.parametrize("assumptions, reason", [
    (ASSUMPTIONS[:1], "at least two assumptions"),
    ([ASSUMPTIONS[0], Assumption(name="the of", value=3)], "names nothing"),
    ([ASSUMPTIONS[0], Assumption(name="honey per hive", value=-20)], "must be positive"),
    ([ASSUMPTIONS[0], Assumption(name="honey per hive", value=0)], "must be positive"),
    ([ASSUMPTIONS[0], Assumption(name="honey per hive", value=math.inf)],
     "must be positive"),
    ([ASSUMPTIONS[0], Assumption(name="Hives in  France", value=3)], "same name"),
])
def test_bad_assumptions_are_caught(assumptions, reason):
    assert reason in check_assumptions(assumptions)


@pytest.mark.parametrize("expression, reason", [
    ("1500000 * ", "does not evaluate: syntax error"),
    ("1500000 / 0", "does not evaluate: division by zero"),
    ("__import__('os').system('true')", "does not evaluate"),
    ("...", "is empty or a placeholder"),
    ("sqrt(-20)", "does not evaluate"),
])
def test_calculations_the_calculator_refuses_are_reported(expression, reason):
    value, problem = recompute(expression)
    assert value is None and reason in problem


@pytest.mark.parametrize("calculation, reason", [
    ("1500000", "fewer than two numbers"),
    ("1500000 * 20 * 3", "uses 3, which is not among the assumptions"),
    ("1500000 * 25", "uses 25, which is not among the assumptions"),
    ("1500000 * 1500000", "'honey per hive per year' (20) is not used"),
])
def test_untraceable_calculations_are_caught(calculation, reason):
    assert reason in check_traceable(calculation, ASSUMPTIONS)


def test_unit_conversions_and_scientific_notation_are_traceable():
    per_day = [Assumption(name="hives in France", value=1.5e6),
               Assumption(name="honey per hive per day", value=0.06)]
    assert check_traceable("1.5e6 * 0.06 * 365", per_day) is None
    assert sorted(expression_numbers("-(2.5 * 1e3) + sqrt(16)")) == [2.5, 16.0, 1000.0]


@pytest.mark.parametrize("estimate, computed, reason", [
    (40_000_000, 30_000_000, "differs from its calculation (3e+07) by 33%"),
    (3_000_000, 30_000_000, "by 90%"),
    (-5, 30_000_000, "must be positive"),
    (0, 30_000_000, "must be positive"),
    (math.inf, 30_000_000, "not a finite number"),
    (math.nan, 30_000_000, "not a finite number"),
    (10, -10, "not a positive quantity"),
])
def test_estimates_that_do_not_follow_from_the_calculation_are_caught(estimate, computed, reason):
    assert reason in check_estimate(estimate, computed)


def test_an_estimate_may_round_within_five_percent():
    assert check_estimate(31_000_000, 30_000_000) is None
    assert check_estimate(28_600_000, 30_000_000) is None
    assert check_estimate(32_000_000, 30_000_000) is not None


@pytest.mark.parametrize("explanation, reason", [
    ("It is so.", "says nothing"),
    ("Approximately how many kilograms of honey do hives in France produce", "restates"),
])
def test_empty_explanations_are_caught(explanation, reason):
    assert reason in check_explanation(QUESTION, explanation)


def test_numbers_are_written_for_readers():
    assert [num(x) for x in (30_000_000, 0.35, 12.0, 1234.6, 2e16)] == [
        "30,000,000", "0.35", "12", "1,235", "2e+16"]


def _fermi_teacher():
    """Writer asks about the passage's topic; the teacher first calls the calculator, then
    answers, with a misestimated answer on every second item."""
    def reply(prompt, schema):
        props = schema.get("properties", {})
        if "unit" in props and "\nWrite ONE" in prompt:
            topic = " ".join(prompt.split('"""')[1].split()[:5])
            kind = prompt.split("\nWrite ONE", 1)[1].split('"')[1]
            return {"question": f"Approximately how many tonnes of {topic} does a large city "
                                f"use each year ({kind})?", "unit": "tonnes"}
        if "tool" in props:  # one calculator call, then ready to answer
            return {"tool": "none", "input": ""} if "You called calculator" in prompt \
                else {"tool": "calculator", "input": "2000000 * 0.5 * 365"}
        if "assumptions" in props:
            reply.answers += 1
            estimate = 365_000_000 if reply.answers % 2 else 500_000_000
            return {"assumptions": [{"name": "people in the city", "value": 2_000_000},
                                    {"name": "use per person per day in kg", "value": 0.5}],
                    "calculation": "2000000 * 0.5 * 365 / 1000", "estimate": estimate / 1000,
                    "explanation": "Daily use per person times the population, over a year, "
                                   "converted from kilograms to tonnes."}
        return None
    reply.answers = 0
    return skill_teacher(reply)


def test_flow_records_assumptions_arithmetic_and_tool_calls(corpus, tmp_path):
    teacher = _fermi_teacher()
    summary, data, rejected = run_skill("fermi", corpus, tmp_path / "out", teacher, num=2,
                                        flow={"refine_rounds": 1})
    assert summary["complete"] and len(data) == 2
    types = {"population_based", "physical_quantity", "time_and_rate", "economic",
             "resource_consumption"}
    for rec in data:
        meta = rec["metadata"]
        assert meta["split"] == "fermi" and meta["instruction_type"] in types
        assert meta["computed"] == pytest.approx(365_000) and meta["unit"] == "tonnes"
        assert meta["estimate"] == pytest.approx(365_000)
        assert meta["calculation"] == "2000000 * 0.5 * 365 / 1000"
        assert meta["tool_calls"] == [{"tool": "calculator", "input": "2000000 * 0.5 * 365",
                                       "ok": True, "output": "365000000.0"}]
        assert meta["validator_scores"]["relative_error"] == 0
        assert meta["refinement_rounds"] == 1
        roles = [m["role"] for m in rec["messages"]]
        assert roles == ["system", "user", "assistant"]
        assert rec["messages"][1]["content"].startswith("Approximately how many tonnes of")
        answer = rec["messages"][2]["content"]
        assert "\n1. people in the city: 2,000,000\n2. use per person per day in kg: 0.5\n" \
            in answer
        assert "Calculation: 2000000 * 0.5 * 365 / 1000 ≈ 365,000" in answer
        assert answer.rstrip().endswith("Estimate: roughly 365,000 tonnes.")
    # the teacher saw the calculator's result before answering
    respond_prompts = [p[-1].content for p in teacher.prompts
                       if p[-1].content.startswith("Answer this question")]
    assert any("calculator('2000000 * 0.5 * 365') -> 365000000.0" in p for p in respond_prompts)
    assert any(r["stage"] == "validate" and "estimate 500000 differs from its calculation "
               "(365000) by 37%" in r["reason"] for r in rejected)
