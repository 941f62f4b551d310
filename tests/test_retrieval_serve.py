from __future__ import annotations

import asyncio
import json
import selectors
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from retrieval.index import CorpusIndex
from retrieval.serve import MAX_BATCH, make_app
from tests.test_retrieval_support import shared_embedder, write_topic_corpus

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve")
    corpus = write_topic_corpus(root / "corpus")
    CorpusIndex.build_or_load(corpus, root / "idx", shared_embedder())
    return root / "idx"


@pytest.fixture(scope="module")
def index(index_dir: Path) -> CorpusIndex:
    return CorpusIndex.load(index_dir, shared_embedder())


Scenario = Callable[[aiohttp.ClientSession, str], Awaitable[Any]]


def run_against_server(index: CorpusIndex, scenario: Scenario, connections: int = 100) -> Any:
    """Serve the app on a real local socket and run `scenario(session, base_url)` against it.

    `connections` caps the client's open connections (aiohttp's default is 100).
    """

    async def main() -> Any:
        runner = web.AppRunner(make_app(index))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        try:
            connector = aiohttp.TCPConnector(limit=connections)
            async with aiohttp.ClientSession(connector=connector) as session:
                return await scenario(session, f"http://{host}:{port}")
        finally:
            await runner.cleanup()

    return asyncio.run(main())


def test_health_and_good_search(index: CorpusIndex) -> None:
    async def scenario(session: aiohttp.ClientSession, base: str) -> Any:
        async with session.get(f"{base}/health") as r:
            health = (r.status, await r.json())
        async with session.post(f"{base}/search", json={"query": "feeding a sourdough starter", "k": 2}) as r:
            return health, r.status, await r.json()

    health, status, body = run_against_server(index, scenario)
    assert health == (200, {"status": "ok", "chunks": len(index)})
    assert status == 200
    results = body["results"]
    assert len(results) == 2
    assert set(results[0]) == {"score", "chunk_id", "doc_path", "start", "end", "text"}
    assert results[0]["doc_path"] == "baking.md"
    assert results[0]["score"] >= results[1]["score"]
    chunk = index.get(results[0]["chunk_id"])
    assert (chunk.start, chunk.end, chunk.text) == (results[0]["start"], results[0]["end"], results[0]["text"])


def test_k_defaults_to_five_and_is_limited_by_corpus(index: CorpusIndex) -> None:
    async def scenario(session: aiohttp.ClientSession, base: str) -> Any:
        async with session.post(f"{base}/search", json={"query": "volcano"}) as r:
            return r.status, await r.json()

    status, body = run_against_server(index, scenario)
    assert status == 200 and len(body["results"]) == 5
    assert body["results"][0]["doc_path"] == "volcanoes.txt"


