"""Backend B: any OpenAI-compatible chat endpoint over aiohttp (also used for llama-server)."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence

import aiohttp

from models.teacher import ChatMessage, Completion, ReplyError, TeacherError, TeacherUnavailable

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {429, 500, 502, 503, 504}


class OpenAICompatTeacher:
    """Chat client with a slot-sized concurrency limit, per-call timeout and retries with backoff.

    `on_failure` runs before each retry of a transport error; the managed server uses it to
    restart a dead llama-server so the retry lands on a live one (a request in flight when the
    server died is thus sent again, not lost). `restarts` reports how many restarts that took.
    """

    def __init__(
        self,
        base_url: str | Callable[[], str],
        *,
        model_name: str = "teacher",
        slots: int = 4,
        timeout_s: float = 300.0,
        retries: int = 4,
        api_key: str | None = None,
        llama_cpp: bool = False,
        on_failure: Callable[[], Awaitable[None]] | None = None,
        restarts: Callable[[], int] | None = None,
        sampling: dict[str, int | float] | None = None,
    ) -> None:
        # a callable follows a managed server that came back on another port after a restart
        self._base_url = base_url
        self.model_name = model_name
        self.slots = slots
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._retries = retries
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._llama_cpp = llama_cpp
        self._on_failure = on_failure
        self._restarts = restarts
        self.sampling = dict(sampling or {})  # llama.cpp sampler settings (models/sampling.py)
        self._limit = asyncio.Semaphore(slots)
        self._session: aiohttp.ClientSession | None = None
        self.retried = 0  # transport failures retried (timeouts, 5xx, bodies that are not JSON)

    @property
    def server_restarts(self) -> int:
        """Times the server behind this client died and was restarted (0 for a plain URL)."""
        return self._restarts() if self._restarts else 0

    @property
    def base_url(self) -> str:
        url = (self._base_url() if callable(self._base_url) else self._base_url).rstrip("/")
        return url[: -len("/v1")] if url.endswith("/v1") else url

    def _body(self, messages, schema, max_tokens, temperature, seed) -> dict:
        body: dict = {
            **self.sampling,
            "model": self.model_name,
            "messages": [m.model_dump() for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if seed is not None:
            body["seed"] = seed
        if schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": schema, "strict": True},
            }
        if self._llama_cpp:
            body["cache_prompt"] = True  # reuse the shared prefix (system prompt, seed passage)
        return body

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        schema: dict | None = None,
        max_tokens: int = 256,
        temperature: float = 0.7,
        seed: int | None = None,
        stop: Sequence[str] = (),
    ) -> Completion:
        body = self._body(messages, schema, max_tokens, temperature, seed)
        if stop:
            body["stop"] = list(stop)
        async with self._limit:
            last = "no attempt"
            for attempt in range(self._retries + 1):
                if attempt:
                    self.retried += 1
                    if self._on_failure is not None:
                        await self._on_failure()
                    await asyncio.sleep(min(8.0, 0.25 * 2**attempt) * (0.5 + random.random()))
                try:
                    return await self._post(body)
                except _Retryable as exc:
                    last = str(exc)
                    log.debug("teacher call failed (attempt %d): %s", attempt + 1, last)
        raise TeacherUnavailable(
            f"teacher at {self.base_url} failed {self._retries + 1} times (last: {last}); "
            "check that it is running, then re-run the same command to resume"
        )

    async def _post(self, body: dict) -> Completion:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        started = time.perf_counter()
        try:
            async with self._session.post(f"{self.base_url}/v1/chat/completions", json=body) as resp:
                if resp.status == 500 and (error := _json_error(await resp.text())):
                    # a live server rejecting this output (e.g. llama.cpp failing to parse what the
                    # model wrote): the same request fails the same way, so the item retries with
                    # a new seed instead of the transport retrying it verbatim
                    raise ReplyError("server error", Completion(
                        text="", finish_reason="error", latency_s=time.perf_counter() - started,
                        model=self.model_name), error)
                if resp.status in RETRYABLE_STATUS:
                    raise _Retryable(f"HTTP {resp.status}: {(await resp.text())[:200]}")
                if resp.status != 200:
                    raise TeacherError(
                        f"teacher refused the request (HTTP {resp.status}): {(await resp.text())[:300]}"
                    )
                try:
                    data = await resp.json(content_type=None)
                except ValueError as exc:
                    raise _Retryable(f"reply is not JSON: {exc}") from exc
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        return _completion(data, time.perf_counter() - started, self.model_name)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Retryable(Exception):
    pass


def _json_error(text: str) -> str | None:
    """The message of an OpenAI-style JSON error body, or None for anything else."""
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        return None
    if isinstance(error, dict):
        return str(error.get("message") or error)[:300]
    return str(error)[:300] if error else None


def _completion(data: dict, latency: float, model: str) -> Completion:
    usage = data.get("usage") or {}
    timings = data.get("timings") or {}
    choices = data.get("choices") or []
    base = dict(
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        cached_tokens=int(timings.get("cache_n") or 0),
        latency_s=latency,
        model=str(data.get("model") or model),
    )
    if not choices or not isinstance(choices[0], dict):
        raise ReplyError("empty reply", Completion(text="", finish_reason="error", **base))
    message = choices[0].get("message") or {}
    text = message.get("content") or ""
    return Completion(text=text, finish_reason=str(choices[0].get("finish_reason") or "stop"), **base)
