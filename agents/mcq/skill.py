"""Multiple choice: the writer sets the key, the teacher answers independently (with the source
in view), and an item is kept only when they agree and the options are distinct."""

from __future__ import annotations

import functools
import re
from typing import Annotated

from pydantic import BaseModel, Field, create_model

from agents.fields import line_field
from agents.flow import FlowContext
from agents.rag.validators import content_words, lexical_support
from agents.task import Draft, TaskSkill

Option = Annotated[str, line_field(1, 160)]
NEGATION = re.compile(r"\b(EXCEPT|NOT)\b")


class Mcq(BaseModel):
    question: str = line_field(12, 400)
    options: list[Option] = Field(min_length=4, max_length=5)
    correct: int = Field(ge=1, le=5)


class Choice(BaseModel):
    reasoning: str = Field(min_length=10, max_length=600)
    choice: int = Field(ge=1, le=5)


def check_options(task: Mcq) -> str | None:
    if task.correct > len(task.options):
        return f"key {task.correct} is not one of the {len(task.options)} options"
    normal = [" ".join(o.lower().split()).strip(" .") for o in task.options]
    if len(set(normal)) < len(normal):
        return "two options are the same"
    if any(not content_words(o) and not re.search(r"\d", o) for o in task.options):
        return "an option is empty of content"
    if any(n in {"all of the above", "none of the above", "both a and b"} for n in normal):
        return "option refers to other options"
    return None


# how a stem that asks ends: a question mark, or an EXCEPT stem's colon or EXCEPT/NOT
_ASKING_END = re.compile(r"(\?|:|\b(EXCEPT|NOT))\W*$")
_CHOOSE = re.compile(r"^\W*(which|choose|select|identify|pick)\b", re.IGNORECASE)


def check_stem(question: str) -> str | None:
    """A stem asks something: it ends with a question mark (an EXCEPT stem with its colon or its
    EXCEPT), or asks to choose ("Which of these is true", "Select the ..."). Half of the records
    one 60-item mcq run kept were statements or fragments with four options under them ('facts
    and definitions,', 'The system clock is, thus, set from ...'; bench/RESULTS.md, session 19)."""
    if _ASKING_END.search(question) or _CHOOSE.match(question):
        return None
    return "not a question or request"


def check_negative_form(task: Mcq, expects: str) -> str | None:
    if expects == "negative" and not NEGATION.search(task.question):
        return "EXCEPT/NOT question lacks the word EXCEPT or NOT"
    return None


def check_agreement(task: Mcq, choice: int) -> str | None:
    if choice != task.correct:
        return f"teacher chose option {choice}, the key says {task.correct}"
    return None


@functools.lru_cache(maxsize=8)
def choice_model(n_options: int) -> type[BaseModel]:
    """The answer schema allows only the options that exist (one class per count, reused)."""
    return create_model("Choice", __base__=Choice, choice=(int, Field(ge=1, le=n_options)))


class McqSkill(TaskSkill):
    task_model = Mcq
    answer_model = Choice

    def instruction_text(self, draft: Draft) -> str:
        return draft.task.question

    def check_task(self, draft: Draft) -> str | None:
        task: Mcq = draft.task
        return (check_stem(task.question) or super().check_task(draft) or check_options(task)
                or check_negative_form(task, draft.sub.expects))

    def answer_schema(self, draft: Draft) -> type[BaseModel]:
        return choice_model(len(draft.task.options))

    async def validate(self, ctx: FlowContext, draft: Draft) -> str | None:
        task: Mcq = draft.task
        key = task.options[task.correct - 1]
        draft.scores["key_support"] = lexical_support(key, [draft.passage])
        draft.extra["answer_key"] = "ABCDE"[task.correct - 1]
        if problem := check_agreement(task, draft.answer.choice):
            return problem
        if draft.sub.expects != "negative" and content_words(key) \
                and draft.scores["key_support"] < 0.34:
            return "correct option not supported by the source"
        return None


SKILL = McqSkill
