"""Fermi estimation: the writer asks for a quantity, the teacher (calculator in hand) answers
with named assumptions, one arithmetic expression over them and the estimate. The validators
recompute the expression with the safe calculator and trace every number in it to an
assumption, so a record's arithmetic is right and its reasoning is visible."""

from __future__ import annotations

import ast
import math
import re
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from agents.fields import line_field
from agents.flow import FlowContext
from agents.rag.validators import (META_REFERENCE, check_adds_information, check_on_topic,
                                   check_repetition, content_words)
from agents.task import Draft, TaskSkill
from agents.tools import CalculatorError, calculate

TOLERANCE = 0.05  # the estimate may round its calculation by this much (relative)
# Unit conversions a calculation may use without naming them as assumptions.
CONVERSIONS = frozenset({7, 12, 24, 52, 60, 100, 365, 1000, 3600, 1_000_000})
QUANTITY_CUE = re.compile(
    r"\b(how (many|much|long|far|often|big|large|heavy|fast|tall|deep|wide)|estimate|"
    r"approximately|roughly|about how|what is the (total|number|amount|mass|weight|volume|area|"
    r"cost|length|size))\b", re.IGNORECASE)
REQUEST = re.compile(r"^\W*(estimate|approximate|calculate|work out)\b", re.IGNORECASE)


class FermiTask(BaseModel):
    question: str = line_field(12, 300)
    unit: str = Field(min_length=1, max_length=30)


class Assumption(BaseModel):
    # the unit goes in the name ("water per person per day in litres"): one string fewer per
    # assumption keeps the reply inside the token budget (the tiny teacher pretty-prints)
    name: str = Field(min_length=2, max_length=60)
    value: float


class FermiAnswer(BaseModel):
    assumptions: list[Assumption] = Field(min_length=2, max_length=4)
    calculation: str = Field(min_length=3, max_length=100)
    estimate: float
    explanation: Annotated[str, StringConstraints(min_length=10, max_length=160)]


# -- shared numeric helpers (brain_teaser uses them too) ------------------------------------------

def recompute(expression: str) -> tuple[float | None, str | None]:
    """(value, None), or (None, why) when the safe calculator refuses or fails."""
    if not expression.strip(" .…"):
        return None, "is empty or a placeholder"
    try:
        value = float(calculate(expression))
    except CalculatorError as exc:
        return None, f"does not evaluate: {exc}"
    if not math.isfinite(value):
        return None, "is not a finite number"
    return value, None


def expression_numbers(expression: str) -> list[float]:
    """The number literals written in an expression (a leading minus is an operator, not part of
    the literal). Call only on an expression the calculator accepted."""
    tree = ast.parse(expression.strip(), mode="eval")
    return [float(n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, int | float)
            and not isinstance(n.value, bool)]


def is_calculation(expression: str) -> bool:
    """True when the expression computes something (an operator or a function call)."""
    tree = ast.parse(expression.strip(), mode="eval")
    return any(isinstance(n, ast.BinOp | ast.Call) for n in ast.walk(tree))


