"""Reading comprehension: a passage (transformed seed) and a question about it, answered from the
passage. The question type's `expects` picks the task and answer models and the validators;
refinement may also edit the passage itself (make the question unanswerable, change the answer).

Passage edits: the generic refinement rewrites the task object only. Rather than carrying a
rewritten passage inside the task (a 1,500-character passage plus the question would not fit a
bounded reply, and the instruct step would be asked for a passage it should not write), this
skill overrides `refine_task`: a goal that starts with "Edit the passage" asks the editor for a
small find/replace edit of the passage ({"find"} for a removal), which is checked and applied to
`draft.passage`. The answer is written afterwards, from the edited passage the student sees.
"""

from __future__ import annotations

import random
from functools import cache
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, \
    create_model

from agents.fields import line_field
from agents.flow import FlowContext, Suggestions, Trace
from agents.mcq.skill import Choice, Mcq, check_agreement, check_options
from agents.rag.validators import check_adds_information, check_on_topic, check_repetition, \
    check_specifics, content_words, lexical_support
from agents.reading_comprehension import validators as v
from agents.spec import Subcategory
from agents.task import Draft, TaskSkill

Expects = Literal["short", "number", "blank", "free", "essay", "list", "ordered", "matching",
                  "verdict", "choice", "refusal"]
PROSE_MAX = {"short": 300, "number": 300, "blank": 60, "free": 600, "essay": 900, "refusal": 300}
NOVEL = {"short", "free", "essay", "list"}  # forms whose answer must add to the question's words
DEFAULT_MIN_SUPPORT = 0.25  # every answer is mostly about the passage's subject
PASSAGE_GOAL = "edit the passage"


