"""The OpenAI-compatible client against a small aiohttp server that misbehaves on purpose."""

import asyncio
import json

import pytest
from aiohttp import web
from pydantic import BaseModel, Field

from models import ChatMessage, ReplyError, TeacherError, TeacherUnavailable, chat_json
from models.openai_client import OpenAICompatTeacher


class QA(BaseModel):
    question: str = Field(min_length=3, max_length=50)


def reply(content, finish="stop"):
    return {"choices": [{"message": {"role": "assistant", "content": content},
                         "finish_reason": finish}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7},
            "timings": {"cache_n": 5}, "model": "m"}


async def serve(script):
    """Start a server whose n-th request gets script[n] (a status code or a JSON body)."""
    seen = []

    async def handler(request):
        seen.append(await request.json())
        step = script[min(len(seen), len(script)) - 1]
        if isinstance(step, int):
            return web.Response(status=step, text="boom")
        if isinstance(step, dict) and "status" in step:
            return web.json_response({k: v for k, v in step.items() if k != "status"},
                                     status=step["status"])
        if isinstance(step, str):
            return web.Response(text=step, content_type="application/json")
        return web.json_response(step)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}", seen


MSG = [ChatMessage(role="user", content="hi")]


def test_schema_is_sent_and_reply_parsed():
    async def main():
        runner, url, seen = await serve([reply('{"question": "Why?"}')])
        teacher = OpenAICompatTeacher(url + "/v1", slots=2, llama_cpp=True)
        try:
            value, completion = await chat_json(teacher, MSG, QA, max_tokens=40, seed=3)
        finally:
            await teacher.aclose()
            await runner.cleanup()
        assert value.question == "Why?"
        assert (completion.prompt_tokens, completion.completion_tokens, completion.cached_tokens) == (11, 7, 5)
        body = seen[0]
        schema = body["response_format"]["json_schema"]["schema"]
        assert schema["properties"]["question"]["maxLength"] == 50
        assert body["cache_prompt"] is True and body["seed"] == 3 and body["max_tokens"] == 40

    asyncio.run(main())


def test_transient_500_is_retried_then_succeeds():
    async def main():
        runner, url, seen = await serve([500, 503, reply('{"question": "Ok?"}')])
        teacher = OpenAICompatTeacher(url, retries=3)
        try:
            value, _ = await chat_json(teacher, MSG, QA)
        finally:
            await teacher.aclose()
            await runner.cleanup()
        assert value.question == "Ok?" and len(seen) == 3

    asyncio.run(main())


def test_teacher_down_for_good_raises_unavailable():
    async def main():
        runner, url, seen = await serve([500])
        teacher = OpenAICompatTeacher(url, retries=2)
        try:
            with pytest.raises(TeacherUnavailable, match="failed 3 times"):
                await teacher.chat(MSG)
        finally:
            await teacher.aclose()
            await runner.cleanup()
        assert len(seen) == 3

    asyncio.run(main())


def test_unreachable_url_raises_unavailable():
    async def main():
        teacher = OpenAICompatTeacher("http://127.0.0.1:9", retries=1)
        try:
            with pytest.raises(TeacherUnavailable):
                await teacher.chat(MSG)
        finally:
            await teacher.aclose()

    asyncio.run(main())


def test_server_error_with_json_body_is_an_item_failure_not_an_outage():
    """llama.cpp answers 500 + a JSON error when it cannot parse the model's output: retrying the
    same request repeats it, so it surfaces as a ReplyError for the flow to retry with a new seed."""
    async def main():
        body = {"error": {"code": 500, "message": "The model produced output that does not match",
                          "type": "server_error"}}
        runner, url, seen = await serve([body | {"status": 500}])
        teacher = OpenAICompatTeacher(url, retries=3)
        try:
            with pytest.raises(ReplyError, match="does not match") as info:
                await teacher.chat(MSG)
        finally:
            await teacher.aclose()
            await runner.cleanup()
        assert info.value.reason == "server error" and len(seen) == 1

    asyncio.run(main())


def test_client_error_is_not_retried():
    async def main():
        runner, url, seen = await serve([400])
        teacher = OpenAICompatTeacher(url, retries=3)
        try:
            with pytest.raises(TeacherError, match="HTTP 400") as info:
                await teacher.chat(MSG)
            assert not isinstance(info.value, TeacherUnavailable)
        finally:
            await teacher.aclose()
            await runner.cleanup()
        assert len(seen) == 1

    asyncio.run(main())


@pytest.mark.parametrize("body, reason", [
    (reply('{"question": "cut', finish="length"), "truncated"),
    (reply('{"question": "x"}'), "invalid json"),          # violates minLength
    (reply("not json at all"), "invalid json"),
    (reply("   "), "empty reply"),
    ({"choices": []}, "empty reply"),
])
def test_unusable_replies_raise_reply_error_with_raw_text(body, reason):
    async def main():
        runner, url, _ = await serve([body])
        teacher = OpenAICompatTeacher(url)
        try:
            with pytest.raises(ReplyError) as info:
                await chat_json(teacher, MSG, QA)
        finally:
            await teacher.aclose()
            await runner.cleanup()
        assert info.value.reason == reason
        choices = body.get("choices")
        if choices:
            assert info.value.completion.text == choices[0]["message"]["content"]

    asyncio.run(main())


def test_concurrency_never_exceeds_slots():
    async def main():
        in_flight, peak = 0, 0

        async def handler(request):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.02)
            in_flight -= 1
            return web.json_response(reply('{"question": "Fine?"}'))

        app = web.Application()
        app.router.add_post("/v1/chat/completions", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        teacher = OpenAICompatTeacher(f"http://127.0.0.1:{port}", slots=3)
        try:
            await asyncio.gather(*(teacher.chat(MSG) for _ in range(12)))
        finally:
            await teacher.aclose()
            await runner.cleanup()
        assert peak == 3

    asyncio.run(main())
