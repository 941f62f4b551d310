"""The embedded teacher served as Q8_0 on the CPU (models/cpu_weights.py): a real conversion of
the real GGUF, made once, holding the same model; which teachers get it; and what a failed
conversion does."""

from __future__ import annotations

import asyncio
import os
import shutil

import numpy as np
import pytest

from models import cpu_weights, server_build
from models.factory import TeacherSettings, served_weights
from models.llama_server import GGUF_MAGIC, ServerStartError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(server_build, "cache_root", lambda: tmp_path / "cache")
    monkeypatch.setattr(cpu_weights, "cache_root", lambda: tmp_path / "cache")
    return tmp_path / "cache"


def test_the_embedded_gguf_is_converted_once(teacher_gguf, cache, monkeypatch):
    said: list[str] = []
    converted = cpu_weights.q8_0(teacher_gguf, said.append)
    assert converted.parent == cache / "gguf" and converted.name.endswith(".q8_0.gguf")
    assert converted.read_bytes()[:4] == GGUF_MAGIC
    # Q8_0 spends 8.5 bits a weight where Q4_1 spends 5: the file grows by about half
    assert 1.3 < converted.stat().st_size / teacher_gguf.stat().st_size < 1.7
    assert len(said) == 1 and "converting" in said[0]
    assert not list(cache.glob("gguf/*.tmp"))

    def no_second_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(cpu_weights.subprocess, "run", no_second_conversion)
    assert cpu_weights.q8_0(teacher_gguf, said.append) == converted
    assert len(said) == 1


def test_another_source_file_gets_its_own_copy(teacher_gguf, cache, tmp_path):
    copy = tmp_path / "copy.gguf"
    shutil.copy(teacher_gguf, copy)
    first = cpu_weights.converted_path(copy)
    assert first != cpu_weights.converted_path(teacher_gguf)
    stat = copy.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # rewritten since
    assert cpu_weights.converted_path(copy) != first


def test_copies_of_sources_that_are_gone_or_rewritten_are_deleted(teacher_gguf, cache, tmp_path):
    """One copy per installed source, not one per install ever made: a copy whose source was
    removed (a deleted virtualenv) or rewritten (a reinstall) goes when the next one is made."""
    gone, rewritten = tmp_path / "venv-a" / "t.gguf", tmp_path / "venv-b" / "t.gguf"
    for path in (gone, rewritten):
        path.parent.mkdir()
        shutil.copy(teacher_gguf, path)
    old = [cpu_weights.q8_0(p, lambda m: None) for p in (gone, rewritten)]
    assert all(c.is_file() for c in old) and len(set(old)) == 2
    legacy = cache / "gguf" / "t.0123456789ab.q8_0.gguf"  # made before copies had records
    legacy.write_bytes(GGUF_MAGIC)
    shutil.rmtree(gone.parent)
    stat = rewritten.stat()
    os.utime(rewritten, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))

    kept = cpu_weights.q8_0(teacher_gguf, lambda m: None)
    assert kept.is_file() and legacy.is_file()
    assert not any(c.exists() for c in old)
    assert sorted(p.name for p in (cache / "gguf").glob("*.gguf*")) == sorted(
        [kept.name, kept.name + ".source", legacy.name])
    # the rewritten source's next run converts it again and keeps the teacher's copy
    again = cpu_weights.q8_0(rewritten, lambda m: None)
    assert again.is_file() and kept.is_file() and again != old[1]


