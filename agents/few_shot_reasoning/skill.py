"""Few-shot chain-of-thought: k worked exemplars (question, step-by-step reasoning, answer) and a
new query, all drawn from one seed passage; the teacher answers the query in the exemplars'
format.

The flow differs from TaskSkill's single instruct call: k exemplars written one call each (a
whole k-shot prompt in one reply would not fit a small teacher's reply budget), each on its own
slice of the passage so they differ, each checked as it arrives; then the query on another
slice; refinement rewrites the query only (the exemplars are fixed once checked); then respond
and validate as usual. Arithmetic types carry a `check_expression` that the calculator
recomputes, for every exemplar and for the response.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from pydantic import BaseModel, Field

from agents.few_shot_reasoning import checks as v
from agents.fields import line_field
from agents.flow import FlowContext, Suggestions, Trace
from agents.items import Candidate, Rejected, WorkItem
from agents.spec import Subcategory
from agents.task import Draft, TaskSkill
from agents.tools import calculate

EXPECTS = {"number", "label", "analogy", "yes_no", "any"}


class Worked(BaseModel):
    """One worked exemplar, as the teacher writes it."""

    question: str = line_field(12, 200)
    reasoning: str = Field(min_length=20, max_length=400)
    answer: str = Field(min_length=1, max_length=80)


class WorkedCalc(Worked):
    check_expression: str = Field(min_length=1, max_length=80)


class Exemplar(Worked):
    """An exemplar as stored in the task (check_expression empty for non-numeric types)."""

    check_expression: str = ""


class Query(BaseModel):
    query: str = line_field(12, 240)


class FewShotTask(BaseModel):
    exemplars: list[Exemplar] = Field(min_length=2, max_length=4)
    query: str


class Response(BaseModel):
    reasoning: str = Field(min_length=20, max_length=500)
    answer: str = Field(min_length=1, max_length=80)


class ResponseCalc(Response):
    check_expression: str = Field(min_length=1, max_length=80)


_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n\s*\n|\n(?=\s*(?:[-*#]|\d+[.)]))")


def focus_parts(passage: str, n: int) -> list[str]:
    """n slices of the passage (contiguous runs of sentences), one per exemplar and one for the
    query, so each is written from different facts; a passage with fewer sentences than n
    hands some sentences out twice."""
    sentences = [s.strip() for s in _SENTENCE.split(passage) if len(s.split()) >= 4]
    if not sentences:
        return [passage.strip()] * n
    if len(sentences) < n:
        return [sentences[i % len(sentences)] for i in range(n)]
    return [" ".join(sentences[i * len(sentences) // n:(i + 1) * len(sentences) // n])
            for i in range(n)]


class FewShotReasoningSkill(TaskSkill):
    task_model = FewShotTask
    answer_model = Response

    def __init__(self, folder) -> None:
        super().__init__(folder)
        for sub in self.spec.taxonomy:  # the taxonomy is data: refuse what the code can't check
            if sub.expects not in EXPECTS:
                raise ValueError(f"few_shot_reasoning subcategory {sub.name}: unknown expects "
                                 f"{sub.expects!r}")
            lo, hi = sub.params.get("k_min", 2), sub.params.get("k_max", 4)
            if not 2 <= lo <= hi <= 4:
                raise ValueError(f"few_shot_reasoning subcategory {sub.name}: need "
                                 f"2 <= k_min <= k_max <= 4, got {lo}..{hi}")

    @staticmethod
    def k_for(sub: Subcategory, seed: int) -> int:
        return random.Random(seed).randint(sub.params.get("k_min", 2), sub.params.get("k_max", 4))

    @staticmethod
    def _rules(sub: Subcategory) -> dict[str, Any]:
        return {"expects": sub.expects, "min_steps": sub.params.get("min_steps", 2),
                "max_answer_words": sub.params.get("max_answer_words", 12)}

    def instruction_text(self, draft: Draft) -> str:
        return draft.task.query

    def answer_schema(self, draft: Draft) -> type[BaseModel]:
        return ResponseCalc if draft.sub.expects == "number" else Response

    def _values(self, draft: Draft) -> dict[str, Any]:
        return super()._values(draft) | {"expects": draft.sub.expects,
                                         "min_steps": draft.sub.params.get("min_steps", 2)}

    # -- the flow ---------------------------------------------------------------------------

    async def generate(self, ctx: FlowContext, item: WorkItem, trace: Trace) -> Candidate:
        sub = self.spec.subcategory(item.subcategory)
        chunk = ctx.index.get(item.seed_chunk_id)
        passage = await self.transform(ctx, trace, chunk, item.transformation)
        draft = Draft(item=item, sub=sub, chunk=chunk, passage=passage)
        k = self.k_for(sub, item.seed)
        parts = focus_parts(passage, k + 1)
        rules = self._rules(sub)
        values = self._values(draft)

        exemplars: list[Exemplar] = []
        schema = WorkedCalc if sub.expects == "number" else Worked
        for i in range(k):
            labels = sorted({e.answer.strip() for e in exemplars}) if sub.expects == "label" else []
            prompt = self.render("exemplar.j2", **values, focus=parts[i], labels=labels)
            worked = await self.ask(ctx, trace, "exemplar", prompt, schema,
                                    item.seed + 17 * (i + 1))
            ex = Exemplar(**worked.model_dump())
            trace.steps.append({"step": "exemplar", "index": i + 1, "exemplar": ex.model_dump()})
            if problem := v.check_exemplar(ex, passage, sub.expects, i + 1, rules["min_steps"],
                                           rules["max_answer_words"]):
                raise Rejected("exemplar", problem, raw=worked.model_dump_json())
            exemplars.append(ex)

        labels = sorted({e.answer.strip() for e in exemplars}) if sub.expects == "label" else []
        query = await self.ask(ctx, trace, "instruct",
                               self.render("instruct.j2", **values, focus=parts[k], labels=labels),
                               Query, item.seed)
        draft.task = FewShotTask(exemplars=exemplars, query=" ".join(query.query.split()))
        trace.steps.append({"step": "instruct", "query": draft.task.query})
        if problem := self.check_task(draft):
            raise Rejected("instruct", problem, raw=query.model_dump_json())
        return await self.finish(ctx, trace, draft)

    async def refine_task(self, ctx: FlowContext, trace: Trace, draft: Draft) -> None:
        """Suggester → editor rounds over the query alone; an edit that fails the checks is
        dropped and the previous query kept."""
        rng = random.Random(draft.item.seed)
        for rnd in range(ctx.settings.refine_rounds):
            goal = rng.choice(self.spec.refinement_goals)
            values = self._values(draft) | {"goal": goal,
                                            "task_json": json.dumps({"query": draft.task.query})}
            suggestions = (await self.ask(ctx, trace, "suggest",
                                          self.render("suggest.j2", **values), Suggestions,
                                          draft.item.seed + 101 * (rnd + 1))).suggestions
            edited = await self.ask(ctx, trace, "edit",
                                    self.render("edit.j2", **values, suggestions=suggestions),
                                    Query, draft.item.seed + 211 * (rnd + 1))
            before = draft.task
            draft.task = before.model_copy(update={"query": " ".join(edited.query.split())})
            problem = self.check_task(draft)
            if problem:
                draft.task = before
            trace.steps.append({"step": "refine", "round": rnd + 1, "goal": goal,
                                "suggestions": suggestions, "before": before.query,
                                "after": edited.query, "kept": problem is None,
                                **({"dropped_because": problem} if problem else {})})

    # -- validators -------------------------------------------------------------------------

    def check_task(self, draft: Draft) -> str | None:
        task: FewShotTask = draft.task
        k = self.k_for(draft.sub, draft.item.seed)
        return v.check_exemplar_set(task.exemplars, k, draft.sub.expects) \
            or v.check_query(task.query, task.exemplars, draft.passage, draft.sub.expects)

    async def validate(self, ctx: FlowContext, draft: Draft) -> str | None:
        task: FewShotTask = draft.task
        resp = draft.answer
        check_expr = getattr(resp, "check_expression", "")
        rules = self._rules(draft.sub)
        draft.scores["response_steps"] = len(v.steps(resp.reasoning))
        draft.extra["k"] = len(task.exemplars)
        draft.extra["answer_format"] = "Reasoning: ... / Answer: ..."
        problem = v.check_response(resp.reasoning, resp.answer, check_expr, task.query,
                                   task.exemplars, draft.sub.expects, rules["min_steps"],
                                   rules["max_answer_words"])
        if problem is None and draft.sub.expects == "number":
            draft.extra["check_expression"] = check_expr
            draft.extra["check_value"] = calculate(check_expr)
        return problem


SKILL = FewShotReasoningSkill
