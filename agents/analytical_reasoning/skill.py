"""Analytical reasoning: the writer builds a finite puzzle over entities from the seed, each
condition in words and as a Python rule; the sandbox enumerates every arrangement (before the
teacher is asked) and the puzzle goes on only when exactly one fits; the teacher solves the
words, and the item is kept only when its arrangement is that one."""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, create_model

from agents.analytical_reasoning.puzzle import (Structure, check_assignment, check_rule,
                                                check_rule_text, check_unique,
                                                enumerate_solutions, is_conditional)
from agents.fermi.skill import source_text
from agents.fields import line_field
from agents.flow import FlowContext, Trace
from agents.items import Rejected
from agents.rag.validators import META_REFERENCE, check_repetition, content_words
from agents.spec import Subcategory
from agents.task import Draft, TaskSkill

Name = Annotated[str, StringConstraints(min_length=1, max_length=20)]
# a sentence that asks: a question without "?" must start a sentence with a request
ASKS = re.compile(r"(?:^|[.!:]\s+)(determine|find|work out|arrange|assign|order|list|give|"
                  r"identify|match|place|decide|state)\b", re.IGNORECASE)


class Constraint(BaseModel):
    text: str = Field(min_length=8, max_length=80)
    rule: str = Field(min_length=5, max_length=90)  # an if-then over long names needs room


class OrderingPuzzle(BaseModel):
    entities: list[Name] = Field(min_length=3, max_length=5)
    constraints: list[Constraint] = Field(min_length=2, max_length=4)
    question: str = line_field(20, 140)


class GroupingPuzzle(BaseModel):
    entities: list[Name] = Field(min_length=3, max_length=5)
    groups: list[Name] = Field(min_length=2, max_length=5)
    constraints: list[Constraint] = Field(min_length=2, max_length=4)
    question: str = line_field(20, 140)


def structure_of(sub: Subcategory, task: OrderingPuzzle | GroupingPuzzle) -> Structure:
    return Structure.of(sub.params.get("structure", "ordering"), task.entities,
                        getattr(task, "groups", None))


# -- validators -----------------------------------------------------------------------------------

def check_entities(entities: list[str], passage: str) -> str | None:
    """3-5 distinct names, each taken from the source."""
    if not 3 <= len(entities) <= 5:
        return f"puzzle has {len(entities)} entities; it needs 3 to 5"
    normal = [" ".join(e.lower().split()) for e in entities]
    if len(set(normal)) < len(normal):
        return "two entities have the same name"
    source = content_words(passage)
    for entity in entities:
        if entity != entity.strip() or not re.search(r"[A-Za-z]", entity):
            return f"entity {entity!r} is not a clean name"
        words = content_words(entity)
        if not words or not words <= source:
            return f"entity {entity!r} is not taken from the source"
    return None


def check_groups(kind: str, groups: list[str], n_entities: int) -> str | None:
    normal = [" ".join(g.lower().split()) for g in groups]
    if len(set(normal)) < len(normal) or any(not g for g in normal):
        return "group names must be distinct and non-empty"
    if kind == "assignment" and len(groups) != n_entities:
        return f"assignment needs {n_entities} options, one per entity; it has {len(groups)}"
    if kind == "grouping" and not 2 <= len(groups) <= 3:
        return f"grouping needs 2 or 3 groups; it has {len(groups)}"
    return None


def check_constraints(constraints: list[Constraint], entities: list[str], structure: Structure,
                      conditional: bool) -> str | None:
    if len(constraints) < 2:
        return "puzzle needs at least two constraints"
    rules = [" ".join(c.rule.split()) for c in constraints]
    if len(set(rules)) < len(rules):
        return "two constraints have the same rule"
    for n, c in enumerate(constraints, 1):
        if problem := check_rule(n, c.rule, entities, structure) or \
                check_rule_text(n, c.text, c.rule):
            return problem
    if conditional and not any(is_conditional(c.text, c.rule) for c in constraints):
        return "conditional puzzle has no if-then constraint"
    return None


