"""Code interpreter for UNTRUSTED, model-written Python.

    result = await run_python("print(sum(range(10)))", tests="assert total() == 45")

Each call gets a fresh scratch directory, a separate process tree under rlimits (CPU, address
space, file size, processes, no core dumps), a minimal environment, a wall-clock timeout, a cap
on captured output, and, where the machine allows it, its own network/mount/PID namespaces and
an unprivileged uid: see sandbox_isolation for what is used and why. The result says what
happened, including which limit was hit; it never raises for anything the code does.

Linux only (rlimits, /proc, prctl). The code runs under a system python with -S: the standard
library is there, the engine's packages (numpy, pydantic, ...) are not.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import resource
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.tools.sandbox_init import REPORT_FD_PLACEHOLDER
from agents.tools.sandbox_isolation import (
    PYTHON_FLAGS,
    SANDBOX_GID,
    Isolation,
    detect_isolation,
)

_HERE = Path(__file__).parent
_INIT_SOURCE = (_HERE / "sandbox_init.py").read_text(encoding="utf-8")
_RUNNER_SOURCE = (_HERE / "sandbox_runner.py").read_text(encoding="utf-8")
_CHILD_PATH = "/usr/bin:/bin"
_READ_CHUNK = 65536
# After the sandbox's process has exited, how long its pipes may stay open (only possible
# without a PID namespace, when a setsid() escapee still holds them).
_PIPE_GRACE_S = 2.0
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)

LimitHit = Literal["wall_time", "cpu_time", "memory", "output", "file_size", "processes"]


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the code in it): setup, namespaces, interpreter."""


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    wall_s: float = Field(5.0, gt=0)
    cpu_s: int = Field(5, ge=1)  # RLIMIT_CPU per process: SIGXCPU, SIGKILL one second later
    memory_mb: int = Field(512, ge=64)  # RLIMIT_AS per process
    max_output_bytes: int = Field(64_000, ge=1)  # per stream; more and the run is killed
    max_processes: int = Field(32, ge=2)  # RLIMIT_NPROC for the sandbox uid (the runner is one)
    max_file_mb: int = Field(16, ge=0)  # RLIMIT_FSIZE: largest file the code may write
    scratch_mb: int = Field(64, ge=1)  # size of the private /tmp (namespaces only)


class RunResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ok: bool  # exited 0, no limit hit, and (with tests) the tests ran to the end
    exit_code: int | None  # None when killed by a signal
    signal: str | None  # e.g. "SIGSEGV", "SIGKILL"
    stdout: str  # at most Limits.max_output_bytes, decoded with errors="replace"
    stderr: str
    wall_s: float
    limit_hit: LimitHit | None
    network_isolated: bool
    failed_part: Literal["main", "tests"] | None = None  # set when not ok


async def run_python(code: str, *, tests: str | None = None, limits: Limits = Limits()) -> RunResult:
    """Run `code` as main.py in the sandbox; with `tests`, run them afterwards in the same
    namespace (plain asserts, and any test_* functions they define are called)."""
    isolation = await asyncio.to_thread(detect_isolation)
    scratch = Path(tempfile.mkdtemp(prefix="agent-sandbox-"))
    try:
        # errors="replace": lone surrogates from a model must not crash the engine.
        (scratch / "main.py").write_text(code, encoding="utf-8", errors="replace")
        if tests is not None:
            (scratch / "test_main.py").write_text(tests, encoding="utf-8", errors="replace")
        if not isolation.namespaces and isolation.sandbox_uid is not None:
            # Without namespaces the code works in the scratch dir itself, as the sandbox uid.
            os.chown(scratch, isolation.sandbox_uid, SANDBOX_GID)
        return await _run(scratch, tests is not None, limits, isolation)
    finally:
        _remove_scratch(scratch)


async def _run(scratch: Path, has_tests: bool, limits: Limits, isolation: Isolation) -> RunResult:
    status_read, status_write = os.pipe()
    try:
        argv, cwd, env = _command(isolation, scratch, status_write, has_tests, limits)
        loop = asyncio.get_running_loop()
        started = loop.time()
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=cwd, env=env,
            # Own session = own process group: one killpg reaches everything it spawned.
            start_new_session=True, pass_fds=(status_write,),
            preexec_fn=_apply_rlimits(limits, isolation))
        os.close(status_write)
        status_write = -1
        try:
            watch = await _watch(proc, limits)
        finally:
            if proc.returncode is None:  # cancelled: leave nothing running behind us
                _kill_group(proc.pid)
                await proc.wait()
        wall_s = loop.time() - started
        status = _read_status(status_read)
    finally:
        os.close(status_read)
        if status_write >= 0:
            os.close(status_write)
    return _result(watch, status, proc.returncode, wall_s, has_tests, limits, isolation)


