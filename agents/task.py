"""The generic single-seed flow most skills run: transform → instruct (a task object) → cheap
checks → refine → respond (optionally with tools) → validate → messages.

A skill built on `TaskSkill` is mostly data: its folder holds skill.toml and prompts
(instruct.j2, respond.j2, user_turn.j2, and optionally assistant_turn.j2, suggest.j2, edit.j2,
transformation templates); prompts it does not have come from agents/common_prompts/. Its
skill.py overrides only what differs: the task and answer models, `check_task`, `validate`.

Template variables: `subcategory` (the Subcategory), `passage` (the transformed seed), `task`
(the task model), `answer` (the answer model, in assistant_turn.j2), `params` (the
subcategory's params), and in suggest/edit `task_json`, `goal`, `suggestions`.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from agents.fields import line_field
from agents.flow import COPIED, FlowContext, Skill, Suggestions, Trace
from agents.items import Candidate, Rejected, WorkItem
from agents.spec import Subcategory
from agents.tools.loop import observations_text, run_tool_loop
from agents.tools.base import ToolResult, make_tools
from agents.rag.validators import check_repetition
from models import ChatMessage
from retrieval import Chunk


class Task(BaseModel):
    """The default task: one instruction, shown to the student with the passage."""

    instruction: str = line_field(12, 600)


class Answer(BaseModel):
    answer: str = Field(min_length=1, max_length=1500)


@dataclass
class Draft:
    """One item between stages; skills read it in their hooks."""

    item: WorkItem
    sub: Subcategory
    chunk: Chunk
    passage: str
    task: Any = None
    answer: Any = None
    tool_results: list[ToolResult] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)  # validators' measurements
    extra: dict[str, Any] = field(default_factory=dict)  # skill metadata for the record


class TaskSkill(Skill):
    task_model: type[BaseModel] = Task
    answer_model: type[BaseModel] = Answer

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.check_types()
        # a task shown to the teacher is one the skill's own checks pass, on its own passage
        demo = self.spec.demonstrations
        for name in demo.questions if demo else ():
            try:
                problem = self.check_task(self.shown_draft(self.spec.subcategory(name)))
            except ValidationError as exc:
                problem = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                    for e in exc.errors())
            if problem:
                raise ValueError(f"invalid skill definition {folder / 'skill.toml'}: the "
                                 f"demonstration for {name}: {problem}")

    # -- hooks skills override ---------------------------------------------------------------

    def check_types(self) -> None:
        """The skill's own checks of its taxonomy when it loads (raise ValueError naming the
        type), before its demonstrations are checked with the types' checks."""

    def task_schema(self, sub: Subcategory) -> type[BaseModel]:
        return self.task_model

    def answer_schema(self, draft: Draft) -> type[BaseModel]:
        return self.answer_model

    def edit_schema(self, draft: Draft) -> type[BaseModel]:
        """The schema the refinement editor writes to (the task's, unless it depends on more
        than the subcategory)."""
        return self.task_schema(draft.sub)

    def instruction_text(self, draft: Draft) -> str:
        """The instruction as a student sees it: the dedup gate compares this text."""
        return getattr(draft.task, "instruction", "") or self.user_turn(draft)

    def check_task(self, draft: Draft) -> str | None:
        """Cheap checks on a task (fresh or edited) before the answer is paid for."""
        text = self.instruction_text(draft)
        if len(text.split()) < 3:
            return "instruction too short"
        demo = self.spec.demonstrations
        if demo and demo.copied(text, [draft.passage]):
            return f"instruction {COPIED}"
        return self.check_instruction(text, [draft.passage], draft.sub) or check_repetition(text)

    async def validate(self, ctx: FlowContext, draft: Draft) -> str | None:
        """The skill's validators on the finished answer; a reason rejects the item."""
        answer = getattr(draft.answer, "answer", None)
        if isinstance(answer, str):
            return check_repetition(answer)
        return None

    def shown_draft(self, sub: Subcategory) -> Draft:
        """The demonstration's task for this type, as a draft of the demonstration's first
        passage; raises ValidationError when it does not fit the type's task schema."""
        demo = self.spec.demonstrations
        shown = demo.questions[sub.name]
        task = self.task_schema(sub).model_validate(shown.task or {"question": shown.question})
        return Draft(item=None, sub=sub, chunk=None, passage=demo.passages[0], task=task)

    def demonstration(self, sub: Subcategory, anchored: bool = False) -> tuple[ChatMessage, ...]:
        """The turns that show the teacher one good task of this type before it writes its
        own: the instruct prompt written from the demonstration's passage, then the task. None
        when the type shows none."""
        demo = self.spec.demonstrations
        if demo is None or sub.name not in demo.questions:
            return ()
        draft = self.shown_draft(sub)
        return (ChatMessage(role="user", content=self.render("instruct.j2", **self._values(draft))),
                ChatMessage(role="assistant",
                            content=json.dumps(draft.task.model_dump(mode="json"))))

    def user_turn(self, draft: Draft) -> str:
        return self.render("user_turn.j2", **self._values(draft))

    def assistant_turn(self, draft: Draft) -> str:
        if self.has_template("assistant_turn.j2"):
            return self.render("assistant_turn.j2", **self._values(draft))
        return draft.answer.answer.strip()

    def messages(self, draft: Draft) -> list[ChatMessage]:
        system = [ChatMessage(role="system", content=self.spec.system_prompt)] \
            if self.spec.system_prompt else []
        return system + [ChatMessage(role="user", content=self.user_turn(draft)),
                         ChatMessage(role="assistant", content=self.assistant_turn(draft))]

    # -- the flow -----------------------------------------------------------------------------

    async def start(self, ctx: FlowContext, trace: Trace, item: WorkItem) -> Draft:
        """The draft before the task is written: the seed chunk, transformed. Skills that build
        something else first (a table, a web page) override this."""
        chunk = ctx.index.get(item.seed_chunk_id)
        passage = await self.transform(ctx, trace, chunk, item.transformation)
        return Draft(item=item, sub=self.spec.subcategory(item.subcategory), chunk=chunk,
                     passage=passage)

    async def generate(self, ctx: FlowContext, item: WorkItem, trace: Trace) -> Candidate:
        draft = await self.start(ctx, trace, item)
        await self.write_task(ctx, trace, draft)
        return await self.finish(ctx, trace, draft)

    async def write_task(self, ctx: FlowContext, trace: Trace, draft: Draft) -> None:
        """The instruct call: the task, asked again while it fails the cheap checks, after the
        type's demonstration when the skill has one."""
        draft.task = await self.ask(ctx, trace, "instruct",
                                    self.render("instruct.j2", **self._values(draft)),
                                    self.task_schema(draft.sub), draft.item.seed,
                                    check=lambda task: self.check_task(replace(draft, task=task)),
                                    history=self.demonstration(draft.sub))
        trace.steps.append({"step": "instruct", "task": draft.task.model_dump(mode="json")})

    async def finish(self, ctx: FlowContext, trace: Trace, draft: Draft) -> Candidate:
        """A written task that passed its cheap checks: refine, round trip, respond, validate."""
        await self.refine_task(ctx, trace, draft)
        await self.check_round_trip(ctx, self.instruction_text(draft), draft.chunk)
        await self.check_novel(ctx, trace, self.instruction_text(draft))
        await self.respond(ctx, trace, draft)
        if problem := await self.validate(ctx, draft):
            detail = ", ".join(f"{k} {v:.3g}" for k, v in draft.scores.items())
            raise Rejected("validate", problem, detail, raw=draft.answer.model_dump_json())
        return self.candidate(ctx, draft, trace)

    async def refine_task(self, ctx: FlowContext, trace: Trace, draft: Draft) -> None:
        """Suggester → editor rounds over the whole task object; an edit that fails the cheap
        checks is dropped and the previous version kept."""
        rng = random.Random(draft.item.seed)
        schema = self.edit_schema(draft)
        for rnd in range(ctx.settings.refine_rounds):
            goal = rng.choice(self.spec.refinement_goals)
            values = self._values(draft) | {"goal": goal,
                                            "task_json": draft.task.model_dump_json()}
            suggestions = (await self.ask(ctx, trace, "suggest",
                                          self.render("suggest.j2", **values), Suggestions,
                                          draft.item.seed + 101 * (rnd + 1))).suggestions
            edited = await self.ask(ctx, trace, "edit",
                                    self.render("edit.j2", **values, suggestions=suggestions),
                                    schema, draft.item.seed + 211 * (rnd + 1))
            before, draft.task = draft.task, edited
            problem = self.check_task(draft)
            if problem:
                draft.task = before
            trace.steps.append({"step": "refine", "round": rnd + 1, "goal": goal,
                                "suggestions": suggestions,
                                "before": before.model_dump(mode="json"),
                                "after": edited.model_dump(mode="json"), "kept": problem is None,
                                **({"dropped_because": problem} if problem else {})})

    async def respond(self, ctx: FlowContext, trace: Trace, draft: Draft) -> None:
        """The teacher answers the task as the student will see it, using tools if the skill
        offers them (the tool calls stay out of the record's messages)."""
        prompt = self.render("respond.j2", **self._values(draft))
        if self.spec.tools and ctx.settings.tool_steps:
            tools = make_tools(self.spec.tools, ctx.index)

            async def ask_step(text: str, model: type[BaseModel], step: int) -> BaseModel:
                return await self.ask(ctx, trace, "tool_call", text, model,
                                      draft.item.seed + 331 * (step + 1),
                                      temperature=self.answer_temperature(ctx))

            draft.tool_results = await run_tool_loop(ask_step, prompt, tools,
                                                     ctx.settings.tool_steps)
            if draft.tool_results:
                trace.steps.append({"step": "tools", "calls": [
                    r.model_dump() for r in draft.tool_results]})
                prompt += "\n\n" + observations_text(draft.tool_results)
        draft.answer = await self.ask(ctx, trace, "respond", prompt, self.answer_schema(draft),
                                      draft.item.seed + 7, system=self.spec.system_prompt or None,
                                      temperature=self.answer_temperature(ctx))

    def candidate(self, ctx: FlowContext, draft: Draft, trace: Trace) -> Candidate:
        refinements = [s for s in trace.steps if s["step"] == "refine"]
        chunk = draft.chunk
        metadata = {
            "split": self.spec.split,
            "instruction": self.instruction_text(draft),
            "source": {"chunk_id": chunk.id, "doc_path": chunk.doc_path, "start": chunk.start,
                       "end": chunk.end},
            "transformation": draft.item.transformation,
            # the teacher failed it: the seed went on as it is (skill.toml transform_fallback)
            "transformation_fell_back": trace.fell_back,
            "instruction_type": draft.sub.name,
            "task": draft.task.model_dump(mode="json"),
            "refinement_rounds": len(refinements),
            "refinement": refinements,
            "tool_calls": [r.model_dump() for r in draft.tool_results],
            "teacher_model": ctx.teacher.model_name,
            "validator_scores": {k: round(v, 4) for k, v in draft.scores.items()},
            **draft.extra,
        }
        return Candidate(item=draft.item, instruction=metadata["instruction"],
                         messages=self.messages(draft), metadata=metadata, usage=trace.usage)

    def _values(self, draft: Draft) -> dict[str, Any]:
        return {"subcategory": draft.sub, "params": draft.sub.params, "passage": draft.passage,
                "task": draft.task, "answer": draft.answer, "skill": self.spec}