def same_number(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def relative_difference(value: float, reference: float) -> float:
    return abs(value - reference) / abs(reference) if reference else abs(value)


def source_text(draft: Draft) -> str:
    """What a task may draw on: the passage the writer saw (maybe transformed) and the seed."""
    if draft.passage == draft.chunk.text:
        return draft.passage
    return draft.passage + "\n" + draft.chunk.text


def num(value: float) -> str:
    """A number as a reader writes it: 12,000,000 or 0.35."""
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1e15:
        return f"{value:.3g}"
    if abs(value) >= 1000 or value == int(value):
        return f"{round(value):,}"
    return f"{value:.4g}"


# -- validators -----------------------------------------------------------------------------------

def check_fermi_question(question: str, unit: str, passage: str) -> str | None:
    if len(question.split()) < 6:
        return "question too short"
    if META_REFERENCE.search(question):
        return "question refers to 'the passage' instead of naming its subject"
    if not QUANTITY_CUE.search(question):
        return "not an estimation question: it asks for no quantity"
    if not question.rstrip().endswith("?") and not REQUEST.match(question):
        return "not a question or request"
    if not re.search(r"[A-Za-z]", unit):
        return "unit names nothing"
    return check_repetition(question) or check_on_topic(question, [passage])


def check_assumptions(assumptions: list[Assumption]) -> str | None:
    if len(assumptions) < 2:
        return "a Fermi estimate needs at least two assumptions"
    names = [" ".join(a.name.lower().split()) for a in assumptions]
    for a, name in zip(assumptions, names):
        if not content_words(name):
            return f"assumption {a.name!r} names nothing"
        if not math.isfinite(a.value) or a.value <= 0:
            return f"assumption {a.name!r} has value {a.value:g}; quantities must be positive"
    if len(set(names)) < len(names):
        return "two assumptions have the same name"
    return None


def check_traceable(calculation: str, assumptions: list[Assumption]) -> str | None:
    """Every number in the calculation is an assumption's value (or a unit conversion), and
    every assumption is used: the reader can follow the arithmetic back to the assumptions."""
    numbers = expression_numbers(calculation)
    if len(numbers) < 2:
        return "calculation combines fewer than two numbers"
    for n in numbers:
        if not any(same_number(n, a.value) for a in assumptions) \
                and not any(same_number(n, c) for c in CONVERSIONS):
            return f"calculation uses {n:g}, which is not among the assumptions"
    for a in assumptions:
        if not any(same_number(a.value, n) for n in numbers):
            return f"assumption {a.name!r} ({a.value:g}) is not used in the calculation"
    return None


def check_estimate(estimate: float, computed: float, tolerance: float = TOLERANCE) -> str | None:
    if not math.isfinite(estimate):
        return "estimate is not a finite number"
    if estimate <= 0:
        return f"estimate must be positive, got {estimate:g}"
    if computed <= 0:
        return f"calculation gives {computed:g}, not a positive quantity"
    diff = relative_difference(estimate, computed)
    if diff > tolerance:
        return f"estimate {estimate:g} differs from its calculation ({computed:g}) by {diff:.0%}"
    return None


def check_explanation(question: str, explanation: str) -> str | None:
    if len(content_words(explanation)) < 3:
        return "explanation says nothing"
    return check_repetition(explanation) or check_adds_information(question, explanation)


class FermiSkill(TaskSkill):
    task_model = FermiTask
    answer_model = FermiAnswer

    def __init__(self, folder) -> None:
        super().__init__(folder)
        self._env.filters["num"] = num

    def instruction_text(self, draft: Draft) -> str:
        return draft.task.question

    def check_task(self, draft: Draft) -> str | None:
        task: FermiTask = draft.task
        return check_fermi_question(task.question, task.unit, source_text(draft))

    async def validate(self, ctx: FlowContext, draft: Draft) -> str | None:
        answer: FermiAnswer = draft.answer
        draft.scores["assumptions"] = len(answer.assumptions)
        if problem := check_assumptions(answer.assumptions):
            return problem
        computed, problem = recompute(answer.calculation)
        if problem:
            return f"calculation {problem}"
        draft.scores["relative_error"] = relative_difference(answer.estimate, computed)
        draft.extra.update({"estimate": answer.estimate, "computed": computed,
                            "calculation": answer.calculation.strip(), "unit": draft.task.unit})
        return (check_traceable(answer.calculation, answer.assumptions)
                or check_estimate(answer.estimate, computed)
                or check_explanation(draft.task.question, answer.explanation))

    def assistant_turn(self, draft: Draft) -> str:
        return self.render("assistant_turn.j2", **self._values(draft),
                           computed=draft.extra["computed"])


SKILL = FermiSkill
