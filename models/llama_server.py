"""Backend A: a llama-server process the engine starts, health-checks, restarts and always stops."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from models.teacher import TeacherError

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"


class ServerStartError(TeacherError):
    """llama-server could not be started; the message says why and what to do."""


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


class ManagedServer:
    """`async with ManagedServer(settings) as server:` — started on enter, stopped on exit."""

    def __init__(self, settings: ServerSettings, max_restarts: int = 3) -> None:
        self.settings = settings
        self.max_restarts = max_restarts
        self.restarts = 0
        self.port = settings.port
        self._proc: asyncio.subprocess.Process | None = None
        self._restart_lock = asyncio.Lock()
        self._log_file = None

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
                # another process may have taken the port between our probe and the bind
                if "address already in use" in str(exc).lower() and not user_port and attempt < 2:
                    continue
                raise

    async def _spawn(self) -> None:
        if self.settings.log_path:
            self.settings.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.settings.log_path, "ab")
        out = self._log_file or subprocess.DEVNULL
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command(), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            raise ServerStartError(f"could not start {self.settings.binary}: {exc}") from exc

    async def _wait_healthy(self) -> None:
        deadline = asyncio.get_running_loop().time() + self.settings.startup_timeout_s
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                if not self.alive:
                    raise ServerStartError(f"llama-server exited during start-up: {self._log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with session.get(f"{self.base_url}/health") as resp:
                        if resp.status == 200:
                            return
                if asyncio.get_running_loop().time() > deadline:
                    raise ServerStartError(
                        f"llama-server not healthy after {self.settings.startup_timeout_s:.0f}s: "
                        f"{self._log_tail()}")
                await asyncio.sleep(0.2)

    def _log_tail(self) -> str:
        path = self.settings.log_path
        if not path or not path.exists():
            return f"exit code {self._proc.returncode if self._proc else '?'} (no log)"
        lines = path.read_text(errors="replace").splitlines()[-40:]
        # the useful line is the first error; fall back to the last line
        hits = [ln for ln in lines if any(w in ln.lower() for w in
                                          ("error", "failed", "unable", "cannot", "in use"))]
        hint = (hits[0] if hits else (lines[-1] if lines else "")).strip()
        return f"{hint} (full log: {path})"

    async def ensure_alive(self) -> None:
        """Restart a server that died mid-run (bounded), once even if many calls notice together."""
        if self.alive:
            return
        async with self._restart_lock:
            if self.alive:
                return
            if self.restarts >= self.max_restarts:
                raise ServerStartError(f"llama-server died {self.restarts + 1} times; giving up "
                                       f"({self._log_tail()})")
            self.restarts += 1
            log.warning("llama-server died (exit %s); restarting (%d/%d)",
                        self._proc.returncode if self._proc else "?", self.restarts, self.max_restarts)
            await self.stop()
            await self.start()

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
