"""Brain teasers: hand-written validator cases for numeric and text puzzles, and the flow through
a scripted teacher over real files."""

import math

import pytest

from agents.brain_teaser.skill import (NumericPuzzle, NumericSolution, TextPuzzle,
                                       check_intended_answer, check_numeric_agreement,
                                       check_numeric_answer, check_puzzle, check_steps,
                                       check_text_agreement, check_text_answer, numbers_agree,
                                       numbers_in, recompute)
from tests.skill_harness import run_skill, skill_teacher

PASSAGE = ("Honey bees live in colonies with a single queen. Worker bees perform a waggle dance "
           "to tell other foragers the direction of flowers. Bees make honey from nectar.")
MATH = ("A beekeeper has 3 hives with 12 frames each, and every frame holds 2 kilograms of "
        "honey. How many kilograms of honey can the beekeeper harvest?")
RIDDLE = ("I dance but have no music, I point the way but hold no map, and my partners follow "
          "my steps to the flowers. What am I?")
LOGIC = ("Three bees, Ada, Bea and Cy, guard a hive. Ada says Bea is the queen. Bea says she is a "
         "worker. Only the queen lies. Which bee is the queen?")
STEPS = ["Three hives with twelve frames each make 3 * 12 = 36 frames.",
         "Each frame holds 2 kilograms, so 36 * 2 = 72 kilograms in total."]
SOLUTION = NumericSolution(steps=STEPS, final_answer=72, check_expression="3 * 12 * 2")


def numeric_check(solution: NumericSolution, puzzle: str = MATH) -> str | None:
    checked, problem = recompute(solution.check_expression)
    return check_numeric_answer(puzzle, solution, checked, problem)


@pytest.mark.parametrize("puzzle", [MATH, RIDDLE, LOGIC,
                                    "Bees make honey in a strange way today. Find the number of "
                                    "flowers one bee visits for a spoon of honey."])
def test_well_formed_puzzles_pass(puzzle):
    assert check_puzzle(puzzle, PASSAGE) is None


@pytest.mark.parametrize("puzzle, reason", [
    ("What am I, bees?", "too short"),
    ("According to the passage, what do honey bees perform to tell foragers the way?",
     "the passage"),
    ("Honey bees perform a waggle dance for other foragers near the flowers of the hive.",
     "asks nothing"),
    ("A train leaves the station at noon and runs at sixty miles an hour. When does it arrive?",
     "shares no subject word"),
    ("Bees bees bees bees " * 6 + "what?", "repetition"),
])
def test_bad_puzzles_are_caught(puzzle, reason):
    assert reason in check_puzzle(puzzle, PASSAGE)


def test_intended_answers_are_checked_per_type():
    assert check_intended_answer(NumericPuzzle(puzzle=MATH, answer=72), "numeric") is None
    assert check_intended_answer(TextPuzzle(puzzle=RIDDLE, answer="A waggle dance"),
                                 "text") is None
    assert check_intended_answer(TextPuzzle(puzzle=RIDDLE, answer="a worker bee"),
                                 "hidden") is None


@pytest.mark.parametrize("task, expects, reason", [
    (NumericPuzzle(puzzle=MATH, answer=math.inf), "numeric", "not a finite number"),
    (NumericPuzzle(puzzle="Bees fly between flowers all day long. How far do they fly?",
                   answer=5), "numeric", "no numbers"),
    (TextPuzzle(puzzle=RIDDLE, answer="the"), "text", "names nothing"),
    (TextPuzzle(puzzle=RIDDLE, answer="flowers"), "hidden", "gives its answer away: flower"),
    (TextPuzzle(puzzle=RIDDLE, answer="the dancing map"), "hidden", "gives its answer away"),
])
def test_bad_intended_answers_are_caught(task, expects, reason):
    assert reason in check_intended_answer(task, expects)


def test_number_words_count_as_puzzle_numbers():
    assert sorted(numbers_in("three hives, a dozen frames and 1,200 bees, twice")) == [
        2.0, 3.0, 12.0, 1200.0]


@pytest.mark.parametrize("steps, reason", [
    (STEPS[:1], "at least two steps"),
    ([STEPS[0], "..."], "step 2 is empty"),
    ([STEPS[0], STEPS[0].upper()], "two steps are the same"),
    (["A beekeeper has 3 hives with 12 frames each.", "How many kilograms of honey can the "
      "beekeeper harvest?"], "only restate the puzzle"),
])
def test_bad_steps_are_caught(steps, reason):
    assert reason in check_steps(MATH, steps)


def test_good_steps_and_numeric_answer_pass():
    assert check_steps(MATH, STEPS) is None
    assert numeric_check(SOLUTION) is None
    assert check_numeric_agreement(72, 72.0) is None


