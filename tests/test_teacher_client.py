"""The OpenAI-compatible client against a small aiohttp server that misbehaves on purpose."""

import asyncio
from contextlib import asynccontextmanager

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


async def serve(script, handler=None):
    """Start a server whose n-th request gets script[n] (a status code or a JSON body), or whose
    requests go to `handler`."""
    seen = []

    async def scripted_handler(request):
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
    app.router.add_post("/v1/chat/completions", handler or scripted_handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}", seen


@asynccontextmanager
async def scripted(script=(), handler=None, url_suffix="", **teacher_kw):
    """A misbehaving server and a client pointed at it, both closed afterwards."""
    runner, url, seen = await serve(script, handler)
    teacher = OpenAICompatTeacher(url + url_suffix, **teacher_kw)
    try:
        yield teacher, seen
    finally:
        await teacher.aclose()
        await runner.cleanup()


MSG = [ChatMessage(role="user", content="hi")]


def test_schema_is_sent_and_reply_parsed():
    async def main():
        # a base URL given with /v1 (as OpenAI clients expect) works too
        async with scripted([reply('{"question": "Why?"}')], url_suffix="/v1", slots=2,
                            llama_cpp=True) as (teacher, seen):
            value, completion = await chat_json(teacher, MSG, QA, max_tokens=40, seed=3)
        assert value.question == "Why?"
        assert (completion.prompt_tokens, completion.completion_tokens, completion.cached_tokens) == (11, 7, 5)
        body = seen[0]
        schema = body["response_format"]["json_schema"]["schema"]
        assert schema["properties"]["question"]["maxLength"] == 50
        assert body["cache_prompt"] is True and body["seed"] == 3 and body["max_tokens"] == 40

    asyncio.run(main())


def test_transient_500_is_retried_then_succeeds():
    async def main():
        async with scripted([500, 503, reply('{"question": "Ok?"}')], retries=3) as (teacher, seen):
            value, _ = await chat_json(teacher, MSG, QA)
        assert value.question == "Ok?" and len(seen) == 3

    asyncio.run(main())


def test_teacher_down_for_good_raises_unavailable():
    async def main():
        async with scripted([500], retries=2) as (teacher, seen):
            with pytest.raises(TeacherUnavailable, match="failed 3 times"):
                await teacher.chat(MSG)
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
        async with scripted([body | {"status": 500}], retries=3) as (teacher, seen):
            with pytest.raises(ReplyError, match="does not match") as info:
                await teacher.chat(MSG)
        assert info.value.reason == "server error" and len(seen) == 1

    asyncio.run(main())


def test_client_error_is_not_retried():
    async def main():
        async with scripted([400], retries=3) as (teacher, seen):
            with pytest.raises(TeacherError, match="HTTP 400") as info:
                await teacher.chat(MSG)
            assert not isinstance(info.value, TeacherUnavailable)
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
        async with scripted([body]) as (teacher, _):
            with pytest.raises(ReplyError) as info:
                await chat_json(teacher, MSG, QA)
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

        async with scripted(handler=handler, slots=3) as (teacher, _):
            await asyncio.gather(*(teacher.chat(MSG) for _ in range(12)))
        assert peak == 3

    asyncio.run(main())


def test_sampler_settings_ride_along_but_never_override_the_call():
    """models/sampling.py: llama.cpp sampler settings go into every request body; the engine's
    own per-call values (temperature, seed, max_tokens) always win."""
    async def main():
        async with scripted([reply('{"question": "Why?"}')], llama_cpp=True,
                            sampling={"min_p": 0.1, "dry_multiplier": 0.8}) as (teacher, seen):
            await chat_json(teacher, MSG, QA, max_tokens=40, temperature=0.3, seed=3)
        return seen[0]

    body = asyncio.run(main())
    assert body["min_p"] == 0.1 and body["dry_multiplier"] == 0.8
    assert body["temperature"] == 0.3 and body["seed"] == 3 and body["max_tokens"] == 40


def test_sampler_defaults_and_parsing():
    from models import TeacherSettings
    from models.sampling import SMALL_TEACHER, parse_sampling

    assert TeacherSettings().sampler() == SMALL_TEACHER  # managed llama-server
    assert TeacherSettings(backend="in-process").sampler() == SMALL_TEACHER
    assert TeacherSettings(url="http://127.0.0.1:9/v1").sampler() == {}  # maybe not llama.cpp
    assert TeacherSettings(url="http://127.0.0.1:9/v1", sampling={"min_p": 0.2}).sampler() \
        == {"min_p": 0.2}
    assert TeacherSettings(sampling={}).sampler() == {}  # --sampling off
    assert parse_sampling("min_p=0.05, dry_multiplier=0") == {"min_p": 0.05, "dry_multiplier": 0}
    assert parse_sampling("off") == {}
    for bad, says in [("min_p", "KEY=NUMBER"), ("min_p=high", "KEY=NUMBER"),
                      ("temperature=1", "set by the engine"), ("Top-K=4", "not a llama.cpp")]:
        with pytest.raises(ValueError, match=says):
            parse_sampling(bad)
    with pytest.raises(ValueError, match="set by the engine"):
        TeacherSettings(sampling={"seed": 1})
