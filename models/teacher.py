"""The one teacher interface every agent uses, and the errors it raises."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    role: Literal["system", "user", "assistant", "tool"]
    content: str


class Completion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    text: str
    finish_reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # prompt tokens served from the server's prompt cache (llama.cpp `timings.cache_n`)
    cached_tokens: int = 0
    latency_s: float = 0.0
    model: str = ""


class TeacherError(RuntimeError):
    """The teacher could not be reached or refused the request (after retries)."""


class TeacherUnavailable(TeacherError):
    """The teacher is down for good: the run must stop (it stays resumable)."""


class ReplyError(Exception):
    """The teacher answered, but the reply is unusable: truncated, not JSON, or off-schema.

    The raw text and token counts travel with it so that nothing is silently lost.
    """

    def __init__(self, reason: str, completion: Completion, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.completion = completion
        self.detail = detail


class Teacher(Protocol):
    """Chat messages in, text out. The backend owns its concurrency limit (`slots`)."""

    model_name: str
    slots: int

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        schema: dict | None = None,
        max_tokens: int = 256,
        temperature: float = 0.7,
        seed: int | None = None,
        stop: Sequence[str] = (),
    ) -> Completion: ...

    async def aclose(self) -> None: ...


T = TypeVar("T", bound=BaseModel)


@functools.lru_cache(maxsize=1024)
def json_schema(model: type[BaseModel]) -> dict:
    """A model's JSON schema, built once per class (pydantic takes ~1 ms to build one)."""
    return model.model_json_schema()


async def chat_json(
    teacher: Teacher,
    messages: Sequence[ChatMessage],
    output: type[T],
    *,
    max_tokens: int = 256,
    temperature: float = 0.7,
    seed: int | None = None,
) -> tuple[T, Completion]:
    """Ask for JSON constrained by `output`'s schema and parse it into `output`.

    A reply cut off by max_tokens is never a record: the schema's maxLength bounds exist so that
    the JSON can close in time, and a truncated reply is reported for a retry.

    An `output` whose last field is text may name a `reply_stop` (a question's "?"): the server
    stops there instead of generating what a small teacher runs on into after it, and the reply
    is closed here as the teacher wrote it, up to and including the stop.
    """
    stop = getattr(output, "reply_stop", None)
    completion = await teacher.chat(
        messages, schema=json_schema(output), max_tokens=max_tokens,
        temperature=temperature, seed=seed, **({"stop": (stop,)} if stop else {}),
    )
    if stop and completion.finish_reason == "stop" and not completion.text.rstrip().endswith("}"):
        completion = completion.model_copy(update={"text": completion.text + stop + '"}'})
    if completion.finish_reason == "length":
        raise ReplyError("truncated", completion, f"hit max_tokens={max_tokens}")
    if not completion.text.strip():
        raise ReplyError("empty reply", completion)
    try:
        return output.model_validate_json(completion.text), completion
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "reply"
        raise ReplyError("invalid json", completion, f"{where}: {first['msg']}") from exc