@pytest.mark.parametrize("change, reason", [
    ({"check_expression": "3 * 12 *"}, "check expression does not evaluate: syntax error"),
    ({"check_expression": "open('x')"}, "check expression does not evaluate"),
    ({"check_expression": "72"}, "bare number, not a calculation"),
    ({"check_expression": "..."}, "check expression is empty or a placeholder"),
    ({"check_expression": "8 * 9"}, "uses none of the puzzle's numbers"),
    ({"check_expression": "3 * 12 * 2 + 1"},
     "final answer 72 disagrees with its check expression (= 73)"),
    ({"final_answer": math.nan}, "not a finite number"),
    ({"steps": ["Count the hives and the frames in each.", "Multiply by the weight per frame."]},
     "the steps never reach the final answer 72"),
])
def test_bad_numeric_answers_are_caught(change, reason):
    assert reason in numeric_check(SOLUTION.model_copy(update=change))


def test_rounded_answers_agree_but_integers_get_no_allowance():
    assert numbers_agree(0.33, 1 / 3) and numbers_agree(1 / 3, 0.3333333)
    assert not numbers_agree(23, 23.4) and not numbers_agree(0.3, 0.36)
    assert "teacher's answer 73 disagrees with the writer's 72" in check_numeric_agreement(72, 73)


@pytest.mark.parametrize("final", ["A waggle dance.", "Bea is the queen",
                                   "the dance of a worker bee"])
def test_real_text_answers_pass(final):
    assert check_text_answer(LOGIC, final) is None


@pytest.mark.parametrize("final, reason", [
    ("the, of", "empty of content"),
    ("I don't know", "non-answer"),
    ("It cannot be determined from the clues.", "non-answer"),
    ("Ada says Bea is the queen.", "copies the puzzle"),
    ("Three bees Ada Bea guard hive queen", "copies the puzzle"),
])
def test_non_answers_and_copies_are_caught(final, reason):
    assert reason in check_text_answer(LOGIC, final)


def test_teacher_must_agree_with_the_writer():
    assert check_text_agreement("a waggle dance", "The waggle dance of the workers") is None
    assert check_text_agreement("Keys", "a key") is None
    assert "does not match the writer's 'a waggle dance'" in check_text_agreement(
        "a waggle dance", "a queen bee")


def _teacher():
    """Writer: a numeric puzzle (answer 36) or a text one (answer 'hidden treasure'), built on
    the passage's words. Teacher: right, except every third answer."""
    def reply(prompt, schema):
        props = schema.get("properties", {})
        if "puzzle" in props and "\nWrite ONE" in prompt:
            words = [w for w in prompt.split('"""')[1].split() if w.isalpha() and len(w) > 3]
            a, b = words[0].lower(), words[1].lower()
            if props["answer"]["type"] == "number":
                return {"puzzle": f"A club of {a} fans has 12 members and each brings 3 {b} "
                                  f"cards. How many {b} cards are there in all?", "answer": 36}
            return {"puzzle": f"I sit between {a} and {b}, unseen by all who pass. "
                              f"What am I?", "answer": "hidden treasure"}
        if "steps" in props:
            reply.answers += 1
            wrong = reply.answers % 3 == 0
            if "check_expression" in props:
                return {"steps": ["Twelve members each bring three cards: 12 * 3.",
                                  f"That makes {37 if wrong else 36} cards in all."],
                        "final_answer": 37 if wrong else 36,
                        "check_expression": "12 * 3 + 1" if wrong else "12 * 3"}
            return {"steps": ["Something unseen that rests between two things is buried.",
                              "Buried and valuable means treasure."],
                    "final_answer": "I don't know" if wrong else "A hidden treasure"}
        if "tool" in props:
            return {"tool": "none", "input": ""}
        return None
    reply.answers = 0
    return skill_teacher(reply)


def test_flow_checks_numeric_and_text_answers(corpus, tmp_path):
    summary, data, rejected = run_skill("brain_teaser", corpus, tmp_path / "out", _teacher(),
                                        num=4, flow={"refine_rounds": 0})
    assert summary["complete"] and len(data) == 4
    kinds = {r["metadata"]["answer_type"] for r in data}
    assert kinds == {"numeric", "text"}
    for rec in data:
        meta, messages = rec["metadata"], rec["messages"]
        assert meta["split"] == "brain_teaser"
        assert [m["role"] for m in messages] == ["system", "user", "assistant"]
        assert messages[1]["content"] == meta["task"]["puzzle"]
        answer = messages[2]["content"]
        assert answer.startswith("Step 1: ") and "\nStep 2: " in answer
        if meta["answer_type"] == "numeric":
            assert meta["instruction_type"] in {"math_puzzle", "number_sequence"}
            assert meta["checked"] == 36 and meta["check_expression"] == "12 * 3"
            assert answer.endswith("in all.\nCheck: 12 * 3 = 36\n\nAnswer: 36")
        else:
            assert meta["instruction_type"] in {"riddle", "lateral_thinking", "logic_puzzle"}
            assert meta["final_answer"] == "A hidden treasure"
            assert answer.endswith("means treasure.\n\nAnswer: A hidden treasure")
    reasons = [r["reason"] for r in rejected if r["stage"] == "validate"]
    assert reasons and all(
        reason in ("teacher's answer 37 disagrees with the writer's 36",
                   "final answer is a non-answer") for reason in reasons)
