"""Brain teasers: the writer states a puzzle and its intended answer; the teacher solves the
puzzle without seeing that answer, step by step; the item is kept when they agree. Numeric
answers carry a check expression the safe calculator recomputes; riddles must not give their
answer away; text answers must be real answers, not the puzzle copied back."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from agents.fermi.skill import expression_numbers, is_calculation, recompute, source_text
from agents.flow import FlowContext
from agents.rag.validators import (META_REFERENCE, check_adds_information, check_on_topic,
                                   check_repetition, content_words)
from agents.spec import Subcategory
from agents.task import Draft, TaskSkill

Step = Annotated[str, StringConstraints(min_length=5, max_length=120)]
# a sentence that asks: a puzzle without "?" must at least tell the solver what to find
ASKS = re.compile(r"(?:^|[.!:]\s+)(what|who|which|how|find|determine|work out|figure out|guess|"
                  r"name|can you)\b", re.IGNORECASE)
NON_ANSWER = re.compile(r"\b(i don'?t know|not sure|cannot be (determined|known|solved)|no answer|"
                        r"unknown|not enough information|impossible to (say|tell|know))\b",
                        re.IGNORECASE)
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?")
NUMBER_WORDS = {w: float(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty".split())}
NUMBER_WORDS |= {w: float(10 * i) for i, w in enumerate(
    "thirty forty fifty sixty seventy eighty ninety".split(), 3)}
NUMBER_WORDS |= {"hundred": 100.0, "thousand": 1000.0, "million": 1e6, "dozen": 12.0,
                 "half": 0.5, "twice": 2.0, "double": 2.0, "thrice": 3.0, "triple": 3.0,
                 "once": 1.0, "quarter": 0.25}
REL_TOLERANCE = 1e-3  # puzzles have exact answers; this absorbs float noise and 3-digit rounding


class TextPuzzle(BaseModel):
    puzzle: str = Field(min_length=30, max_length=400)
    answer: str = Field(min_length=1, max_length=100)


class NumericPuzzle(BaseModel):
    puzzle: str = Field(min_length=30, max_length=400)
    answer: float


class TextSolution(BaseModel):
    steps: list[Step] = Field(min_length=2, max_length=4)
    final_answer: str = Field(min_length=1, max_length=160)


class NumericSolution(BaseModel):
    steps: list[Step] = Field(min_length=2, max_length=4)
    final_answer: float
    check_expression: str = Field(min_length=3, max_length=120)


def numeric(sub: Subcategory) -> bool:
    return sub.expects == "numeric"


def stem(word: str) -> str:
    """A crude stem, enough for 'keys'/'key' and 'dancing'/'dance' to meet."""
    for suffix in ("ing", "ed", "es", "s", "e"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def stems(text: str) -> set[str]:
    return {stem(w) for w in content_words(text)}


def numbers_in(text: str) -> list[float]:
    """Numbers written as digits or as words ('three', 'a dozen', 'twice')."""
    found = [float(n.replace(",", "")) for n in NUMBER.findall(text)]
    found += [NUMBER_WORDS[w] for w in re.findall(r"[a-z]+", text.lower()) if w in NUMBER_WORDS]
    return found


def exact(value: float) -> str:
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else f"{value:.6g}"


def numbers_agree(answer: float, reference: float) -> bool:
    """Equal up to float noise, or `answer` is `reference` rounded to the decimals it shows
    (0.33 for 1/3). An integer answer gets no rounding allowance: 23 is not 23.4."""
    if math.isclose(answer, reference, rel_tol=REL_TOLERANCE, abs_tol=1e-9):
        return True
    decimals = len(repr(answer).split(".")[1]) if "." in repr(answer) and answer != int(answer) \
        else 0
    return 0 < decimals <= 6 and round(reference, decimals) == answer


# -- validators -----------------------------------------------------------------------------------

def check_puzzle(puzzle: str, passage: str) -> str | None:
    if len(puzzle.split()) < 8:
        return "puzzle too short"
    if META_REFERENCE.search(puzzle):
        return "puzzle refers to 'the passage' instead of standing on its own"
    if "?" not in puzzle and not ASKS.search(puzzle.strip()):
        return "puzzle asks nothing"
    return check_repetition(puzzle) or check_on_topic(puzzle, [passage])


def check_intended_answer(task: TextPuzzle | NumericPuzzle, expects: str) -> str | None:
    """The writer's own answer: a number for numeric types (and the puzzle has numbers to work
    with); words for the others; for riddles, words the riddle does not already contain."""
    if expects == "numeric":
        if not math.isfinite(task.answer):
            return "intended answer is not a finite number"
        if not numbers_in(task.puzzle):
            return "numeric puzzle contains no numbers to work with"
        return None
    if not content_words(task.answer):
        return "intended answer names nothing"
    if expects == "hidden":
        given_away = stems(task.answer) & stems(task.puzzle)
        if stems(task.answer) and given_away == stems(task.answer):
            return f"riddle gives its answer away: {', '.join(sorted(given_away))} in the riddle"
    return None


def check_steps(puzzle: str, steps: list[str]) -> str | None:
    if len(steps) < 2:
        return "solution needs at least two steps"
    normal = [" ".join(s.lower().split()).strip(" .") for s in steps]
    for i, (step, text) in enumerate(zip(steps, normal), 1):
        if not content_words(step) and not NUMBER.search(step):
            return f"step {i} is empty of content"
    if len(set(normal)) < len(normal):
        return "two steps are the same"
    joined = " ".join(steps)
    return check_repetition(joined) or (
        "the steps only restate the puzzle" if check_adds_information(puzzle, joined) else None)


def check_text_answer(puzzle: str, final: str) -> str | None:
    """A real answer: has content, is no refusal, and is not the puzzle (or a long piece of it)
    copied back."""
    words = content_words(final)
    if not words:
        return "final answer is empty of content"
    if NON_ANSWER.search(final):
        return "final answer is a non-answer"
    normal_final = " ".join(final.lower().split()).strip(" .?!")
    normal_puzzle = " ".join(puzzle.lower().split())
    if normal_final and (normal_final in normal_puzzle and len(normal_final.split()) >= 5
                         or len(words) >= 4 and words <= content_words(puzzle)):
        return "final answer copies the puzzle"
    return None


def check_text_agreement(intended: str, final: str) -> str | None:
    if not stems(intended) & stems(final):
        return (f"teacher's answer {final.strip()!r} does not match the writer's "
                f"{intended.strip()!r}")
    return None


def check_numeric_answer(puzzle: str, solution: NumericSolution, checked: float | None,
                         problem: str | None) -> str | None:
    """`checked`/`problem` are `recompute(solution.check_expression)`."""
    if not math.isfinite(solution.final_answer):
        return "final answer is not a finite number"
    if problem:
        return f"check expression {problem}"
    assert checked is not None
    if not is_calculation(solution.check_expression):
        return "check expression is a bare number, not a calculation"
    given = numbers_in(puzzle)
    if not any(math.isclose(n, g) for n in expression_numbers(solution.check_expression)
               for g in given):
        return "check expression uses none of the puzzle's numbers"
    if not numbers_agree(solution.final_answer, checked):
        return (f"final answer {exact(solution.final_answer)} disagrees with its check "
                f"expression (= {exact(checked)})")
    if not any(numbers_agree(solution.final_answer, n) or numbers_agree(n, solution.final_answer)
               for n in numbers_in(" ".join(solution.steps))):
        return f"the steps never reach the final answer {exact(solution.final_answer)}"
    return None


def check_numeric_agreement(intended: float, final: float) -> str | None:
    if not (numbers_agree(final, intended) or numbers_agree(intended, final)):
        return f"teacher's answer {exact(final)} disagrees with the writer's {exact(intended)}"
    return None


class BrainTeaserSkill(TaskSkill):
    def __init__(self, folder) -> None:
        super().__init__(folder)
        self._env.filters["num"] = exact

    def task_schema(self, sub: Subcategory) -> type[BaseModel]:
        return NumericPuzzle if numeric(sub) else TextPuzzle

    def answer_schema(self, draft: Draft) -> type[BaseModel]:
        return NumericSolution if numeric(draft.sub) else TextSolution

    def instruction_text(self, draft: Draft) -> str:
        return draft.task.puzzle

    def check_task(self, draft: Draft) -> str | None:
        return (check_puzzle(draft.task.puzzle, source_text(draft))
                or check_intended_answer(draft.task, draft.sub.expects))

    async def validate(self, ctx: FlowContext, draft: Draft) -> str | None:
        task, answer = draft.task, draft.answer
        draft.extra["answer_type"] = "numeric" if numeric(draft.sub) else "text"
        if problem := check_steps(task.puzzle, answer.steps):
            return problem
        if numeric(draft.sub):
            checked, problem = recompute(answer.check_expression)
            if checked is not None:
                draft.extra.update({"final_answer": answer.final_answer, "checked": checked,
                                    "check_expression": answer.check_expression.strip()})
            return (check_numeric_answer(task.puzzle, answer, checked, problem)
                    or check_numeric_agreement(task.answer, answer.final_answer))
        draft.extra["final_answer"] = answer.final_answer.strip()
        return (check_text_answer(task.puzzle, answer.final_answer)
                or check_text_agreement(task.answer, answer.final_answer))

    def assistant_turn(self, draft: Draft) -> str:
        return self.render("assistant_turn.j2", **self._values(draft),
                           checked=draft.extra.get("checked"))


SKILL = BrainTeaserSkill
