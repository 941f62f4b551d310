"""Records that cross the queue between agents and the engine (and the disk)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models import ChatMessage, Completion

RECORD_SCHEMA_VERSION = 1


class WorkItem(BaseModel):
    """One planned instruction: which seed, which type, which transformation. The id is derived
    from these inputs, so a resumed run recognises what it already wrote."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    skill: str
    subcategory: str
    transformation: str
    seed_chunk_id: str
    seed: int


class Usage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    unusable_replies: int = 0  # replies that did not parse or fit the schema
    # replies asked again instead of ending their item (unparsable, or faulted by a cheap check
    # or a validator), by "stage: reason"
    retried: dict[str, int] = Field(default_factory=dict)
    # completion tokens per calling stage (transform, instruct, suggest, edit, respond, ...):
    # where a rejected item's tokens went, so waste can be cut where it is made
    by_stage: dict[str, int] = Field(default_factory=dict)
    # prompt tokens the teacher computed (not served from its cache) per calling stage: where
    # the teacher's prompt-processing time goes, so layout and routing can cut it where it is
    evaluated_by_stage: dict[str, int] = Field(default_factory=dict)

    @property
    def evaluated_prompt_tokens(self) -> int:
        """Prompt tokens the teacher computed; the rest came from its prompt cache."""
        return self.prompt_tokens - self.cached_tokens

    def add(self, completion: Completion, stage: str) -> None:
        self.calls += 1
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        self.cached_tokens += completion.cached_tokens
        self.by_stage[stage] = self.by_stage.get(stage, 0) + completion.completion_tokens
        evaluated = completion.prompt_tokens - completion.cached_tokens
        self.evaluated_by_stage[stage] = self.evaluated_by_stage.get(stage, 0) + evaluated

    def retry(self, stage: str, reason: str) -> None:
        """A reply that is asked again instead of ending its item."""
        key = f"{stage}: {reason}"
        self.retried[key] = self.retried.get(key, 0) + 1

    def merge(self, other: Usage) -> None:
        self.calls += other.calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens
        self.unusable_replies += other.unusable_replies
        for stage, tokens in other.by_stage.items():
            self.by_stage[stage] = self.by_stage.get(stage, 0) + tokens
        for stage, tokens in other.evaluated_by_stage.items():
            self.evaluated_by_stage[stage] = self.evaluated_by_stage.get(stage, 0) + tokens
        for why, n in other.retried.items():
            self.retried[why] = self.retried.get(why, 0) + n


class Candidate(BaseModel):
    """A finished instruction/response pair waiting for the dedup gates."""

    model_config = ConfigDict(extra="forbid")
    item: WorkItem
    # the record's type; None: the planned one (it differs after agents.flow.Skill.retyped)
    subcategory: str | None = None
    instruction: str
    messages: list[ChatMessage]
    metadata: dict[str, Any]
    usage: Usage


class Rejection(BaseModel):
    """Why an item produced no record; written to rejected.jsonl so nothing vanishes silently."""

    model_config = ConfigDict(extra="forbid")
    id: str
    skill: str
    subcategory: str
    stage: str
    reason: str
    detail: str = ""
    raw: str = ""
    usage: Usage = Field(default_factory=Usage)
    metadata: dict[str, Any] = Field(default_factory=dict)


class Record(BaseModel):
    """One accepted line of data.jsonl, in the orca-agentinstruct `messages` layout."""

    model_config = ConfigDict(extra="forbid")
    id: str
    skill: str
    subcategory: str
    messages: list[ChatMessage]
    metadata: dict[str, Any]


class Rejected(Exception):
    """Raised inside a flow to end an item with a reason (and the raw reply, if any)."""

    def __init__(self, stage: str, reason: str, detail: str = "", raw: str = "") -> None:
        super().__init__(f"{stage}: {reason}" + (f" ({detail})" if detail else ""))
        self.stage, self.reason, self.detail, self.raw = stage, reason, detail, raw
        self.usage = Usage()  # filled in by Skill.run
