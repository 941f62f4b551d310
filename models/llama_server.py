"""Backend A: a llama-server process the engine starts, health-checks, restarts and always stops."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import re
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from models.teacher import TeacherError, TeacherUnavailable

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
MAX_RESTARTS = 3  # deaths survived within the restart window before the run gives up
LOG_TAIL_BYTES = 256 * 1024  # enough for a start-up's error lines; the log itself may be huge
# the words llama.cpp logs when an allocation fails (ggml_aligned_malloc, the CPU/CUDA buffers)
OOM_MARKS = ("insufficient memory", "failed to allocate", "out of memory", "cannot allocate")


class ServerStartError(TeacherError):
    """llama-server could not be started; the message says why and what to do."""


class PortInUse(ServerStartError):
    """llama-server could not bind its port: another process holds it."""


class ServerDied(ServerStartError, TeacherUnavailable):
    """llama-server died mid-run and did not come back: the run stops (it stays resumable)."""


@dataclass(frozen=True)
class ServerSettings:
    model_path: Path
    binary: Path
    parallel: int = 4
    ctx_per_slot: int = 4096
    gpu_layers: int = 0
    host: str = "127.0.0.1"
    port: int | None = None
    threads: int | None = None
    log_path: Path | None = None
    startup_timeout_s: float = 180.0
    extra_args: tuple[str, ...] = field(default_factory=tuple)


def check_gguf(path: Path) -> None:
    """Fail early with a clear line instead of a cryptic server log."""
    if not path.is_file():
        raise ServerStartError(f"teacher model {path} does not exist; pass --teacher-model PATH.gguf")
    with open(path, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise ServerStartError(f"teacher model {path} is not a GGUF file (bad magic); "
                                   "pass a .gguf model converted for llama.cpp")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    # Runs in the child before exec: if the engine is SIGKILLed the kernel stops the server too,
    # so no orphan keeps a port and a GB of RAM.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _strip(line: str) -> str:
    """A llama.cpp log line without its `0.00.029.106 E ` time and level prefix."""
    return re.sub(r"^\s*[\d.]+\s+[DIWE]\s+", "", line).strip()


def exit_note(returncode: int | None) -> str:
    if returncode is None:
        return "exit status unknown"
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
        return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class ManagedServer:
    """`async with ManagedServer(settings) as server:` — started on enter, stopped on exit.

    A server that dies mid-run is restarted by `ensure_alive` with a growing pause, at most
    `max_restarts` times within `restart_window_s` (a crash after a long healthy stretch does
    not count towards the limit of an earlier one); then it gives up with `ServerDied`.
    """

    def __init__(self, settings: ServerSettings, max_restarts: int = MAX_RESTARTS,
                 restart_window_s: float = 600.0) -> None:
        self.settings = settings
        self.max_restarts = max_restarts
        self.restart_window_s = restart_window_s
        self.restarts = 0  # in all, for the run's summary
        self.port = settings.port
        self._proc: asyncio.subprocess.Process | None = None
        self._restart_lock = asyncio.Lock()
        self._recent: list[float] = []  # loop times of the restarts inside the window
        self._gave_up: ServerDied | None = None
        self._log_file = None
        self._log_start = 0  # where this process's output begins in the (appended) log

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.host}:{self.port}"

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def command(self) -> list[str]:
        s = self.settings
        cmd = [
            str(s.binary), "--model", str(s.model_path),
            "--host", s.host, "--port", str(self.port),
            "--parallel", str(s.parallel), "--ctx-size", str(s.ctx_per_slot * s.parallel),
            "--n-gpu-layers", str(s.gpu_layers), "--cont-batching", "--metrics",
            "--no-webui", "--no-warmup",
        ]
        if s.threads:
            cmd += ["--threads", str(s.threads)]
        return cmd + list(s.extra_args)

    async def __aenter__(self) -> ManagedServer:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def start(self) -> None:
        check_gguf(self.settings.model_path)
        user_port = self.settings.port is not None
        for attempt in range(3):
            if not user_port:
                self.port = free_port(self.settings.host)
            await self._spawn()
            try:
                await self._wait_healthy()
                log.info("llama-server ready at %s (pid %s, %d slots)",
                         self.base_url, self.pid, self.settings.parallel)
                return
            except ServerStartError as exc:
                await self.stop()
                # another process took the free port between our probe and the server's bind
                if isinstance(exc, PortInUse) and not user_port and attempt < 2:
                    log.info("port %s was taken before llama-server bound it; trying another",
                             self.port)
                    continue
                raise

    async def _spawn(self) -> None:
        if self.settings.log_path:
            self.settings.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.settings.log_path, "a+b")
        else:  # no log kept, but a failed start can still be explained from its output
            self._log_file = tempfile.TemporaryFile()
        self._log_start = os.fstat(self._log_file.fileno()).st_size
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command(), stdin=subprocess.DEVNULL, stdout=self._log_file,
                stderr=self._log_file, preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            self._log_file.close()
            self._log_file = None
            raise ServerStartError(f"could not start {self.settings.binary}: {exc}") from exc

    async def _wait_healthy(self) -> None:
        deadline = asyncio.get_running_loop().time() + self.settings.startup_timeout_s
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                if not self.alive:
                    raise self._start_failure()
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with session.get(f"{self.base_url}/health") as resp:
                        if resp.status == 200:
                            return
                if asyncio.get_running_loop().time() > deadline:
                    raise ServerStartError(
                        f"llama-server not healthy after {self.settings.startup_timeout_s:.0f}s "
                        f"({self._first_error()}); a large model on a slow disk may need longer"
                        f"{self._where()}")
                await asyncio.sleep(0.2)

    def _log_lines(self) -> list[str]:
        """The output of the current (or last) server process, at most its last 256 KiB."""
        if self._log_file is None:
            return []
        fd = self._log_file.fileno()
        end = os.fstat(fd).st_size
        start = max(self._log_start, end - LOG_TAIL_BYTES)
        return os.pread(fd, end - start, start).decode(errors="replace").splitlines()

    def _where(self) -> str:
        path = self.settings.log_path
        return f" (full log: {path})" if path else ""

    def _first_error(self, last: int | None = None) -> str:
        """The first error-like line of the process's output (of its `last` lines if given)."""
        lines = [_strip(ln) for ln in self._log_lines() if ln.strip()][-(last or 0):]
        errors = [ln for ln in lines if any(w in ln.lower() for w in
                                            ("error", "failed", "unable", "cannot", "couldn't"))]
        return (errors[0] if errors else lines[-1] if lines else "no output")[:300]

    def _start_failure(self) -> ServerStartError:
        """What went wrong, said once, from the server's own output: port, memory, model file."""
        s, where = self.settings, self._where()
        text = "\n".join(self._log_lines()).lower()
        if "couldn't bind" in text or "address already in use" in text:
            return PortInUse(f"port {self.port} on {s.host} is in use by another process; pick "
                             f"another port (or none, for a free one) or stop the process using "
                             f"it{where}")
        if any(mark in text for mark in OOM_MARKS):
            if "kv cache" in text or "create context" in text or "create_context" in text:
                return ServerStartError(
                    f"llama-server could not allocate a context of {s.ctx_per_slot * s.parallel} "
                    f"tokens ({s.parallel} slots × {s.ctx_per_slot}) for {s.model_path.name}: out "
                    f"of memory; lower --ctx or --parallel, or offload to a GPU with "
                    f"--gpu-layers{where}")
            return ServerStartError(
                f"llama-server ran out of memory loading {s.model_path}; free memory, or use a "
                f"smaller or more quantized model{where}")
        if "error loading model" in text or "failed to load model" in text:
            detail = next((_strip(ln) for ln in self._log_lines()
                           if "error loading model" in ln or "gguf_init_from" in ln), "")
            detail = detail.split("error loading model:")[-1].strip()
            return ServerStartError(
                f"llama-server could not load {s.model_path} ({detail or 'see the log'}): the "
                f"file is corrupt, truncated or needs a newer llama.cpp; re-download or "
                f"re-convert it{where}")
        note = exit_note(self._proc.returncode if self._proc else None)
        if note == "killed by SIGKILL":  # an allocation the kernel allowed, then could not back
            return ServerStartError(
                f"llama-server was killed during start-up (SIGKILL, usually the kernel's "
                f"out-of-memory killer: see `dmesg`); a context of {s.ctx_per_slot * s.parallel} "
                f"tokens may not fit: lower --ctx or --parallel{where}")
        return ServerStartError(f"llama-server exited during start-up ({note}): "
                                f"{self._first_error()}{where}")

    async def ensure_alive(self) -> None:
        """Restart a server that died mid-run (bounded), once even if many calls notice together."""
        if self._gave_up is not None:
            raise self._gave_up
        if self.alive:
            # the connection drops a moment before the dead process is reaped
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._proc.wait(), timeout=0.5)
            if self.alive:
                return  # a live server had a transient failure: the caller just retries
        async with self._restart_lock:
            if self._gave_up is not None:
                raise self._gave_up
            if self.alive:
                return  # another caller restarted it while this one waited
            code = self._proc.returncode if self._proc else None
            died = exit_note(code)
            if code is not None and code > 0:
                # a crash says why in its final lines (earlier ones are about old requests)
                died += f": {self._first_error(last=5)}"
            now = asyncio.get_running_loop().time()
            self._recent = [t for t in self._recent if now - t < self.restart_window_s]
            if len(self._recent) >= self.max_restarts:
                self._gave_up = ServerDied(
                    f"llama-server keeps dying: {len(self._recent) + 1} deaths within "
                    f"{self.restart_window_s:.0f}s (last: {died}); check free memory "
                    f"(`dmesg` shows the out-of-memory killer) and lower --parallel or --ctx, "
                    f"then re-run the same command to resume{self._where()}")
                await self.stop()
                raise self._gave_up
            self._recent.append(now)
            self.restarts += 1
            pause = min(10.0, 0.5 * 2 ** (len(self._recent) - 1))
            log.warning("llama-server (pid %s) died (%s); restarting it in %.1fs (%d/%d), "
                        "requests in flight will be retried%s", self.pid, died, pause,
                        len(self._recent), self.max_restarts, self._where())
            await self.stop()
            await asyncio.sleep(pause)
            try:
                await self.start()
            except ServerStartError as exc:
                self._gave_up = ServerDied(f"llama-server died ({died}) and could not be "
                                           f"restarted: {exc}; fix that, then re-run the same "
                                           "command to resume")
                raise self._gave_up from exc

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        elif proc is not None:
            await proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
