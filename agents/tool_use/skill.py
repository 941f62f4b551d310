"""Tool use: the seed (code or an API description) becomes an API list; the writer asks for
something with it (all values given, extra details, a required value left out, or a capability
the list lacks); the teacher, seeing only what the student will see, calls APIs, asks or
declines; called APIs are simulated by the teacher, and it closes with an answer.

The record is multi-turn: system (the API list as function signatures), user (the request),
assistant (the calls as JSON, or the question / refusal), then for calls one `tool` message per
call and a final assistant answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import BaseModel

from agents.flow import FlowContext, Trace
from agents.items import Candidate, Rejected, WorkItem
from agents.task import Draft, TaskSkill
from agents.tool_use import validators as v
from agents.tool_use.models import (ApiList, FinalAnswer, ToolResponse, api_functions,
                                    api_lines, api_list_model, calls_json, reply_calls,
                                    reply_model, seed_functions, seed_signatures,
                                    task_model)
from models import ChatMessage
from retrieval import Chunk

# transformation agent -> must every API come from the seed (False: at least one)
GROUNDED_EVERY = {"apis_from_code": True, "sibling_apis": False}


@dataclass
class ToolDraft(Draft):
    apis: ApiList | None = None


class ToolUseSkill(TaskSkill):
    # -- the API list (a structured transformation, shared per chunk × agent) ---------------

    async def derive_apis(self, ctx: FlowContext, trace: Trace, chunk: Chunk,
                          name: str) -> ApiList:
        """Like `Skill.transform`, but the agent's reply is an `ApiList`, not text."""
        functions = seed_functions(chunk.text)
        # the seed's own functions: name them by enum when the code defines enough of them
        output = api_list_model(functions) if GROUNDED_EVERY.get(name) \
            and len(functions) >= 2 else ApiList
        raw = await self.shared_ask(
            ctx, trace, (self.name, chunk.id, f"{name}:apis"),
            self.render(self.spec.transformation(name).template or "", passage=chunk.text),
            output, seed=int(chunk.id[:8], 16))
        apis = v.normalize_api_list(raw)
        trace.steps.append({"step": "transform", "agent": name,
                            "apis": [a.name for a in apis.apis]})
        problem = (v.check_api_list(apis)
                   or v.check_apis_grounded(apis, chunk.text, GROUNDED_EVERY.get(name, False))
                   or v.check_params_match_code(apis, seed_signatures(chunk.text)))
        if problem:
            raise Rejected("transform", problem, raw=raw.model_dump_json())
        return apis

    # -- hooks ------------------------------------------------------------------------------

    def instruction_text(self, draft: Draft) -> str:
        return draft.task.request.strip()

    def check_task(self, draft: ToolDraft) -> str | None:
        task, apis, sub = draft.task, draft.apis, draft.sub
        names = list(getattr(task, "apis", []))
        lo = sub.params.get("apis", [1, 1])[0]
        return (v.check_request(task.request)
                or (v.check_task_apis(names, apis, lo) if hasattr(task, "apis") else None)
                or (v.check_extra(task.extra, names, apis, task.request)
                    if sub.expects == "call_extra" else None)
                or (v.check_omitted(task.omitted, names, apis) if sub.expects == "ask" else None)
                or (v.check_absent(task.absent, task.request, apis)
                    if sub.expects == "decline" else None))

    def user_turn(self, draft: Draft) -> str:
        return draft.task.request.strip()

    def system_turn(self, apis: ApiList) -> str:
        lines = [json.dumps(f, ensure_ascii=False) for f in api_functions(apis)]
        return "\n".join([self.spec.system_prompt, "", "APIs you can call (one a line):", *lines])

    def messages(self, draft: ToolDraft) -> list[ChatMessage]:
        x = draft.extra
        out = [ChatMessage(role="system", content=self.system_turn(draft.apis)),
               ChatMessage(role="user", content=self.user_turn(draft))]
        if not x["api_calls"]:
            return out + [ChatMessage(role="assistant", content=x["assistant_message"])]
        out.append(ChatMessage(role="assistant", content=calls_json(x["api_calls"])))
        out += [ChatMessage(role="tool", content=json.dumps(
            {"name": call["api"], "result": result}, ensure_ascii=False))
            for call, result in zip(x["api_calls"], x["tool_responses"])]
        return out + [ChatMessage(role="assistant", content=draft.answer.answer.strip())]

    # -- the flow -----------------------------------------------------------------------------

    async def generate(self, ctx: FlowContext, item: WorkItem, trace: Trace) -> Candidate:
        sub = self.spec.subcategory(item.subcategory)
        chunk = ctx.index.get(item.seed_chunk_id)
        apis = await self.derive_apis(ctx, trace, chunk, item.transformation)
        draft = ToolDraft(item=item, sub=sub, chunk=chunk, passage=api_lines(apis), apis=apis)
        draft.extra["api_list"] = api_functions(apis)

        schema = task_model(sub, apis)
        draft.task = await self.ask(ctx, trace, "instruct", self.render(
            "instruct.j2", **self._values(draft), fields=list(schema.model_fields)),
            schema, item.seed)
        trace.steps.append({"step": "instruct", "task": draft.task.model_dump(mode="json")})
        if problem := self.check_task(draft):
            raise Rejected("instruct", problem, raw=draft.task.model_dump_json())
        await self.refine_task(ctx, trace, draft)

        await self.act(ctx, trace, draft)
        if draft.extra["api_calls"]:
            await self.simulate(ctx, trace, draft)
        return self.candidate(ctx, draft, trace)

    def edit_schema(self, draft: ToolDraft) -> type[BaseModel]:
        # the task's schema depends on the item's API list, which task_schema(sub) cannot see
        return task_model(draft.sub, draft.apis)

    async def act(self, ctx: FlowContext, trace: Trace, draft: ToolDraft) -> None:
        """The teacher sees the API list and the request (as the student will) and decides to
        call, ask or decline; the result must match what the task's writer meant."""
        apis, task, sub = draft.apis, draft.task, draft.sub
        reply = await self.ask(ctx, trace, "respond",
                               self.render("respond.j2", **self._values(draft)),
                               reply_model(apis), draft.item.seed + 7,
                               system=self.spec.system_prompt,
                               temperature=self.answer_temperature(ctx))
        calls, message = reply_calls(reply), reply.message.strip()  # type: ignore[attr-defined]
        lo, hi = sub.params.get("apis", [1, 1])
        problem = v.check_behaviour(sub.expects, calls, message, lo, max(hi, 1))
        for call in calls:
            problem = problem or v.check_call(call, apis) \
                or v.check_values_from_request(call, task.request)
        if not problem and sub.expects in v.CALL_KINDS:
            problem = v.check_calls_match_task(calls, list(task.apis))
        if not problem and sub.expects == "ask":
            problem = v.check_asks_for(message, list(task.omitted))
        if not problem and sub.expects == "decline":
            problem = v.check_explains_absent(message, task.absent, task.request)
        if problem:
            raise Rejected("validate", problem, raw=reply.model_dump_json(by_alias=True))
        draft.extra.update({"expected_behaviour": sub.expects.removesuffix("_extra"),
                            "api_calls": calls, "tool_responses": [],
                            "assistant_message": "" if calls else message})

    async def simulate(self, ctx: FlowContext, trace: Trace, draft: ToolDraft) -> None:
        """The teacher plays each called API, then answers the user from the responses."""
        apis, calls = draft.apis, draft.extra["api_calls"]
        results = []
        for i, call in enumerate(calls):
            api = v.api_by_name(apis, call["api"])
            response = await self.ask(ctx, trace, "simulate", self.render(
                "simulate.j2", api=api, arguments=json.dumps(call["arguments"]),
                request=draft.task.request), ToolResponse, draft.item.seed + 17 * (i + 1))
            if problem := v.check_tool_result(response.result):
                raise Rejected("simulate", problem, raw=response.model_dump_json())
            results.append(response.result.strip())
        draft.extra["tool_responses"] = results
        draft.answer = await self.ask(ctx, trace, "answer", self.render(
            "answer.j2", request=draft.task.request, steps=list(zip(calls, results)),
            dumps=json.dumps), FinalAnswer, draft.item.seed + 13,
            system=self.spec.system_prompt, temperature=self.answer_temperature(ctx))
        if problem := v.check_final_answer(draft.answer.answer, results, draft.task.request):
            raise Rejected("validate", problem, raw=draft.answer.model_dump_json())


SKILL = ToolUseSkill
