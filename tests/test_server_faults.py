"""The managed llama-server misbehaving: killed mid-run (restarted, requests in flight sent again,
the run completes), killed too often (one clear line, data kept), and failing to start (port
taken, context too large for memory, corrupt model) with one line saying which and what to do.

Real llama-server (the embedded SmolLM2 GGUF), real `python -m engine` subprocesses, real
SIGKILLs on the server process found under the engine's pid in /proc.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import models.llama_server as llama_server
from models import ChatMessage, TeacherUnavailable
from models.llama_server import ManagedServer, PortInUse, ServerDied, ServerSettings
from models.openai_client import OpenAICompatTeacher
from tests.conftest import write_corpus

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# a reply the grammar cannot end early: 30 numbers (~130 tokens), so it is still being generated
# when the server is killed
LONG = {"type": "array", "items": {"type": "integer", "minimum": 10, "maximum": 99},
        "minItems": 30, "maxItems": 30}
ASK = [ChatMessage(role="user", content="List thirty two-digit numbers as a JSON array.")]


# ---- helpers ---------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """Child pids of `pid` (every thread's list: asyncio may fork from any thread)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return found


def server_of(pid: int) -> tuple[int, int] | None:
    """(pid, port) of the live llama-server child of `pid`, if there is one."""
    for child in children(pid):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{child}/stat").read_text().split()[2]
        except FileNotFoundError:
            continue
        if argv and argv[0].endswith(b"llama-server") and state != "Z":
            return child, int(argv[argv.index(b"--port") + 1])
    return None


def busy(port: int) -> bool:
    """The server is generating (its /metrics counts a request in flight)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return False
    return any(ln.startswith("llamacpp:requests_processing") and float(ln.split()[-1]) > 0
               for ln in text.splitlines())


def wait_for(check, proc: subprocess.Popen | None = None, limit_s: float = 900, what: str = ""):
    """Poll `check` until it returns something truthy; fail (not hang) if the engine exits first
    or nothing happens for `limit_s`."""
    deadline = time.monotonic() + limit_s
    while not (value := check()):
        assert proc is None or proc.poll() is None, f"engine exited early waiting for {what}"
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)
    return value


def kill_server_mid_request(engine: subprocess.Popen, previous: int | None) -> int:
    """SIGKILL the engine's llama-server (a new one, not `previous`) while it is generating."""
    pid, port = wait_for(lambda: (s := server_of(engine.pid)) and s[0] != previous and s,
                         engine, what="a (restarted) llama-server")
    wait_for(lambda: busy(port), engine, what="a request in flight")
    os.kill(pid, signal.SIGKILL)
    return pid


def complete_lines(path: Path) -> bytes:
    data = path.read_bytes() if path.exists() else b""
    return data[: data.rfind(b"\n") + 1]


def start_engine(corpus: Path, out: Path, *extra: str, **popen) -> subprocess.Popen:
    """`python -m engine` with the managed server (no --teacher-url: the embedded GGUF); its
    output goes to files next to --out, so a chatty run can never block on a full pipe."""
    cmd = [sys.executable, "-m", "engine", "--skill", "rag", "--input", str(corpus), "--out",
           str(out), "--num", "2", "--refine-rounds", "0", "--max-tokens", "256", "--parallel",
           "2", "--quiet", "--max-attempts", "5000", *extra]
    with open(f"{out}.stdout", "w") as stdout, open(f"{out}.stderr", "w") as stderr:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=stdout, stderr=stderr, **popen)
    proc.out = out
    return proc


def finish(engine: subprocess.Popen, limit_s: float) -> tuple[str, str]:
    engine.wait(timeout=limit_s)
    return Path(f"{engine.out}.stdout").read_text(), Path(f"{engine.out}.stderr").read_text()


def settings(binary, gguf, tmp_path, **kw) -> ServerSettings:
    return ServerSettings(model_path=gguf, binary=binary, parallel=2, ctx_per_slot=1024,
                          log_path=tmp_path / "server.log", **kw)


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus")


# ---- killed mid-run --------------------------------------------------------------------------


