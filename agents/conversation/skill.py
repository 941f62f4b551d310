"""Conversation (split follow_up): an opening question about a shared text, refined like any
task, then a turn loop — the teacher writes the user's next message in the subcategory's
follow-up style (constrained JSON), then answers it with the whole conversation as chat
messages — until the configured number of user turns.

Where the seed lives: in the FIRST USER TURN of the record ("here is a text" + question), not in
a hidden system prompt. The student then sees everything the teacher saw, so the answers'
grounding is visible in the record (a student trained on answers drawn from a passage it never
saw learns to invent facts), follow-ups may point at "the text", and the teacher's calls are
the record's own messages, so the server's prompt cache reuses the growing prefix.
The near-duplicate gate compares the user's questions only (`instruction_text`): two
conversations about one passage share the passage, not their questions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from pydantic import BaseModel, Field, field_validator

from agents.conversation import validators as v
from agents.fields import line_field
from agents.flow import FlowContext, Trace, first_question
from agents.items import Candidate, Rejected, WorkItem
from agents.spec import Subcategory
from agents.task import Draft, TaskSkill
from models import ChatMessage, ReplyError, chat_json


class UserMessage(BaseModel):
    question: str = line_field(8, 300)

    @field_validator("question")
    @classmethod
    def _cut(cls, text: str) -> str:
        # small teachers run on past the question into an answer: keep the question
        return first_question(text)


class Reply(BaseModel):
    answer: str = Field(min_length=2, max_length=700)


@dataclass
class Turn:
    style: str
    user: str
    assistant: str = ""


def turn_styles(sub: Subcategory, rng: random.Random) -> list[str]:
    """The follow-up style of each user turn after the opening."""
    styles = list(sub.params.get("styles", [sub.name]))
    if sub.params.get("shuffle"):
        rng.shuffle(styles)
    n = sub.params.get("turns", 3) - 1
    return [styles[i % len(styles)] for i in range(n)]


class ConversationSkill(TaskSkill):
    task_model = UserMessage
    answer_model = Reply

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        names = {s.name for s in self.spec.taxonomy}
        for sub in self.spec.taxonomy:
            if sub.params.get("turns", 3) < 3:
                raise ValueError(f"{folder / 'skill.toml'}: {sub.name} has turns < 3; a "
                                 "conversation needs at least three user turns")
            unknown = set(sub.params.get("styles", [sub.name])) - names
            if unknown:
                raise ValueError(f"{folder / 'skill.toml'}: {sub.name} names unknown follow-up "
                                 f"styles {sorted(unknown)}; each style is a subcategory")

    # -- hooks -------------------------------------------------------------------------------

    def instruction_text(self, draft: Draft) -> str:
        turns: list[Turn] = draft.answer or [Turn("opening", draft.task.question)]
        return "\n".join(t.user for t in turns)

    def check_task(self, draft: Draft) -> str | None:
        return v.check_opening(draft.task.question, draft.passage)

    def first_user_turn(self, draft: Draft, question: str) -> str:
        return self.render("user_turn.j2", passage=draft.passage, question=question)

    def messages(self, draft: Draft) -> list[ChatMessage]:
        turns: list[Turn] = draft.answer
        out = [ChatMessage(role="system", content=self.spec.system_prompt)] \
            if self.spec.system_prompt else []
        for i, t in enumerate(turns):
            user = self.first_user_turn(draft, t.user) if i == 0 else t.user
            out += [ChatMessage(role="user", content=user)]
            if t.assistant:
                out += [ChatMessage(role="assistant", content=t.assistant)]
        return out

    async def validate(self, ctx: FlowContext, draft: Draft) -> str | None:
        """The whole record: alternating roles and enough user turns (each turn was checked as
        it was written)."""
        roles = [m.role for m in self.messages(draft)]
        return v.check_turns(roles, max(3, draft.sub.params.get("turns", 3)))

    # -- the flow ----------------------------------------------------------------------------

    async def generate(self, ctx: FlowContext, item: WorkItem, trace: Trace) -> Candidate:
        sub = self.spec.subcategory(item.subcategory)
        chunk = ctx.index.get(item.seed_chunk_id)
        passage = await self.transform(ctx, trace, chunk, item.transformation)
        draft = Draft(item=item, sub=sub, chunk=chunk, passage=passage)

        draft.task = await self.ask(ctx, trace, "instruct",
                                    self.render("instruct.j2", **self._values(draft)),
                                    UserMessage, item.seed)
        trace.steps.append({"step": "instruct", "task": draft.task.model_dump(mode="json")})
        if problem := self.check_task(draft):
            raise Rejected("instruct", problem, raw=draft.task.model_dump_json())
        await self.refine_task(ctx, trace, draft)

        styles = turn_styles(sub, random.Random(item.seed))
        turns = draft.answer = [Turn("opening", draft.task.question)]
        min_support = sub.params.get("min_support", 0.5)
        for n in range(1, len(styles) + 2):  # n: the user turn being answered
            if n > 1:
                turns.append(await self.follow_up(ctx, trace, draft, n, styles[n - 2]))
            reply = await self.answer_turn(ctx, trace, draft, item.seed + 7 + 17 * n)
            turns[-1].assistant = reply.answer.strip()
            problem, support = v.check_answer(
                turns[-1].assistant, n, turns[-1].user, [passage, *(t.user for t in turns)],
                [t.assistant for t in turns[:-1]], min_support)
            draft.scores[f"support_{n}"] = support
            if problem:
                raise Rejected("validate", problem, f"lexical_support {support:.2f}",
                               raw=reply.model_dump_json())
        draft.scores["min_support"] = min(draft.scores[f"support_{n}"]
                                          for n in range(1, len(turns) + 1))
        draft.extra |= {"turns": len(turns), "follow_up_styles": styles,
                        "seed_in": "first_user_turn"}
        if problem := await self.validate(ctx, draft):
            raise Rejected("validate", problem)
        return self.candidate(ctx, draft, trace)

    async def follow_up(self, ctx: FlowContext, trace: Trace, draft: Draft, n: int,
                        style: str) -> Turn:
        """The teacher writes user turn `n` in `style`; checked before its answer is paid for."""
        turns: list[Turn] = draft.answer
        prompt = self.render("follow_up.j2", passage=draft.passage, turns=turns,
                             style=self.spec.subcategory(style).description)
        text = (await self.ask(ctx, trace, "follow_up", prompt, UserMessage,
                               draft.item.seed + 13 * n)).question.strip()
        trace.steps.append({"step": "follow_up", "turn": n, "style": style, "question": text})
        if problem := v.check_follow_up(text, n, [t.user for t in turns],
                                        [t.assistant for t in turns]):
            raise Rejected("follow_up", problem, raw=text)
        return Turn(style, text)

    async def answer_turn(self, ctx: FlowContext, trace: Trace, draft: Draft,
                          seed: int) -> Reply:
        """The teacher answers the last user turn with the conversation so far as chat messages
        (the record's own), the reply format asked for on the last message only. `Skill.ask`
        sends a single prompt, so the retry loop is its, over a message list."""
        history = self.messages(draft)
        history[-1] = ChatMessage(role="user", content=self.render(
            "answer_request.j2", question=history[-1].content))
        failure: ReplyError | None = None
        for attempt in range(ctx.settings.reply_retries + 1):
            try:
                value, completion = await chat_json(
                    ctx.teacher, history, Reply, max_tokens=ctx.settings.max_tokens,
                    temperature=self.answer_temperature(ctx), seed=seed + attempt)
            except ReplyError as exc:
                trace.usage.add(exc.completion, "respond")
                failure = exc
                continue
            trace.usage.add(completion, "respond")
            return value
        assert failure is not None
        raise Rejected("respond", failure.reason, failure.detail, raw=failure.completion.text)


SKILL = ConversationSkill
