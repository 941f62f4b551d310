"""`--parallel auto`: the knee of the measured curve, measured once with the real server."""

import asyncio
import json

import pytest

from models import calibrate


@pytest.mark.parametrize("rates, chosen", [
    ({1: 10, 2: 18, 4: 20, 8: 20.5}, 4),  # 2 slots give < 90% of the best
    ({1: 10, 2: 19, 4: 20, 8: 16}, 2),  # past the knee throughput falls: fewest near the top
    ({1: 50, 2: 40, 4: 30, 8: 20}, 1),
    ({1: 5, 2: 10, 4: 20, 8: 40, 16: 80, 32: 160, 64: 170}, 32),
])
def test_the_fewest_slots_within_ten_percent_of_the_best_are_chosen(rates, chosen):
    assert calibrate.pick(rates) == chosen


def test_auto_measures_the_real_server_once_then_reads_the_cache(server_binary, teacher_gguf,
                                                                 tmp_path, monkeypatch):
    cache, said = tmp_path / "parallel-auto.json", []
    chosen = asyncio.run(calibrate.choose_parallel(server_binary, teacher_gguf, 0, cache,
                                                   said.append))
    assert chosen in calibrate.CPU_CANDIDATES
    entry = json.loads(cache.read_text())[calibrate.cache_key(server_binary, teacher_gguf, 0)]
    rates = {int(n): r for n, r in entry["tokens_per_s"].items()}
    assert set(rates) == set(calibrate.CPU_CANDIDATES) and all(r > 0 for r in rates.values())
    assert entry["parallel"] == chosen == calibrate.pick(rates)
    assert f"-> {chosen} slots" in said[-1]

    async def no_server(*args):
        raise AssertionError("measured again")

    monkeypatch.setattr(calibrate, "measure", no_server)
    assert asyncio.run(calibrate.choose_parallel(server_binary, teacher_gguf, 0, cache,
                                                 said.append)) == chosen
    # another offload setting is another measurement
    with pytest.raises(AssertionError, match="measured again"):
        asyncio.run(calibrate.choose_parallel(server_binary, teacher_gguf, 99, cache,
                                              said.append))


def test_auto_against_a_url_asks_a_llama_cpp_server_for_its_slots():
    from aiohttp import web

    from models.factory import remote_slots

    async def props(request):
        return web.json_response({"total_slots": 6, "default_generation_settings": {}})

    async def main():
        app = web.Application()
        app.router.add_get("/props", props)
        other = web.Application()  # e.g. vLLM: no /props
        results, said = [], []
        for application in (app, other):
            runner = web.AppRunner(application)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]
            try:
                results.append(await remote_slots(f"http://127.0.0.1:{port}", None, said.append))
            finally:
                await runner.cleanup()
        return results, said

    results, said = asyncio.run(main())
    assert results == [6, 4]
    assert "has 6 slots" in said[0] and "does not report its slots" in said[1]


def test_open_teacher_with_auto_starts_the_server_with_the_chosen_slots(
        server_binary, teacher_gguf, tmp_path, monkeypatch):
    import urllib.request

    from models import server_build
    from models.factory import TeacherSettings, open_teacher

    # an earlier measurement on this machine said 3 (not a power of two: it came from here)
    (tmp_path / "parallel-auto.json").write_text(json.dumps(
        {calibrate.cache_key(server_binary, teacher_gguf, 0): {"parallel": 3}}))
    monkeypatch.setattr(server_build, "cache_root", lambda: tmp_path)
    monkeypatch.setattr(server_build, "ensure_binary", lambda *args: server_binary)

    async def main():
        settings = TeacherSettings(model_path=teacher_gguf, parallel="auto", ctx=512)
        async with open_teacher(settings, lambda message: None) as teacher:
            url = teacher.base_url
            props = await asyncio.to_thread(
                lambda: json.load(urllib.request.urlopen(f"{url}/props", timeout=10)))
            return teacher.slots, props["total_slots"]

    assert asyncio.run(main()) == (3, 3)