def test_a_request_in_flight_when_the_server_dies_is_sent_again_after_the_restart(
        server_binary, teacher_gguf, tmp_path):
    """The client's transport retry, not the item, absorbs the death: the call that was being
    generated returns a full reply from the restarted server."""
    async def main():
        async with ManagedServer(settings(server_binary, teacher_gguf, tmp_path)) as server:
            teacher = OpenAICompatTeacher(lambda: server.base_url, slots=2, llama_cpp=True,
                                          on_failure=server.ensure_alive,
                                          restarts=lambda: server.restarts)
            first_pid = server.pid
            try:
                call = asyncio.create_task(teacher.chat(ASK, schema=LONG, max_tokens=200,
                                                        temperature=0.5, seed=1))
                while not await asyncio.to_thread(busy, server.port):
                    assert not call.done(), "the reply came before the kill"
                    await asyncio.sleep(0.02)
                os.kill(first_pid, signal.SIGKILL)
                completion = await call
            finally:
                await teacher.aclose()
            return completion, first_pid, server.pid, teacher

    completion, first_pid, pid, teacher = asyncio.run(main())
    numbers = json.loads(completion.text)
    assert len(numbers) == 30 and all(10 <= n <= 99 for n in numbers)
    assert pid != first_pid and teacher.server_restarts == 1 and teacher.retried >= 1


@pytest.mark.timeout(3600)  # a whole --num 2 run on the CPU teacher: 10-40 min on a busy machine
def test_engine_survives_its_server_being_killed_twice_and_completes(corpus, tmp_path):
    out = tmp_path / "out"
    # --timeout: on a busy 2-core machine one 256-token reply can take minutes, and a call that
    # times out five times ends the run for a reason this test is not about
    engine = start_engine(corpus, out, "--timeout", "1200")
    try:
        wait_for(lambda: complete_lines(out / "data.jsonl") or
                 complete_lines(out / "rejected.jsonl"), engine, what="a first line")
        first = kill_server_mid_request(engine, None)
        kill_server_mid_request(engine, first)  # the restarted one, as soon as it works
        stdout, stderr = finish(engine, 3400)
    finally:
        engine.kill()
    assert engine.returncode == 0, stderr[-3000:]

    data = [json.loads(x) for x in (out / "data.jsonl").read_text().splitlines()]
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert len(data) == 2  # exactly --num, every line whole JSON (a torn one would not parse)
    ids = [r["id"] for r in data + rejected]
    assert len(ids) == len(set(ids))
    # the requests cut off by the kills were retried, never turned into rejections
    assert not [r for r in rejected if r["stage"] in ("teacher", "error")]
    this_run = json.loads((out / "summary.json").read_text())["this_run"]
    assert this_run["server_restarts"] == 2 and this_run["teacher_retries"] >= 2
    assert json.loads(stdout)["server_restarts"] == 2
    restarting = [ln for ln in stderr.splitlines() if "restarting it" in ln]
    assert len(restarting) == 2 and "killed by SIGKILL" in restarting[0]
    assert str(out / "logs" / "llama-server.log") in restarting[0]
    assert "error:" not in stderr


@pytest.mark.timeout(1200)
def test_a_server_that_keeps_dying_ends_the_run_with_one_line_and_keeps_the_data(corpus,
                                                                                tmp_path):
    out = tmp_path / "out"
    engine = start_engine(corpus, out)
    try:
        wait_for(lambda: complete_lines(out / "data.jsonl") or
                 complete_lines(out / "rejected.jsonl"), engine, what="a first line")
        before = {n: complete_lines(out / n) for n in ("data.jsonl", "rejected.jsonl")}
        pid = None
        for _ in range(llama_server.MAX_RESTARTS + 1):
            pid = kill_server_mid_request(engine, pid)
        stdout, stderr = finish(engine, 600)
    finally:
        engine.kill()
    assert engine.returncode == 1, stderr[-3000:]
    assert stdout == ""
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and stderr.splitlines()[-1] == errors[0]
    line = errors[0]
    deaths = f"{llama_server.MAX_RESTARTS + 1} deaths"
    for needle in ("llama-server keeps dying", deaths, "killed by SIGKILL", "memory",
                   "re-run the same command to resume", str(out / "logs" / "llama-server.log")):
        assert needle in line, (needle, line)
    assert stderr.count("restarting it") == llama_server.MAX_RESTARTS
    # what was written before the deaths is still there, byte for byte, and whole
    for name, earlier in before.items():
        now = (out / name).read_bytes()
        assert now.startswith(earlier) and (not now or now.endswith(b"\n"))
        assert all(json.loads(x) for x in now.splitlines())
    assert server_of(engine.pid) is None  # the last server was not left behind