def check_puzzle_question(question: str) -> str | None:
    if len(question.split()) < 5:
        return "question too short"
    if META_REFERENCE.search(question):
        return "question refers to 'the passage' instead of setting the scene"
    if "?" not in question and not ASKS.search(question):
        return "question asks for nothing"
    return check_repetition(question)


def check_explanation(explanation: str) -> str | None:
    if len(content_words(explanation)) < 3:
        return "explanation says nothing"
    return check_repetition(explanation)


class AnalyticalReasoningSkill(TaskSkill):
    def task_schema(self, sub: Subcategory) -> type[BaseModel]:
        return OrderingPuzzle if sub.params.get("structure") == "ordering" else GroupingPuzzle

    def answer_schema(self, draft: Draft) -> type[BaseModel]:
        """Only the puzzle's own entities, positions and groups can be written down."""
        task = draft.task
        entity = Literal[tuple(task.entities)]  # type: ignore[valid-type]
        if draft.sub.params.get("structure") == "ordering":
            place = create_model("Placement", entity=(entity, ...),
                                 position=(int, Field(ge=1, le=len(task.entities))))
        else:
            group = Literal[tuple(task.groups)]  # type: ignore[valid-type]
            place = create_model("Placement", entity=(entity, ...), group=(group, ...))
        n = len(task.entities)
        return create_model("Solution",
                            explanation=(str, Field(min_length=10, max_length=300)),
                            assignment=(list[place], Field(min_length=n, max_length=n)))

    def instruction_text(self, draft: Draft) -> str:
        return self.user_turn(draft)

    def check_task(self, draft: Draft) -> str | None:
        task, params = draft.task, draft.sub.params
        kind = params.get("structure", "ordering")
        problem = check_entities(task.entities, source_text(draft)) or check_puzzle_question(
            task.question)
        if not problem and kind != "ordering":
            problem = check_groups(kind, task.groups, len(task.entities))
        return problem or check_constraints(task.constraints, task.entities,
                                            structure_of(draft.sub, task),
                                            bool(params.get("conditional")))

    async def respond(self, ctx: FlowContext, trace: Trace, draft: Draft) -> None:
        """Enumerate first: a puzzle without exactly one solution is rejected before the
        teacher's answer is paid for."""
        task = draft.task
        structure = structure_of(draft.sub, task)
        enumeration = await enumerate_solutions(task.entities, structure,
                                                [c.rule for c in task.constraints])
        draft.extra["structure"] = draft.sub.params.get("structure", "ordering")
        draft.scores["solutions"] = enumeration.count
        draft.scores["search_space"] = (math.perm if structure.distinct else pow)(
            len(structure.values), len(task.entities))
        draft.scores["redundant_constraints"] = len(enumeration.redundant)
        trace.steps.append({"step": "enumerate", **enumeration.model_dump()})
        if problem := check_unique(enumeration):
            detail = ", ".join(f"{k} {v:.3g}" for k, v in draft.scores.items())
            raise Rejected("validate", problem, detail, raw=task.model_dump_json())
        draft.extra["solution"] = enumeration.solutions[0]
        await super().respond(ctx, trace, draft)

    async def validate(self, ctx: FlowContext, draft: Draft) -> str | None:
        key = "position" if draft.extra["structure"] == "ordering" else "group"
        pairs = [(p.entity, getattr(p, key)) for p in draft.answer.assignment]
        return check_assignment(draft.task.entities, pairs, draft.extra["solution"]) \
            or check_explanation(draft.answer.explanation)

    def assistant_turn(self, draft: Draft) -> str:
        solution = draft.extra["solution"]
        order = sorted(solution.items(), key=lambda kv: kv[1]) \
            if draft.sub.params.get("structure") == "ordering" else list(solution.items())
        return self.render("assistant_turn.j2", **self._values(draft), solution=order)

    def _values(self, draft: Draft) -> dict:
        values = super()._values(draft)
        if draft.task is not None:
            values["puzzle"] = self.render("user_turn.j2", **values)
        return values


SKILL = AnalyticalReasoningSkill