JSON = {"Content-Type": "application/json"}
BAD_REQUESTS = {
    "invalid json": (400, {"data": b'{"query": "x",', "headers": JSON}),
    "invalid utf-8": (400, {"data": b'{"query": "\xff"}', "headers": JSON}),
    "body is a list": (400, {"json": ["query", "x"]}),
    "body is a string": (400, {"json": "x"}),
    "missing query": (400, {"json": {"k": 3}}),
    "empty query": (400, {"json": {"query": "   \n"}}),
    "query too long": (400, {"json": {"query": "a" * 2001}}),
    "k zero": (400, {"json": {"query": "x", "k": 0}}),
    "k above max": (400, {"json": {"query": "x", "k": 51}}),
    "query not a string": (400, {"json": {"query": 5}}),
    "k as string": (400, {"json": {"query": "x", "k": "5"}}),
    "k as bool": (400, {"json": {"query": "x", "k": True}}),
    "k as float": (400, {"json": {"query": "x", "k": 2.5}}),
    "unknown field": (400, {"json": {"query": "x", "filter": "y"}}),
    "text/plain": (415, {"data": '{"query": "x"}', "headers": {"Content-Type": "text/plain"}}),
    "no content type": (415, {"data": b'{"query": "x"}'}),
    "oversized body": (413, {"json": {"query": "x" * (70 * 1024)}}),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_search_requests_get_json_4xx(index: CorpusIndex, case: str) -> None:
    expected_status, request_kwargs = BAD_REQUESTS[case]

    async def scenario(session: aiohttp.ClientSession, base: str) -> Any:
        async with session.post(f"{base}/search", **request_kwargs) as r:
            return r.status, r.content_type, await r.text()

    status, content_type, text = run_against_server(index, scenario)
    assert status == expected_status, text
    assert content_type == "application/json"
    body = json.loads(text)
    assert isinstance(body["error"], str) and body["error"]


def test_unknown_route_and_wrong_method_are_json(index: CorpusIndex) -> None:
    async def scenario(session: aiohttp.ClientSession, base: str) -> Any:
        async with session.get(f"{base}/nope") as r404, session.get(f"{base}/search") as r405:
            return (r404.status, await r404.json()), (r405.status, await r405.json())

    (s404, b404), (s405, b405) = run_against_server(index, scenario)
    assert s404 == 404 and "error" in b404
    assert s405 == 405 and "error" in b405


# Queries whose best chunk is unambiguous in write_topic_corpus, so a batched answer that went
# to the wrong request would show.
TOPIC_QUERIES = {
    "feeding a sourdough starter": "baking.md",
    "explosive eruption of magma and ash": "volcanoes.txt",
    "Sicilian Defence chess opening": "chess/openings.md",
    "asyncio gather coroutines": "code/asyncio_notes.py",
    "honeybee waggle dance": "bees.html",
    "spring and neap tides and the moon": "tides.txt",
}


def test_300_concurrent_good_and_bad_requests(index: CorpusIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    # Count the embedding calls (passing through to the real search) to see the batching.
    batch_sizes: list[int] = []
    real_search_many = index.search_many

    def counting_search_many(queries: list[str], k: int = 5) -> list[Any]:
        batch_sizes.append(len(queries))
        return real_search_many(queries, k)

    monkeypatch.setattr(index, "search_many", counting_search_many)
    topics, bad_cases = list(TOPIC_QUERIES), list(BAD_REQUESTS)
    requests: list[tuple[str, int, dict[str, Any]]] = []  # (expected doc or bad case, k or status, kwargs)
    for i in range(300):
        if i % 3 == 2:
            case = bad_cases[i // 3 % len(bad_cases)]
            status, kwargs = BAD_REQUESTS[case]
            requests.append((case, status, kwargs))
        else:
            query = topics[i % len(topics)]
            k = 1 + i % 6
            requests.append((TOPIC_QUERIES[query], k, {"json": {"query": query, "k": k}}))

    async def scenario(session: aiohttp.ClientSession, base: str) -> Any:
        async def one(kwargs: dict[str, Any]) -> tuple[int, str, str]:
            async with session.post(f"{base}/search", **kwargs) as r:
                return r.status, r.content_type, await r.text()

        answers = await asyncio.gather(*(one(kwargs) for _, _, kwargs in requests))
        async with session.get(f"{base}/health") as r:
            return answers, r.status, await r.json()

    answers, health_status, health = run_against_server(index, scenario, connections=0)
    good = 0
    for (expected, want, _), (status, content_type, text) in zip(requests, answers, strict=True):
        assert content_type == "application/json", (expected, status, text)
        body = json.loads(text)
        if expected in BAD_REQUESTS:
            assert status == want, (expected, text)
            assert isinstance(body["error"], str) and body["error"]
        else:
            good += 1
            assert status == 200, text
            assert len(body["results"]) == want
            assert body["results"][0]["doc_path"] == expected  # its own answer, not a neighbour's
    assert good == 200
    assert (health_status, health) == (200, {"status": "ok", "chunks": len(index)})
    # Every good query was embedded exactly once, and concurrent ones shared calls.
    assert sum(batch_sizes) == good
    assert len(batch_sizes) < good
    assert max(batch_sizes) <= MAX_BATCH


def test_a_failing_search_answers_500_json_and_the_next_one_works(
    index: CorpusIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection: the first embedding call raises, as a torch error would.
    real_search_many = index.search_many
    calls = []

    def failing_once(queries: list[str], k: int = 5) -> list[Any]:
        calls.append(queries)
        if len(calls) == 1:
            raise RuntimeError("simulated embedder failure")
        return real_search_many(queries, k)

    monkeypatch.setattr(index, "search_many", failing_once)

    async def scenario(session: aiohttp.ClientSession, base: str) -> Any:
        answers = []
        for _ in range(2):
            async with session.post(f"{base}/search", json={"query": "volcano", "k": 1}) as r:
                answers.append((r.status, await r.json()))
        return answers

    (status1, body1), (status2, body2) = run_against_server(index, scenario)
    assert status1 == 500 and "internal error" in body1["error"]
    assert status2 == 200 and body2["results"][0]["doc_path"] == "volcanoes.txt"


def test_cli_rejects_a_bad_index_folder(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "retrieval.serve", "--index", str(tmp_path / "missing")],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "missing" in lines[0]


def test_cli_serves_and_prints_its_url(index_dir: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "retrieval.serve", "--index", str(index_dir), "--port", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    ) as proc:  # the context manager closes the pipe (else: ResourceWarning -> error)
        try:
            line = _read_line(proc, timeout=120)
            url = line.split(" at ", 1)[1].split()[0]
            assert url.startswith("http://127.0.0.1:")
            with urllib.request.urlopen(f"{url}/health", timeout=10) as response:
                assert json.loads(response.read()) == {"status": "ok", "chunks": 6}
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sel.select(timeout=1):
                return proc.stdout.readline()
            if proc.poll() is not None:
                break
    pytest.fail(f"server printed no URL line (exit code {proc.poll()})")