def test_give_up_is_a_teacher_unavailable_that_every_later_call_gets_at_once(
        server_binary, teacher_gguf, tmp_path):
    async def main():
        server = ManagedServer(settings(server_binary, teacher_gguf, tmp_path), max_restarts=1)
        async with server:
            os.kill(server.pid, signal.SIGKILL)
            await server.ensure_alive()
            assert server.alive and server.restarts == 1
            os.kill(server.pid, signal.SIGKILL)
            with pytest.raises(ServerDied) as first:
                await server.ensure_alive()
            with pytest.raises(ServerDied) as again:
                await server.ensure_alive()
            assert not server.alive
        return first.value, again.value

    first, again = asyncio.run(main())
    # TeacherUnavailable is what ends a run (any other TeacherError rejects one item)
    assert isinstance(first, TeacherUnavailable) and again is first
    assert "2 deaths" in str(first) and "server.log" in str(first)


# ---- failing to start ------------------------------------------------------------------------


def test_a_fixed_port_in_use_is_one_clear_line(server_binary, teacher_gguf, tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = ManagedServer(settings(server_binary, teacher_gguf, tmp_path, port=port))
        with pytest.raises(PortInUse) as info:
            asyncio.run(server.start())
    message = str(info.value)
    assert f"port {port} on 127.0.0.1 is in use" in message and "stop the process" in message
    assert str(tmp_path / "server.log") in message
    assert not server.alive


def test_a_free_port_taken_before_the_server_binds_it_is_replaced(server_binary, teacher_gguf,
                                                                  tmp_path, monkeypatch):
    """The auto-picked port races with other processes; losing the race costs one more start."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        picks = iter([taken])
        real = llama_server.free_port
        monkeypatch.setattr(llama_server, "free_port", lambda host: next(picks, None) or real(host))

        async def main():
            async with ManagedServer(settings(server_binary, teacher_gguf, tmp_path)) as server:
                with urllib.request.urlopen(server.base_url + "/health", timeout=10) as r:
                    return server.port, r.status

        port, status = asyncio.run(main())
    assert status == 200 and port != taken
    assert f"port: {taken}" in (tmp_path / "server.log").read_text()  # it did try the taken one


def test_engine_start_failures_are_one_line_naming_the_cause_and_the_log(corpus, tmp_path,
                                                                         teacher_gguf):
    # a context of 2 × 4M tokens needs ~184 GB of KV cache for this model. The address-space
    # limit on the engine (inherited by its llama-server) makes that allocation fail at once on
    # any machine, instead of depending on its RAM and overcommit policy.
    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (64 << 30, 64 << 30))

    corrupt = tmp_path / "broken.gguf"
    corrupt.write_bytes(teacher_gguf.read_bytes()[: 20 << 20])  # a download cut short
    cases = [
        (["--ctx", str(4 << 20)], ["could not allocate a context of 8388608 tokens",
                                   "out of memory", "lower --ctx or --parallel"]),
        (["--teacher-model", str(corrupt)], ["could not load", "broken.gguf", "corrupt",
                                             "re-download"]),
    ]
    for i, (extra, needles) in enumerate(cases):
        out = tmp_path / f"out{i}"
        engine = start_engine(corpus, out, *extra, preexec_fn=limit_memory)
        stdout, stderr = finish(engine, 600)
        assert engine.returncode == 1, stderr[-3000:]
        assert stdout == "" and stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
        for needle in needles + [str(out / "logs" / "llama-server.log")]:
            assert needle in stderr, (needle, stderr)
