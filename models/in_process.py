"""Backend C: llama-cpp-python in this process, for machines where llama-server can't be built.

The `Llama` object cannot batch requests, so calls are serialized (slots=1): the slow path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from models.llama_server import check_gguf
from models.sampling import IN_PROCESS
from models.teacher import ChatMessage, Completion, ReplyError

log = logging.getLogger(__name__)


class InProcessTeacher:
    slots = 1

    def __init__(self, model_path: Path, *, ctx: int = 4096, gpu_layers: int = 0,
                 threads: int | None = None,
                 sampling: dict[str, int | float] | None = None,
                 model_name: str | None = None) -> None:
        check_gguf(model_path)
        self.model_path = model_path
        self.model_name = model_name or model_path.name
        self._ctx = ctx
        self._gpu_layers = gpu_layers
        self._threads = threads
        self._llm = None
        self._lock = asyncio.Lock()
        sampling = sampling or {}
        # llama-cpp-python has no DRY sampler: the settings it lacks are left out, said once
        self.sampling = {k: v for k, v in sampling.items() if k in IN_PROCESS}
        if dropped := sorted(set(sampling) - IN_PROCESS):
            log.info("in-process teacher: sampler settings %s need llama-server; not used",
                     ", ".join(dropped))
        log.warning("using in-process llama-cpp-python (one request at a time): the slow path; "
                    "llama-server with continuous batching is several times faster")

    def _load(self):
        if self._llm is None:
            from llama_cpp import Llama

            self._llm = Llama(model_path=str(self.model_path), n_ctx=self._ctx,
                              n_gpu_layers=self._gpu_layers, n_threads=self._threads,
                              verbose=False)
        return self._llm

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
        kwargs: dict = dict(messages=[m.model_dump() for m in messages], max_tokens=max_tokens,
                            temperature=temperature, **self.sampling)
        if stop:
            kwargs["stop"] = list(stop)
        if seed is not None:
            kwargs["seed"] = seed
        if schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        async with self._lock:
            started = time.perf_counter()
            data = await asyncio.to_thread(lambda: self._load().create_chat_completion(**kwargs))
        usage = data.get("usage") or {}
        base = dict(prompt_tokens=int(usage.get("prompt_tokens") or 0),
                    completion_tokens=int(usage.get("completion_tokens") or 0),
                    latency_s=time.perf_counter() - started, model=self.model_name)
        choices = data.get("choices") or []
        if not choices:
            raise ReplyError("empty reply", Completion(text="", finish_reason="error", **base))
        return Completion(text=choices[0]["message"].get("content") or "",
                          finish_reason=choices[0].get("finish_reason") or "stop", **base)

    async def aclose(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.close()
