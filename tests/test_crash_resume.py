"""Kill-and-resume harness: a real `python -m engine --skill rag` run (real llama-server with the
embedded GGUF, real embeddings, FAISS and files) is SIGKILLed at least 20 times — at random
moments, and through failpoints exactly inside a data.jsonl write and between the steps of the
dedup-index save — and restarted with the same command each time. Nothing acknowledged may be
lost, nothing duplicated, no line torn, the dedup index must agree with data.jsonl, and the run
must end with exactly --num records."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dedup import NearDupIndex
from tests.conftest import write_corpus

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
KILLS = 20
NUM = 3
# kill number -> failpoint armed for that restart (engine/failpoints.py); the rest are random
FAILPOINTS = {2: "data.jsonl.write:1", 5: "index.tmp_written:1", 8: "index.replaced:1",
              11: "data.jsonl.write:2", 14: "rejected.jsonl.write:2"}


def engine_cmd(corpus: Path, out: Path, url: str, name: str, num: int = NUM) -> list[str]:
    return [sys.executable, "-m", "engine", "--skill", "rag", "--input", str(corpus),
            "--out", str(out), "--num", str(num), "--teacher-url", url, "--teacher-name", name,
            "--parallel", "2", "--max-tokens", "256", "--refine-rounds", "0", "--quiet",
            "--max-attempts", "5000"]


def whole_lines(path: Path) -> tuple[str, bool]:
    """The file's complete lines, and whether a torn (newline-less) tail followed them."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    whole = text[: text.rfind("\n") + 1]
    return whole, whole != text


def parse(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]  # raises on any damaged line


@pytest.mark.timeout(2400)  # 20+ restarts of a real run: ~10 min on a quiet 2-core machine
def test_twenty_kills_lose_nothing_duplicate_nothing_and_finish_at_num(live_server, embedder,
                                                                       tmp_path):
    url, name = live_server
    corpus = write_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    num = NUM  # raised whenever a run finishes before all kills landed (a fast machine)
    rng = random.Random(20261121)
    kept = {"data.jsonl": "", "rejected.jsonl": ""}  # what was fully written at the last kill
    pending = dict(FAILPOINTS)
    fired, torn, kills, finished = set(), 0, 0, 0
    while kills < KILLS:
        cmd = engine_cmd(corpus, out, url, name, num)
        env = dict(os.environ)
        armed = pending.get(kills)
        if armed:
            env["AGENTINSTRUCT_CRASH_AT"] = armed
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:  # an armed run dies at its failpoint; the others at a random moment
            _, err = proc.communicate(timeout=240 if armed else rng.uniform(2.0, 12.0))
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if proc.returncode == 0:
            # finished between kills: exactly num records; then ask for more (num is not part
            # of run.json's key) so the remaining kills still land mid-run, whatever the speed
            assert len(parse(whole_lines(out / "data.jsonl")[0])) == num
            finished += 1
            assert finished <= 10, "the run keeps finishing before the kill: raise NUM"
            num += NUM
        else:
            assert proc.returncode == -9, err[-2000:]
            kills += 1
            if armed and f"failpoint {armed.rsplit(':', 1)[0]} fired" in err:
                fired.add(armed)
                pending.pop(kills - 1)
            elif armed:  # not reached this time (no save or write yet): arm it next restart
                pending[kills] = pending.pop(kills - 1)
        for name_ in kept:
            whole, was_torn = whole_lines(out / name_)
            torn += was_torn
            # append-only: what a kill found fully written is still there, byte for byte
            assert whole.startswith(kept[name_]), f"{name_} lost or rewrote written lines"
            parse(whole)
            kept[name_] = whole

    final = subprocess.run(engine_cmd(corpus, out, url, name, num), cwd=REPO,
                           capture_output=True, text=True, timeout=1800)
    assert final.returncode == 0, final.stderr[-2000:]
    assert fired == set(FAILPOINTS.values()), fired
    assert torn >= 1  # the write failpoints left torn tails, and resume cut them

    data_text = (out / "data.jsonl").read_text(encoding="utf-8")
    assert data_text.endswith("\n") and data_text.startswith(kept["data.jsonl"])
    data = parse(data_text)
    rejected = parse((out / "rejected.jsonl").read_text(encoding="utf-8"))
    ids = [r["id"] for r in data]
    instructions = [r["metadata"]["instruction"] for r in data]
    assert len(data) == num and len(set(ids)) == num and len(set(instructions)) == num
    assert not set(ids) & {r["id"] for r in rejected}  # an item ends in one file only
    assert len({r["id"] for r in rejected}) == len(rejected)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accepted_total"] == num and summary["complete"]

    # the persisted dedup index holds exactly data.jsonl's instructions, in order
    index = NearDupIndex.load(out / "state" / "near_dup.faiss", 0.9)
    assert index.ntotal == num
    expected = embedder.encode(instructions)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    cosines = np.sum(index.vectors() * expected, axis=1)
    assert np.all(cosines > 0.999), cosines


def test_sigint_stops_gracefully_keeps_whole_lines_and_says_how_to_resume(live_server, tmp_path):
    url, name = live_server
    corpus = write_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    # started with SIGINT ignored, as a background job of a non-interactive shell is (and as
    # this suite's children are when it runs as one): the engine still stops on it. --num is out
    # of reach, so the run is going when the signal arrives.
    with subprocess.Popen(engine_cmd(corpus, out, url, name, num=1000), cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) as proc:
        deadline = time.monotonic() + 600
        while not (whole_lines(out / "data.jsonl")[0] + whole_lines(out / "rejected.jsonl")[0]):
            assert time.monotonic() < deadline and proc.poll() is None, "nothing written in time"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()  # or leaving the `with` waits for it forever
            pytest.fail("the engine went on after SIGINT")
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == ("interrupted: everything written is kept; resume "
                                            "with the same command")
    for name_ in ("data.jsonl", "rejected.jsonl"):
        whole, was_torn = whole_lines(out / name_)
        assert not was_torn and len(parse(whole)) == whole.count("\n")
    # the dedup index was saved on the way out and agrees with data.jsonl
    index = NearDupIndex.load(out / "state" / "near_dup.faiss", 0.9)
    assert index.ntotal == len(parse(whole_lines(out / "data.jsonl")[0]))
