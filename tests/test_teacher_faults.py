"""Teacher faults, end to end: `python -m engine --teacher-url` against a small aiohttp server that
misbehaves on purpose (HTTP 500s, bodies that are not JSON, empty choices, text that violates the
schema, replies that never come, a teacher that is down for good). Bounded retries, a reason for
every lost item, a clear last line and a resumable state — never a hang."""

import asyncio
import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from aiohttp import web

from models import ChatMessage
from tests.conftest import write_corpus
from tests.fakes import rag_replies
from tests.test_pipeline import on_topic_questions

pytestmark = pytest.mark.slow  # each run loads the real embedder in a fresh process

REPO = Path(__file__).resolve().parents[1]


class FaultServer:
    """An OpenAI-compatible endpoint in a background thread. Good replies come from the scripted
    RAG teacher; `fault(n)` picks what the n-th request gets instead (None: a good reply)."""

    def __init__(self, fault=lambda n: None) -> None:
        self.fault = fault
        self.requests = 0
        self.faults: list[str] = []
        self._good = rag_replies(on_topic_questions())
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests += 1
        kind = self.fault(self.requests)
        if kind:
            self.faults.append(kind)
        if kind == "http 500":
            return web.Response(status=500, text="internal error")
        if kind == "http 503":
            return web.Response(status=503, text="loading model")
        if kind == "not json":
            return web.Response(text="<html>proxy error</html>", content_type="text/html")
        if kind == "hang":  # never answers while the test runs; released on close
            await self._closing.wait()
            return web.Response(status=503)
        if kind == "empty choices":
            return web.json_response({"choices": [], "usage": {}})
        messages = [ChatMessage(**m) for m in body["messages"]]
        schema = body.get("response_format", {}).get("json_schema", {}).get("schema")
        text = self._good(messages, schema)
        if kind == "schema violation":
            text = json.dumps({"unexpected": True})
        return web.json_response({
            "choices": [{"message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10}, "model": "fault"})

    def __enter__(self) -> "FaultServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        async def stop():
            self._closing.set()
            await self._runner.cleanup()
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def engine(corpus: Path, out: Path, url: str, num: int = 4, timeout: float = 20.0):
    cmd = [sys.executable, "-m", "engine", "--skill", "rag", "--input", str(corpus), "--out",
           str(out), "--num", str(num), "--teacher-url", url, "--teacher-name", "fault-teacher",
           "--timeout", str(timeout),
           "--parallel", "2", "--refine-rounds", "1", "--quiet"]
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    return done, time.monotonic() - started


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus")


def test_flaky_teacher_every_fault_kind_is_retried_or_explained_and_the_run_completes(
        corpus, tmp_path):
    kinds = itertools.cycle(["http 500", "not json", "empty choices", "schema violation",
                             "http 503", "hang"])
    with FaultServer(lambda n: next(kinds) if n % 3 == 0 else None) as server:
        done, _ = engine(corpus, tmp_path / "out", server.url, timeout=2.0)
    assert done.returncode == 0, done.stderr[-2000:]
    assert set(server.faults) >= {"http 500", "not json", "empty choices", "schema violation",
                                  "http 503", "hang"}
    data, rejected = lines(tmp_path / "out" / "data.jsonl"), lines(tmp_path / "out" / "rejected.jsonl")
    assert len(data) == 4
    assert all(r["stage"] and r["reason"] for r in rejected)
    # transport faults (500, 503, a body that is not JSON, no reply in time) are retried by the
    # client; unusable replies (no choices, wrong shape) are asked again with a new seed; both
    # are counted in the summary (at most one each per fault: an abandoned last call is not)
    this_run = json.loads((tmp_path / "out" / "summary.json").read_text())["this_run"]
    transport = sum(f in {"http 500", "http 503", "not json", "hang"} for f in server.faults)
    unusable = sum(f in {"empty choices", "schema violation"} for f in server.faults)
    assert 0 < this_run["teacher_retries"] <= transport
    assert 0 < this_run["unusable_replies"] <= unusable


@pytest.mark.parametrize("kind", ["http 500", "hang"])
def test_a_teacher_down_for_good_ends_the_run_with_one_clear_line_and_resumes_later(
        corpus, tmp_path, kind):
    out = tmp_path / "out"
    with FaultServer() as healthy:
        first, _ = engine(corpus, out, healthy.url, num=2)
    assert first.returncode == 0, first.stderr[-2000:]
    written = (out / "data.jsonl").read_bytes()

    with FaultServer(lambda n: kind) as down:  # same teacher name, new port: a resume, not a mix
        failed, took = engine(corpus, out, down.url, num=5, timeout=1.0)
    assert failed.returncode not in (0, None)
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and down.url in last and "re-run" in last, failed.stderr
    assert took < 120  # bounded retries, not a hang (generous: includes the embedder load)
    assert (out / "data.jsonl").read_bytes().startswith(written)  # nothing written was lost

    with FaultServer() as back:
        resumed, _ = engine(corpus, out, back.url, num=5)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    data = lines(out / "data.jsonl")
    assert len(data) == 5 == len({r["id"] for r in data})
    assert (out / "data.jsonl").read_bytes().startswith(written)
