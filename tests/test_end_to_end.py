"""`python -m engine --skill rag` as a user runs it: real llama-server with the embedded GGUF, real
embeddings and FAISS, real files; killed with SIGKILL and resumed."""

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.gate import DedupGate

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def engine_cmd(corpus: Path, out: Path, num: int) -> list[str]:
    return [sys.executable, "-m", "engine", "--skill", "rag", "--input", str(corpus), "--out",
            str(out), "--num", str(num), "--parallel", "4", "--max-tokens", "256", "--quiet",
            # the 135M teacher's records mostly fail validation (~5% pass): allow many attempts
            "--max-attempts", str(num * 150)]


def records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def server_pids() -> set[int]:
    found = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
                state = (proc / "stat").read_text().split()[2]
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"llama-server") and state != "Z":
                found.add(int(proc.name))
    return found


def test_generates_valid_rag_records_with_the_real_teacher(corpus, tmp_path, server_binary,
                                                           embedder):
    out = tmp_path / "out"
    done = subprocess.run(engine_cmd(corpus, out, 2), cwd=REPO, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    data = records(out / "data.jsonl")
    assert len(data) == 2
    for rec in data:
        assert rec["skill"] == "rag" and rec["metadata"]["split"] == "rag"
        system, user, assistant = rec["messages"]
        assert (system["role"], user["role"], assistant["role"]) == ("system", "user", "assistant")
        assert rec["metadata"]["instruction"] in user["content"]
        assert assistant["content"].strip()
        assert rec["metadata"]["teacher_model"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
        if rec["metadata"]["answerable"]:  # the validator's guarantee: cited passages exist
            n_docs = user["content"].count("\nDocument [") + user["content"].startswith("Document [")
            assert rec["metadata"]["citations"]
            assert all(1 <= c <= len(rec["metadata"]["documents"]) for c in rec["metadata"]["citations"])
            assert n_docs == len(rec["metadata"]["documents"])
    for rej in records(out / "rejected.jsonl"):
        assert rej["stage"] and rej["reason"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accepted_total"] == 2 and summary["this_run"]["completion_tokens"] > 0

    # plant duplicates of what was accepted: the gate restored from this data.jsonl rejects both
    gate = DedupGate(embedder, 0.9, out / "state" / "near_dup.faiss")
    asyncio.run(gate.restore([r["metadata"]["instruction"] for r in data]))
    accepted = data[0]["metadata"]["instruction"]
    assert asyncio.run(gate.check(accepted))[0] == "exact duplicate"
    assert asyncio.run(gate.check("  " + accepted.upper() + " "))[0] == "exact duplicate"
    reason, _, similarity = asyncio.run(gate.check(accepted.rstrip("?") + ", please?"))
    assert reason is not None and similarity >= 0.9


def test_sigterm_stops_gracefully_with_a_resume_hint(corpus, tmp_path, server_binary):
    out = tmp_path / "out"
    before = server_pids()
    with subprocess.Popen(engine_cmd(corpus, out, 50), cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True) as proc:
        deadline = time.monotonic() + 600
        while not (server_pids() - before) and proc.poll() is None:
            assert time.monotonic() < deadline, "server never started"
            time.sleep(0.2)
        while not records(out / "rejected.jsonl") + records(out / "data.jsonl"):
            assert time.monotonic() < deadline and proc.poll() is None, "nothing written in time"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert "resume with the same command" in err
    assert not (server_pids() - before)  # the server was stopped, not orphaned
    for rec in records(out / "data.jsonl"):  # whatever was written is whole
        assert rec["messages"]


def test_sigkill_then_resume_loses_and_duplicates_nothing(corpus, tmp_path, server_binary):
    out = tmp_path / "out"
    before = server_pids()
    with subprocess.Popen(engine_cmd(corpus, out, 3), cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL) as proc:
        deadline = time.monotonic() + 1200
        while len(records(out / "data.jsonl")) < 1 and proc.poll() is None:
            assert time.monotonic() < deadline, "no record written in time"
            time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    kept = (out / "data.jsonl").read_text()
    kept = kept[: kept.rfind("\n") + 1]  # what was fully written when the kill landed
    # the server follows its parent (PR_SET_PDEATHSIG): no orphan keeps running
    deadline = time.monotonic() + 15
    while server_pids() - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not (server_pids() - before)

    done = subprocess.run(engine_cmd(corpus, out, 3), cwd=REPO, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "data.jsonl").read_text().startswith(kept)
    ids = [r["id"] for r in records(out / "data.jsonl")]
    assert len(ids) == 3 == len(set(ids))
    rejected_ids = [r["id"] for r in records(out / "rejected.jsonl")]
    assert not set(ids) & set(rejected_ids)
    state = json.loads((out / "state" / "near_dup.faiss.json").read_text())
    assert state["ntotal"] == 3
