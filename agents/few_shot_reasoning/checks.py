"""Few-shot reasoning validators: pure functions that return a rejection reason, or None.

An exemplar and the response share one format: step-by-step reasoning, then a short answer
line. `expects` (from skill.toml) adds a per-type rule: "number" answers are recomputed from
their check_expression with the calculator, "label" answers come from the exemplars' labels,
"analogy" questions have the A-is-to-B-as-C-is-to form, "yes_no" answers start with Yes or No.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Protocol

from agents.rag.validators import (META_REFERENCE, check_on_topic, check_repetition,
                                   content_words)
from agents.tools import CalculatorError, calculate

NUMBER = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?|(?<![\w.])-?\.\d+")
# numbers an expression may use without the question saying them: identity, halving or
# doubling, and percent ("half", "twice" and "percent" are words, not digits)
IMPLIED = (0.0, 1.0, 2.0, 100.0)
# the format's own labels inside a field: the text ran on into the answer or another example
LABELS = re.compile(r"\b(?:question|reasoning|answer|example \d+)\s*:|^\s*[QA]\s*:",
                    re.IGNORECASE | re.MULTILINE)
STEP_SPLIT = re.compile(r"(?<=[.!?;])\s+|\n+|\s+(?:then|so|therefore|thus)\s+", re.IGNORECASE)
ANALOGY = re.compile(r"\bis to\b.+\bas\b.+\bis to\b", re.IGNORECASE | re.DOTALL)
YES_NO = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)
NEAR_COPY = 0.8  # content-word Jaccard at or above which two questions are the same question


class Worked(Protocol):
    question: str
    reasoning: str
    answer: str
    check_expression: str


def numbers(text: str) -> list[float]:
    return [float(m.replace(",", "")) for m in NUMBER.findall(text)]


def steps(reasoning: str) -> list[str]:
    """Reasoning steps: sentences, lines, or clauses joined by then/so; three words or more."""
    return [s for s in STEP_SPLIT.split(reasoning) if s and len(s.split()) >= 3]


def _normal(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def similarity(a: str, b: str) -> float:
    wa, wb = content_words(a), content_words(b)
    if not wa or not wb:
        return float(_normal(a) == _normal(b))
    return len(wa & wb) / len(wa | wb)


def same_text(a: str, b: str) -> str | None:
    """'copies' / 'is a near copy of' / None."""
    if _normal(a) == _normal(b):
        return "copies"
    if similarity(a, b) >= NEAR_COPY:
        return "is a near copy of"
    return None


def matches_value(answer: float, value: float, decimals: int) -> bool:
    """The stated answer is the value, or the value rounded or cut to the answer's decimals."""
    if math.isclose(answer, value, rel_tol=1e-9, abs_tol=1e-9):
        return True
    if float(value).is_integer():
        return False
    return abs(answer - value) < 10 ** -decimals


def check_expression(expression: str, answer: str, context: str, who: str) -> str | None:
    """Recompute `expression` with the calculator; the answer must state its value, and the
    expression may only use numbers that the question or reasoning (`context`) gives."""
    if not expression.strip():
        return f"{who} has no check_expression"
    try:
        value = calculate(expression)
    except CalculatorError as exc:
        return f"{who}'s check_expression does not evaluate ({str(exc)[:80]})"
    stated = NUMBER.findall(answer)
    if not stated:
        return f"{who}'s answer contains no number"
    last = stated[-1].replace(",", "")
    decimals = len(last.split(".", 1)[1]) if "." in last else 0
    if not matches_value(float(last), float(value), decimals):
        shown = f"{value:.6g}" if isinstance(value, float) else str(value)
        return f"{who}'s check_expression gives {shown}, its answer says {last}"
    given = numbers(context) + list(IMPLIED)
    for n in numbers(expression):
        if not any(math.isclose(abs(n), abs(g)) for g in given):
            return (f"{who}'s check_expression uses {n:g}, which its question and reasoning "
                    "do not give")
    return None