def _command(isolation: Isolation, scratch: Path, status_fd: int, has_tests: bool,
             limits: Limits) -> tuple[list[str], str, dict[str, str]]:
    runner = [isolation.python, *PYTHON_FLAGS, "-c", _RUNNER_SOURCE, REPORT_FD_PLACEHOLDER,
              "1" if has_tests else "0"]
    if isolation.sandbox_uid is not None:
        assert isolation.setpriv is not None
        # no-new-privs: setuid binaries (su, mount, ...) cannot give the code root back.
        runner = [isolation.setpriv, f"--reuid={isolation.sandbox_uid}", f"--regid={SANDBOX_GID}",
                  "--clear-groups", "--no-new-privs", "--bounding-set=-all", "--", *runner]
    setup: list[str] = []
    cwd = home = str(scratch)  # without namespaces the code works in the scratch dir itself
    if isolation.namespaces:
        setup = [str(scratch), str(limits.scratch_mb), str(isolation.sandbox_uid), str(SANDBOX_GID),
                 *isolation.hidden_dirs]
        cwd, home = "/", "/tmp"  # init moves to the private /tmp
    argv = [isolation.python, *PYTHON_FLAGS, "-c", _INIT_SOURCE, str(status_fd), *setup, "--", *runner]
    if isolation.namespaces:
        assert isolation.unshare is not None
        argv = [isolation.unshare, "--mount", "--net", "--ipc", "--pid", "--fork", "--kill-child",
                "--mount-proc", "--", *argv]
    # Built from nothing: no token, key or path of the engine's environment reaches the code.
    env = {"PATH": _CHILD_PATH, "HOME": home, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONHASHSEED": "0"}
    return argv, cwd, env


def _apply_rlimits(limits: Limits, isolation: Isolation) -> Callable[[], None]:
    max_processes = limits.max_processes
    if isolation.sandbox_uid is None:
        # RLIMIT_NPROC counts all processes and threads of the uid; when that is the engine's own
        # user, allow what it runs already plus the sandbox's share.
        max_processes += _tasks_of_uid(os.geteuid())
    mib = 1024 * 1024

    def apply() -> None:  # runs in the forked child before exec; limits survive exec and fork
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mib,) * 2)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.max_file_mb * mib,) * 2)
        resource.setrlimit(resource.RLIMIT_NPROC, (max_processes,) * 2)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        # If the engine dies, the sandbox dies with it instead of running unsupervised.
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return apply


class _Watch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stdout: bytes
    stderr: bytes
    timed_out: bool
    output_overflow: bool


