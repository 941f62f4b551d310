"""Web agent: the seed becomes a small web page (elements with ids, roles and names, like an
accessibility tree); the writer sets a goal on it; the teacher answers with a sequence of actions
over element ids, checked against the page (ids exist, actions fit roles) and the task type."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from agents.flow import FlowContext, Trace
from agents.items import Candidate, Rejected, WorkItem
from agents.task import Draft, TaskSkill
from agents.web_agent import validators as v
from agents.web_agent.models import (Page, PageDraft, WebTask, actions_json, actions_model,
                                     build_page, describe, render_page)
from retrieval import Chunk


@dataclass
class WebDraft(Draft):
    page: Page | None = None


class WebAgentSkill(TaskSkill):
    task_model = WebTask

    async def build(self, ctx: FlowContext, trace: Trace, chunk: Chunk, name: str) -> Page:
        """Like `Skill.transform`, but the agent's reply is a page, shared per chunk × agent."""
        raw = await self.shared_ask(
            ctx, trace, (self.name, chunk.id, f"{name}:page"),
            self.render(self.spec.transformation(name).template or "", passage=chunk.text),
            PageDraft, seed=int(chunk.id[:8], 16))
        trace.steps.append({"step": "transform", "agent": name})
        page = build_page(raw)
        # the page's own defects first (repeated elements are the small teacher's usual one)
        if problem := v.check_page(page, "any") or v.check_page_grounded(page, chunk.text):
            raise Rejected("transform", problem, raw=raw.model_dump_json())
        return page

    # -- hooks ------------------------------------------------------------------------------

    def instruction_text(self, draft: WebDraft) -> str:
        # goals repeat across pages ("sign up for the newsletter"): the page's title tells apart
        return f"{draft.page.title}: {draft.task.goal.strip()}"

    def check_task(self, draft: WebDraft) -> str | None:
        return v.check_goal(draft.task.goal, draft.page, draft.sub.expects)

    def answer_schema(self, draft: WebDraft) -> type[BaseModel]:
        return actions_model(len(draft.page.elements))

    async def validate(self, ctx: FlowContext, draft: WebDraft) -> str | None:
        actions, page, goal = draft.answer.actions, draft.page, draft.task.goal
        draft.scores["actions"] = len(actions)
        problem = (v.check_ids(actions, page) or v.check_roles(actions, page)
                   or v.check_sequence(actions) or v.check_values_from_goal(actions, goal))
        if problem:
            return problem
        expects = draft.sub.expects
        if expects == "link":
            return v.check_navigate(actions, page, goal)
        if expects == "answer":
            draft.scores["answer_support"] = v.answer_support(actions, page)
            return v.check_find_information(actions, page, goal)
        if expects == "form":
            return v.check_fill_form(actions, page)
        if expects == "select":
            return v.check_select(actions)
        if expects == "multi":
            return v.check_multi_step(actions)
        return None

    def assistant_turn(self, draft: WebDraft) -> str:
        steps = [f"{i}. {describe(a, draft.page)}"
                 for i, a in enumerate(draft.answer.actions, start=1)]
        return "\n".join(steps) + "\n\n```json\n" + actions_json(draft.answer.actions) + "\n```"

    # -- the flow -----------------------------------------------------------------------------

    async def start(self, ctx: FlowContext, trace: Trace, item: WorkItem) -> WebDraft:
        sub = self.spec.subcategory(item.subcategory)
        chunk = ctx.index.get(item.seed_chunk_id)
        page = await self.build(ctx, trace, chunk, item.transformation)
        if problem := v.check_page(page, sub.expects):
            raise Rejected("transform", problem, raw=render_page(page))
        draft = WebDraft(item=item, sub=sub, chunk=chunk, passage=render_page(page), page=page)
        draft.extra["page"] = page.model_dump(mode="json")
        return draft

    def candidate(self, ctx: FlowContext, draft: WebDraft, trace: Trace) -> Candidate:
        draft.extra["actions"] = [a.model_dump() for a in draft.answer.actions]
        return super().candidate(ctx, draft, trace)


SKILL = WebAgentSkill