class TypeParams(BaseModel):
    """A question type's params in skill.toml, checked when the skill loads."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    level: Literal["literal", "inferential", "critical"]
    min_support: float = Field(DEFAULT_MIN_SUPPORT, ge=0, le=1)
    max_words: int | None = Field(None, ge=1)
    min_words: int | None = Field(None, ge=1)
    min_items: int = Field(2, ge=2, le=5)
    labels: tuple[str, ...] | None = Field(None, min_length=2, max_length=4)
    quotes_passage: bool = False
    key_support: float | None = Field(None, ge=0, le=1)


def type_params(sub: Subcategory) -> TypeParams:
    return TypeParams.model_validate(sub.params)


# -- task models --------------------------------------------------------------------------------

class RcQuestion(BaseModel):
    question: str = line_field(12, 300)


Option = Annotated[str, line_field(1, 120)]


class RcChoice(Mcq):
    """The mcq task with tighter bounds, so question and options fit one bounded reply."""

    question: str = line_field(12, 300)
    options: list[Option] = Field(min_length=4, max_length=5)


@cache
def verdict_task(labels: tuple[str, ...]) -> type[BaseModel]:
    return create_model("RcVerdictTask", question=(str, line_field(12, 300)),
                        key=(Literal[labels], ...))  # type: ignore[valid-type]


# -- answer models ------------------------------------------------------------------------------

@cache
def prose_answer(expects: str) -> type[BaseModel]:
    return create_model("Answer", answer=(str, Field(min_length=10 if expects == "refusal" else 1,
                                                     max_length=PROSE_MAX[expects])))


class Calculated(BaseModel):
    """A numerical answer with its arithmetic, which the calculator tool re-checks."""

    calculation: str = Field(min_length=1, max_length=120)
    answer: str = Field(min_length=1, max_length=200)


@cache
def verdict_answer(labels: tuple[str, ...]) -> type[BaseModel]:
    return create_model("Verdict", verdict=(Literal[labels], ...),  # type: ignore[valid-type]
                        explanation=(str, Field(min_length=10, max_length=400)))


Item = Annotated[str, StringConstraints(min_length=1, max_length=100)]


@cache
def items_answer(min_items: int) -> type[BaseModel]:
    return create_model("Items", items=(list[Item], Field(min_length=min_items, max_length=6)))


class Pair(BaseModel):
    left: str = Field(min_length=1, max_length=60)
    right: str = Field(min_length=1, max_length=90)


@cache
def pairs_answer(min_items: int) -> type[BaseModel]:
    return create_model("Pairs", pairs=(list[Pair], Field(min_length=min_items, max_length=5)))


# -- passage edits (refinement) -----------------------------------------------------------------

class Removal(BaseModel):
    find: str = Field(min_length=10, max_length=400)


class Change(BaseModel):
    find: str = Field(min_length=3, max_length=200)
    replace: str = Field(min_length=1, max_length=200)


def goal_kind(goal: str) -> Literal["task", "remove", "change"]:
    """A refinement goal edits the question ("task"), or the passage: "remove" (make the
    question unanswerable) or "change" (make the answer change)."""
    text = goal.strip().lower()
    if not text.startswith(PASSAGE_GOAL):
        return "task"
    return "remove" if "unanswerable" in text else "change"


def eligible_goals(goals: list[str], sub: Subcategory) -> list[str]:
    """Passage edits only where the answer is written after the edit: answerable types whose
    answer is not fixed by the writer (choice and verdict keys) nor tied to one copied sentence
    (fill-in-the-blank)."""
    editable = sub.answerable and sub.expects not in ("choice", "verdict", "blank")
    return [g for g in goals if editable or goal_kind(g) == "task"]


class ReadingComprehensionSkill(TaskSkill):
    task_model = RcQuestion

    def check_types(self) -> None:
        folder = self.folder
        for sub in self.spec.taxonomy:  # fail at load time, naming the type, not mid-run
            if sub.expects not in get_args(Expects):
                raise ValueError(f"{folder}/skill.toml: type {sub.name}: expects = "
                                 f"{sub.expects!r} is not one of {', '.join(get_args(Expects))}")
            try:
                p = type_params(sub)
            except ValidationError as exc:
                raise ValueError(f"{folder}/skill.toml: type {sub.name}: bad params: {exc}"
                                 ) from exc
            if (sub.expects == "refusal") == sub.answerable:
                raise ValueError(f"{folder}/skill.toml: type {sub.name}: expects = \"refusal\" "
                                 "goes with answerable = false, and only with it")
            if (sub.expects == "verdict") != (p.labels is not None):
                raise ValueError(f"{folder}/skill.toml: type {sub.name}: params.labels goes "
                                 "with expects = \"verdict\", and only with it")

    # -- per-item form ------------------------------------------------------------------------

    @staticmethod
    def answerable(draft: Draft) -> bool:
        return draft.sub.answerable and not (draft.extra.get("passage_edit") or {}).get(
            "kind") == "remove"

    def expects(self, draft: Draft) -> str:
        return draft.sub.expects if self.answerable(draft) else "refusal"

    def task_schema(self, sub: Subcategory) -> type[BaseModel]:
        if sub.expects == "choice":
            return RcChoice
        if sub.expects == "verdict":
            return verdict_task(type_params(sub).labels)
        return RcQuestion

    def answer_schema(self, draft: Draft) -> type[BaseModel]:
        expects, p = self.expects(draft), type_params(draft.sub)
        if expects == "choice":  # only the options that exist
            return create_model("Choice", __base__=Choice,
                                choice=(int, Field(ge=1, le=len(draft.task.options))))
        if expects == "verdict":
            return verdict_answer(p.labels)
        if expects in ("list", "ordered"):
            return items_answer(p.min_items)
        if expects == "matching":
            return pairs_answer(p.min_items)
        if expects == "number":
            return Calculated
        return prose_answer(expects)

    def _values(self, draft: Draft) -> dict[str, Any]:
        p = type_params(draft.sub)
        return super()._values(draft) | {
            "expects": self.expects(draft), "answerable": self.answerable(draft),
            "labels": list(p.labels or ()), "edits_passage": False}

    # -- texts --------------------------------------------------------------------------------

    def instruction_text(self, draft: Draft) -> str:
        task = draft.task
        options = getattr(task, "options", None) or []
        return "\n".join([task.question, *(f"{'ABCDE'[i]}) {o}" for i, o in enumerate(options))])

    def answer_body(self, draft: Draft) -> str:
        """The part of the answer that should come from the passage (grounding, novelty)."""
        a, expects = draft.answer, self.expects(draft)
        if expects in ("list", "ordered"):
            return "\n".join(x.strip() for x in a.items)
        if expects == "matching":
            return "\n".join(f"{p.left.strip()}: {p.right.strip()}" for p in a.pairs)
        if expects == "verdict":
            return a.explanation.strip()
        if expects == "choice":
            return a.reasoning.strip()
        return a.answer.strip()

    def assistant_turn(self, draft: Draft) -> str:
        a, expects = draft.answer, self.expects(draft)
        if expects == "choice":
            return (f"{a.reasoning.strip()}\n\nAnswer: {'ABCDE'[a.choice - 1]}) "
                    f"{draft.task.options[a.choice - 1]}")
        if expects == "verdict":
            return f"{a.verdict}. {a.explanation.strip()}"
        if expects == "ordered":
            return "\n".join(f"{i}. {x.strip()}" for i, x in enumerate(a.items, 1))
        if expects == "list":
            return "\n".join(f"- {x.strip()}" for x in a.items)
        if expects == "matching":
            return "\n".join(f"- {p.left.strip()}: {p.right.strip()}" for p in a.pairs)
        if expects == "number":  # validated: the calculation evaluates
            return f"{a.answer.strip()}\n\nCalculation: {a.calculation.strip()} = " \
                f"{v.evaluate(a.calculation):g}"
        return a.answer.strip()

    # -- checks -------------------------------------------------------------------------------

    def check_transformation(self, name: str, seed: str, text: str) -> str | None:
        return v.check_transformed(name, seed, text) or check_repetition(text)

    def check_task(self, draft: Draft) -> str | None:
        sub, p, question = draft.sub, type_params(draft.sub), draft.task.question
        return (super().check_task(draft)
                or v.check_question(question, sub.expects)
                or check_on_topic(question, [draft.passage])
                or (v.check_blank(question) if sub.expects == "blank" else None)
                or (v.check_quoted(question, draft.passage) if p.quotes_passage else None)
                or (v.check_labels_named(question, p.labels) if p.labels else None)
                or (check_options(draft.task) if sub.expects == "choice" else None))

    async def validate(self, ctx: FlowContext, draft: Draft) -> str | None:
        p, expects, task = type_params(draft.sub), self.expects(draft), draft.task
        draft.extra.setdefault("passage_edit", None)
        draft.extra.update(level=p.level, expects=expects, answerable=self.answerable(draft))
        if expects == "number":  # before the answer is rendered with its evaluated calculation
            answer = draft.answer
            if problem := (v.check_form(answer.answer, expects, {})
                           or v.check_calculation(answer.calculation, answer.answer,
                                                  draft.passage)):
                return problem
        text, body = self.assistant_turn(draft), self.answer_body(draft)
        if problem := check_repetition(text):
            return problem
        sources = [draft.passage, task.question]  # the passage the student sees, edited or not
        # what a number of the answer may be computed from: the record shows both
        shown = task.question + (f" {draft.answer.calculation}" if expects == "number" else "")
        if expects == "refusal":
            return v.check_refuses(text) or check_specifics(text, sources)
        if expects == "choice":
            draft.extra["answer_key"] = "ABCDE"[task.correct - 1]
            if problem := check_agreement(task, draft.answer.choice):
                return problem
            if p.key_support is not None:
                key = task.options[task.correct - 1]
                draft.scores["key_support"] = lexical_support(key, [draft.passage])
                if draft.scores["key_support"] < p.key_support:
                    return "correct option not supported by the passage"
            return None
        if expects == "verdict":
            draft.extra["answer_key"] = task.key
            if problem := v.check_verdict(task.key, draft.answer.verdict):
                return problem
        if problem := v.check_form(text if expects == "verdict" else body, expects,
                                   p.model_dump(exclude_none=True)):
            return problem
        if expects in ("list", "ordered"):
            problem = v.check_items(draft.answer.items, p.min_items)
        elif expects == "matching":
            problem = v.check_pairs([(x.left, x.right) for x in draft.answer.pairs], p.min_items)
        elif expects == "blank":
            return v.check_blank_answer(task.question, body, draft.passage, p.max_words or 4)
        if problem:
            return problem
        if not content_words(body):
            if expects != "number":
                return "answer says nothing of substance"
        else:
            draft.scores["lexical_support"] = lexical_support(body, [draft.passage])
            if problem := (v.check_grounding(draft.scores["lexical_support"], p.min_support)
                           or check_specifics(body, sources, shown)):
                return problem
        if expects in NOVEL and (problem := check_adds_information(task.question, body)):
            return problem
        edit = draft.extra["passage_edit"]
        if edit and edit["kind"] == "change":
            return v.check_reflects_edit(body, edit["find"], edit["replace"])
        return None

    # -- refinement: question rewrites and passage edits ---------------------------------------

    async def refine_task(self, ctx: FlowContext, trace: Trace, draft: Draft) -> None:
        rng = random.Random(draft.item.seed)
        goals = eligible_goals(self.spec.refinement_goals, draft.sub)
        for rnd in range(ctx.settings.refine_rounds):
            if not goals:
                return
            goal = rng.choice(goals)
            kind = goal_kind(goal)
            if kind == "task":
                await self._rewrite_task(ctx, trace, draft, goal, rnd)
            elif await self._edit_passage(ctx, trace, draft, goal, kind, rnd):
                goals = [g for g in goals if goal_kind(g) == "task"]  # one passage edit an item

    async def _suggest(self, ctx: FlowContext, trace: Trace, draft: Draft, values: dict,
                       rnd: int) -> list[str]:
        return (await self.ask(ctx, trace, "suggest", self.render("suggest.j2", **values),
                               Suggestions, draft.item.seed + 101 * (rnd + 1))).suggestions

    async def _rewrite_task(self, ctx: FlowContext, trace: Trace, draft: Draft, goal: str,
                            rnd: int) -> None:
        values = self._values(draft) | {"goal": goal, "task_json": draft.task.model_dump_json()}
        suggestions = await self._suggest(ctx, trace, draft, values, rnd)
        edited = await self.ask(ctx, trace, "edit",
                                self.render("edit.j2", **values, suggestions=suggestions),
                                self.task_schema(draft.sub), draft.item.seed + 211 * (rnd + 1))
        before, draft.task = draft.task, edited
        problem = self.check_task(draft)
        if problem:
            draft.task = before
        trace.steps.append({"step": "refine", "round": rnd + 1, "goal": goal, "edits": "task",
                            "suggestions": suggestions, "before": before.model_dump(mode="json"),
                            "after": edited.model_dump(mode="json"), "kept": problem is None,
                            **({"dropped_because": problem} if problem else {})})

    async def _edit_passage(self, ctx: FlowContext, trace: Trace, draft: Draft, goal: str,
                            kind: str, rnd: int) -> bool:
        """One find/replace edit of the passage; kept only if it passes the edit checks and the
        question still passes its own checks against the edited passage."""
        values = self._values(draft) | {"goal": goal, "task_json": draft.task.model_dump_json(),
                                        "edits_passage": True}
        suggestions = await self._suggest(ctx, trace, draft, values, rnd)
        edit = await self.ask(ctx, trace, "edit",
                              self.render("edit_passage.j2", **values, suggestions=suggestions,
                                          kind=kind),
                              Removal if kind == "remove" else Change,
                              draft.item.seed + 211 * (rnd + 1))
        find, replace = edit.find, getattr(edit, "replace", "")
        before = draft.passage
        problem = v.check_passage_edit(kind, before, draft.task.question, find, replace)
        if not problem:
            draft.passage = v.apply_edit(before, find, replace)
            if problem := self.check_task(draft):
                draft.passage = before
        if not problem:
            draft.extra["passage_edit"] = {"kind": kind, "find": find, "replace": replace}
        trace.steps.append({"step": "refine", "round": rnd + 1, "goal": goal, "edits": "passage",
                            "suggestions": suggestions, "find": find, "replace": replace,
                            "kept": problem is None,
                            **({"dropped_because": problem} if problem else {})})
        return problem is None


SKILL = ReadingComprehensionSkill
