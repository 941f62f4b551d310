"""HTTP search API over a persisted CorpusIndex.

    python -m retrieval.serve --index DIR [--host 127.0.0.1] [--port 8765] [--embedder PATH]

Every error, including aiohttp's own (413, 404, 405), is answered as JSON {"error": ...}; bad
input never produces a 500.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from retrieval.index import MANIFEST_FILE, CorpusIndex

MAX_BODY_BYTES = 64 * 1024
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


def make_app(index: CorpusIndex, max_k: int = 50, max_query_chars: int = 2000) -> web.Application:
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
        hits = await index.asearch(req.query, req.k)
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
    return app


async def _serve(app: web.Application, host: str, port: int, chunks: int) -> None:
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        url = f"http://{shown_host}:{bound_port}"
        print(f"serving {chunks} chunks at {url} (POST /search, GET /health)", flush=True)
        await asyncio.Event().wait()  # until Ctrl+C / SIGTERM cancels us
    finally:
        await runner.cleanup()


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