def check_worked(question: str, reasoning: str, answer: str, expects: str, who: str,
                 min_steps: int = 2, max_answer_words: int = 12) -> str | None:
    """The shared format: step-by-step reasoning that reaches a short, one-line answer."""
    if not answer.strip():
        return f"{who} has an empty answer"
    if "\n" in answer.strip() or len(answer.split()) > max_answer_words:
        return f"{who}'s answer is not a short answer line"
    if LABELS.search(reasoning) or LABELS.search(answer):
        return f"{who}'s reasoning runs into another example"
    if len(steps(reasoning)) < min_steps:
        return f"{who}'s reasoning is not step by step (needs {min_steps} steps)"
    if expects == "number":
        stated = numbers(answer)
        if stated and not any(math.isclose(stated[-1], n) for n in numbers(reasoning)):
            return f"{who}'s reasoning does not reach its answer"
    elif expects == "yes_no":
        if not YES_NO.match(answer):
            return f"{who}'s answer does not start with Yes or No"
    else:
        words = content_words(answer)
        if words and not words & content_words(reasoning):
            return f"{who}'s reasoning does not reach its answer"
    if expects == "analogy" and not ANALOGY.search(question):
        return f"{who} is not an 'A is to B as C is to ?' analogy"
    return check_repetition(reasoning)


def check_exemplar(ex: Worked, passage: str, expects: str, index: int, min_steps: int = 2,
                   max_answer_words: int = 12) -> str | None:
    """One exemplar, as soon as it is written: drawn from the source, well-formed, correct."""
    who = f"exemplar {index}"
    if len(ex.question.split()) < 4:
        return f"{who}'s question is too short"
    if META_REFERENCE.search(ex.question):
        return f"{who} refers to 'the text' instead of naming its subject"
    if check_on_topic(ex.question, [passage]):
        return f"{who} is not drawn from the source"
    problem = check_worked(ex.question, ex.reasoning, ex.answer, expects, who, min_steps,
                           max_answer_words)
    if problem is None and expects == "number":
        problem = check_expression(ex.check_expression, ex.answer,
                                   f"{ex.question} {ex.reasoning}", who)
    return problem


def check_exemplar_set(exemplars: Sequence[Worked], k: int, expects: str) -> str | None:
    if len(exemplars) != k:
        return f"expected {k} exemplars, got {len(exemplars)}"
    for i, a in enumerate(exemplars, 1):
        for j, b in enumerate(exemplars[i:], i + 1):
            if same_text(a.question, b.question):
                return f"exemplars {i} and {j} ask the same question"
            if _normal(a.reasoning) == _normal(b.reasoning):
                return f"exemplars {i} and {j} share their reasoning"
    if expects == "label" and len({_normal(e.answer) for e in exemplars}) < 2:
        return "exemplars all have the same label"
    return None


def check_query(query: str, exemplars: Sequence[Worked], passage: str, expects: str) -> str | None:
    """The new question: drawn from the source, not one of the exemplars, not pre-answered."""
    if len(query.split()) < 4:
        return "query is too short"
    if LABELS.search(query):
        return "query carries its own reasoning or answer"
    for i, ex in enumerate(exemplars, 1):
        if copied := same_text(query, ex.question):
            return f"query {copied} exemplar {i}"
    if META_REFERENCE.search(query):
        return "query refers to 'the text' instead of naming its subject"
    if check_on_topic(query, [passage]):
        return "query is not drawn from the source"
    if expects == "analogy" and not ANALOGY.search(query):
        return "query is not an 'A is to B as C is to ?' analogy"
    return check_repetition(query)


def check_response(reasoning: str, answer: str, check_expr: str, query: str,
                   exemplars: Sequence[Worked], expects: str, min_steps: int = 2,
                   max_answer_words: int = 12) -> str | None:
    """The teacher's answer to the query follows the exemplars: reasoning, then an answer line
    of the same kind; it is not an exemplar's reasoning copied; numbers are recomputed."""
    problem = check_worked(query, reasoning, answer, expects, "response", min_steps,
                           max_answer_words)
    if problem:
        return problem
    for i, ex in enumerate(exemplars, 1):
        if same_text(reasoning, ex.reasoning):
            return f"response copies exemplar {i}'s reasoning"
    if expects == "label":
        labels = {_normal(e.answer) for e in exemplars}
        if _normal(answer) not in labels:
            return "response answer is not one of the exemplars' labels"
    if expects == "number":
        return check_expression(check_expr, answer, f"{query} {reasoning}", "response")
    return None