def test_a_failed_conversion_serves_the_source(cache, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(GGUF_MAGIC + b"\0" * 4096)  # passes the magic check, holds no model
    said: list[str] = []
    assert cpu_weights.q8_0(broken, said.append) == broken
    assert "could not convert broken.gguf" in said[-1] and "as it is" in said[-1]
    assert not list((cache / "gguf").glob("*.gguf*"))  # nothing half-written left behind


@pytest.mark.parametrize("settings, converted", [
    (TeacherSettings(), True),                                   # the embedded teacher on a CPU
    (TeacherSettings(gpu_layers=-1), False),                     # a GPU computes Q4_1 fine
    (TeacherSettings(weights="as-is"), False),
    (TeacherSettings(model_path="user.gguf"), False),            # not measured: left alone
    (TeacherSettings(model_path="user.gguf", weights="q8_0"), True),
])
def test_which_teachers_are_converted(settings, converted, teacher_gguf, monkeypatch):
    monkeypatch.setattr(cpu_weights, "q8_0", lambda source, say: source.with_name("q8.gguf"))
    served = served_weights(settings, teacher_gguf, lambda message: None)
    assert (served.name == "q8.gguf") is converted


def test_a_bad_file_is_named_before_any_conversion(tmp_path):
    text = tmp_path / "notes.gguf"
    text.write_text("not a model")
    with pytest.raises(ServerStartError, match="not a GGUF file"):
        served_weights(TeacherSettings(model_path=text, weights="q8_0"), text, print)


@pytest.mark.slow
def test_the_converted_weights_are_the_same_model(teacher_gguf, cache):
    """Next-token distributions of the Q4_1 file and its Q8_0 copy on a real passage: the same
    model (measured on corpus text: top-1 agreement 95%, KL 0.006, perplexity 35.76 vs 35.74;
    a requantization to Q4_0 gives 68% and 42.6, so these bounds tell the two apart)."""
    from llama_cpp import Llama

    text = ("The apt-get command installs packages from the repositories listed in "
            "/etc/apt/sources.list. Before an upgrade, apt-get update refreshes the package "
            "lists, and apt-get dist-upgrade resolves changed dependencies, removing packages "
            "if it must. The dpkg tool underneath unpacks each archive and runs its scripts.")

    def distributions(path):
        llm = Llama(str(path), n_ctx=512, logits_all=True, verbose=False, n_threads=2)
        tokens = llm.tokenize(text.encode())
        llm.eval(tokens)
        logits = np.array(llm.scores[:len(tokens)], dtype=np.float64)
        probs = np.exp(logits - logits.max(1, keepdims=True))
        return probs / probs.sum(1, keepdims=True), tokens

    p, tokens = distributions(teacher_gguf)
    q, _ = distributions(cpu_weights.q8_0(teacher_gguf, lambda message: None))
    agree = (p.argmax(1) == q.argmax(1)).mean()
    kl = (p * (np.log(p + 1e-12) - np.log(q + 1e-12))).sum(1).mean()
    following = np.array(tokens[1:])
    nll = [-np.log(d[np.arange(len(following)), following]).mean() for d in (p[:-1], q[:-1])]
    assert agree >= 0.85, agree
    assert kl < 0.05, kl
    assert abs(np.exp(nll[1]) / np.exp(nll[0]) - 1) < 0.05, nll


@pytest.mark.slow
def test_the_managed_server_serves_the_copy_under_the_source_name(server_binary, cache,
                                                                  monkeypatch, tmp_path):
    """The factory's default teacher: llama-server loads the Q8_0 copy (its /props says so),
    and the name records and the run's key carry is still the embedded file's."""
    import json
    import urllib.request

    from models.factory import default_teacher_gguf, open_teacher

    monkeypatch.setattr(server_build, "ensure_binary", lambda *args: server_binary)
    said: list[str] = []

    async def main():
        settings = TeacherSettings(backend="server", parallel=1, ctx=1024)
        async with open_teacher(settings, said.append) as teacher:
            url = teacher.base_url
            props = await asyncio.to_thread(
                lambda: json.load(urllib.request.urlopen(f"{url}/props", timeout=10)))
            return teacher.model_name, props["model_path"]

    name, served = asyncio.run(main())
    assert name == default_teacher_gguf().name
    assert served.endswith(".q8_0.gguf") and served.startswith(str(cache))
    assert any("converting" in m for m in said)