async def _watch(proc: asyncio.subprocess.Process, limits: Limits) -> _Watch:
    """Wait for exit, the wall limit or the output cap, whichever comes first."""
    assert proc.stdout is not None and proc.stderr is not None
    overflow = asyncio.Event()
    out, err = bytearray(), bytearray()
    readers = [asyncio.create_task(_drain(proc.stdout, out, limits.max_output_bytes, overflow)),
               asyncio.create_task(_drain(proc.stderr, err, limits.max_output_bytes, overflow))]
    exited = asyncio.create_task(proc.wait())
    overflowed = asyncio.create_task(overflow.wait())
    try:
        done, _ = await asyncio.wait({exited, overflowed}, timeout=limits.wall_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        killed = exited not in done
        if killed:
            _kill_group(proc.pid)
        await exited
        # Also after a normal exit: background children still in the group die here (with a PID
        # namespace the kernel has already killed them).
        _kill_group(proc.pid)
        _, still_open = await asyncio.wait(readers, timeout=_PIPE_GRACE_S)
        if still_open:  # an escapee outside our group holds the pipes; stop listening to it
            transport = getattr(proc, "_transport", None)
            if transport is not None:
                transport.close()
    finally:
        for task in (*readers, exited, overflowed):
            task.cancel()
        await asyncio.gather(*readers, exited, overflowed, return_exceptions=True)
    return _Watch(stdout=bytes(out), stderr=bytes(err), timed_out=killed and not overflow.is_set(),
                  output_overflow=overflow.is_set())


async def _drain(stream: asyncio.StreamReader, into: bytearray, cap: int, overflow: asyncio.Event) -> None:
    # Keep one byte past the cap to know it was exceeded; keep reading (and discarding) until
    # EOF so the pipe closes cleanly once the killed process is gone.
    while chunk := await stream.read(_READ_CHUNK):
        if len(into) <= cap:
            into += chunk[: cap + 1 - len(into)]
            if len(into) > cap:
                overflow.set()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:  # nothing left in the group
        pass


class _Status(BaseModel):
    """What the sandbox's init (sandbox_init.py) reports about the code's process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    wait_status: int
    cpu_s: float
    report: str  # runner lines: "main" / "tests" once each part completed


def _read_status(fd: int) -> _Status | None:
    # Every writer has exited by now, so this never waits; empty means init was killed (by us).
    os.set_blocking(fd, False)
    data = bytearray()
    try:
        while chunk := os.read(fd, _READ_CHUNK):
            data += chunk
    except BlockingIOError:
        pass
    header, _, report = bytes(data).partition(b"\n")
    try:
        wait_status, cpu_s = header.split()
        return _Status(wait_status=int(wait_status), cpu_s=float(cpu_s),
                       report=report.decode("utf-8", errors="replace"))
    except ValueError:  # empty or cut short: init was killed mid-way
        return None


def _result(watch: _Watch, status: _Status | None, returncode: int | None, wall_s: float,
            has_tests: bool, limits: Limits, isolation: Isolation) -> RunResult:
    stdout = watch.stdout[: limits.max_output_bytes].decode("utf-8", errors="replace")
    stderr = watch.stderr[: limits.max_output_bytes].decode("utf-8", errors="replace")
    killed_by_us = watch.timed_out or watch.output_overflow
    cpu_s = 0.0
    completed: set[str] = set()
    if status is not None:
        code = os.waitstatus_to_exitcode(status.wait_status)
        cpu_s = status.cpu_s
        completed = set(status.report.split())
    elif killed_by_us:
        code = -signal.SIGKILL
    elif isolation.sandbox_uid is not None:
        # The code cannot touch init (another uid), so a missing status is our own failure.
        raise SandboxError(f"the sandbox failed before reporting (exit status {returncode}); "
                           f"its stderr ends with: {stderr[-1500:].strip() or '(nothing)'}")
    else:  # same uid: the code itself may have killed init
        code = returncode if returncode is not None else -signal.SIGKILL
    exit_code = code if code >= 0 else None
    signal_name = signal.Signals(-code).name if code < 0 else None
    limit_hit = _limit_hit(watch, code, cpu_s, stderr, limits)
    tests_ran = not has_tests or "tests" in completed
    ok = exit_code == 0 and limit_hit is None and tests_ran
    failed_part = None
    if not ok:
        failed_part = "main" if "main" not in completed else "tests" if not tests_ran else None
    return RunResult(ok=ok, exit_code=exit_code, signal=signal_name, stdout=stdout, stderr=stderr,
                     wall_s=round(wall_s, 4), limit_hit=limit_hit,
                     network_isolated=isolation.namespaces, failed_part=failed_part)


def _limit_hit(watch: _Watch, code: int, cpu_s: float, stderr: str, limits: Limits) -> LimitHit | None:
    if watch.output_overflow:
        return "output"
    if watch.timed_out:
        return "wall_time"
    if code == 0:
        return None
    # SIGXCPU at the soft limit; code that ignores it gets SIGKILL at the hard limit.
    if code == -signal.SIGXCPU or (code == -signal.SIGKILL and cpu_s >= limits.cpu_s):
        return "cpu_time"
    # The rest comes from the error text. Python ignores SIGXFSZ and raises OSError instead;
    # only the tail is read, where the fatal error is.
    tail = stderr[-2000:]
    if code == -signal.SIGXFSZ or "File too large" in tail or "No space left on device" in tail:
        return "file_size"  # one file over max_file_mb, or the private /tmp full
    if "MemoryError" in tail or "Cannot allocate memory" in tail:
        return "memory"
    if "Resource temporarily unavailable" in tail or "can't start new thread" in tail:
        return "processes"  # fork()/clone() refused: RLIMIT_NPROC
    return None


def _tasks_of_uid(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:  # exited while we looked
                pass
    return count


def _remove_scratch(scratch: Path) -> None:
    def make_writable_and_retry(function: Callable[[str], object], path: str, _exc: object) -> None:
        # Without namespaces the code shares our uid and may have chmod'ed a dir to 000.
        os.chmod(os.path.dirname(path), 0o700)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, 0o700)
        function(path)

    shutil.rmtree(scratch, onerror=make_writable_and_retry)
