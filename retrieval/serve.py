"""HTTP search API over a persisted CorpusIndex.

    python -m retrieval.serve --index DIR [--host 127.0.0.1] [--port 8765] [--embedder PATH]

Every error, including aiohttp's own (413, 404, 405), is answered as JSON {"error": ...}; bad
input never produces a 500. Under load, searches that arrive together share one embedding call
(see _SearchBatcher); bench/search_load.py measures 1,000 concurrent requests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import resource
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from retrieval.index import MANIFEST_FILE, CorpusIndex, Hit

MAX_BODY_BYTES = 64 * 1024
MAX_BATCH = 64  # queries per embedding call; bounds how long one call holds the embedder
# aiohttp's default of 128 drops SYNs when a burst of clients connects at once; each dropped SYN
# costs the client a 1 s (then 3 s, ...) retransmit. The kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG = 4096
log = logging.getLogger(__name__)


class SearchRequest(BaseModel):
    # strict: "k": "5" or "k": true is a client bug worth reporting, not coercing.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    query: str
    k: int = 5


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


@web.middleware
async def _json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # aiohttp raises these itself (unknown route, wrong method, body over client_max_size).
        message = exc.text.removeprefix(f"{exc.status}: ") if exc.text else exc.reason
        return _error(exc.status, message)
    except Exception:
        log.exception("unexpected error handling %s %s", request.method, request.path)
        return _error(500, "internal error; see the server log")


class _SearchBatcher:
    """Runs searches that wait together as one embedding call, one call at a time.

    One query at a time, 1,000 concurrent requests cost 1,000 forward passes queued behind the
    embedder's lock; batched, they cost ~1,000 / MAX_BATCH. A lone request waits for nothing:
    the worker starts as soon as a query arrives and takes whatever has queued meanwhile.
    """

    def __init__(self, index: CorpusIndex, max_batch: int = MAX_BATCH) -> None:
        self._index = index
        self._max_batch = max_batch
        self._waiting: deque[tuple[str, int, asyncio.Future[list[Hit]]]] = deque()
        self._worker: asyncio.Task[None] | None = None

    async def search(self, query: str, k: int) -> list[Hit]:
        future: asyncio.Future[list[Hit]] = asyncio.get_running_loop().create_future()
        self._waiting.append((query, k, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            batch = []
            while self._waiting and len(batch) < self._max_batch:
                item = self._waiting.popleft()
                if not item[2].done():  # skip requests whose handler was cancelled
                    batch.append(item)
            if not batch:
                continue
            queries = [query for query, _, _ in batch]
            try:
                # Embedding is CPU-bound torch work; keep it off the event loop.
                results = await asyncio.to_thread(
                    self._index.search_many, queries, max(k for _, k, _ in batch)
                )
            except Exception as exc:  # a bug, not bad input: each request answers 500
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, k, future), hits in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(hits[:k])  # best first, so the top k of the batch's max k

    async def close(self, app: web.Application) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker


def make_app(index: CorpusIndex, max_k: int = 50, max_query_chars: int = 2000) -> web.Application:
    batcher = _SearchBatcher(index)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "chunks": len(index)})

    async def search(request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return _error(415, f"Content-Type must be application/json, got {request.content_type}")
        try:
            body = await request.read()  # raises HTTPRequestEntityTooLarge past client_max_size
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"request body is larger than {MAX_BODY_BYTES} bytes")
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            return _error(400, f"body is not valid JSON: {exc}")
        if not isinstance(payload, dict):
            return _error(400, 'body must be a JSON object like {"query": "...", "k": 5}')
        try:
            req = SearchRequest.model_validate(payload)
        except ValidationError as exc:
            return _error(400, _describe(exc))
        if not req.query.strip():
            return _error(400, "query must not be empty")
        if len(req.query) > max_query_chars:
            return _error(
                400, f"query is {len(req.query)} characters; the limit is {max_query_chars}"
            )
        if not 1 <= req.k <= max_k:
            return _error(400, f"k must be between 1 and {max_k}, got {req.k}")
        hits = await batcher.search(req.query, req.k)
        return web.json_response(
            {
                "results": [
                    {
                        "score": hit.score,
                        "chunk_id": hit.chunk.id,
                        "doc_path": hit.chunk.doc_path,
                        "start": hit.chunk.start,
                        "end": hit.chunk.end,
                        "text": hit.chunk.text,
                    }
                    for hit in hits
                ]
            }
        )

    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_json_errors])
    app.router.add_get("/health", health)
    app.router.add_post("/search", search)
    app.on_cleanup.append(batcher.close)
    return app


async def _serve(app: web.Application, host: str, port: int, chunks: int) -> None:
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=LISTEN_BACKLOG)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        url = f"http://{shown_host}:{bound_port}"
        print(f"serving {chunks} chunks at {url} (POST /search, GET /health)", flush=True)
        await asyncio.Event().wait()  # until Ctrl+C / SIGTERM cancels us
    finally:
        await runner.cleanup()


def _raise_open_file_limit() -> None:
    # Every open connection is a file descriptor; a common soft limit of 1,024 would make
    # accept() fail (EMFILE) near 1,000 concurrent clients. Go up to the hard limit we may use.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m retrieval.serve", description="HTTP search API over a persisted index."
    )
    parser.add_argument("--index", required=True, type=Path, help="index folder written by a build")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, local only)"
    )
    parser.add_argument(
        "--port", default=8765, type=int, help="port (default: 8765; 0 picks a free one)"
    )
    parser.add_argument(
        "--embedder",
        default=None,
        help="sentence-transformers model folder (default: the bundled all-MiniLM-L6-v2)",
    )
    args = parser.parse_args(argv)
    _raise_open_file_limit()

    # Check the cheap thing before loading torch, so a typo fails in milliseconds.
    if not (args.index / MANIFEST_FILE).is_file():
        print(
            f"error: {args.index} is not an index folder ({MANIFEST_FILE} missing); pass the "
            "--index folder that an indexing run wrote",
            file=sys.stderr,
        )
        return 2
    from retrieval.embedder import Embedder

    try:
        index = CorpusIndex.load(args.index, Embedder(args.embedder))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(make_app(index), args.host, args.port, len(index)))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:  # port in use, address not available
        print(
            f"error: cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
            "pick another --port or --host",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
