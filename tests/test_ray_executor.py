"""`--executor ray` (engine/distributed). Without Ray: sharding and quota split, the job-wide
dedup gate's decisions, merging the parts and exporting them, flags and guards. With a real local
Ray cluster and 2 worker actors: two workers producing near-identical records get one accepted
(scripted teacher, so the collision is certain); a worker killed with `ray.kill` mid-run has its
shard re-run on a new worker that skips what the dead one wrote (embedded teacher behind one
shared llama-server); and `python -m engine --executor ray`, each worker owning a managed
llama-server, merges into the single-machine layout."""

import asyncio
import itertools
import json
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from dedup import NearDupIndex
from engine.cli import main
from engine.config import RunConfig
from engine.distributed import parts as layout
from engine.distributed import run_ray
from engine.distributed.gate import GlobalGate
from engine.distributed.shards import deal, plan_shards
from engine.export import collect
from engine.progress import Progress
from engine.run import RunError, run
from tests.conftest import TOPICS, write_corpus
from tests.fakes import ScriptedTeacher, rag_replies
from tests.test_pipeline import DISTINCT

REPO = Path(__file__).resolve().parents[1]
TALL = "How tall is Mount Etna in Sicily?"
HEIGHT = "What is the height of Mount Etna in Sicily?"  # cosine 0.98 with TALL (all-MiniLM)


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def whole_lines(path: Path) -> list[dict]:
    """The complete lines of a file another process may be appending to."""
    text = path.read_text() if path.exists() else ""
    return [json.loads(x) for x in text[: text.rfind("\n") + 1].splitlines()]


def ids_of(out: Path, shard: int) -> list[str]:
    part = layout.part_dir(out, shard)
    return [r["id"] for name in layout.OUTPUTS for r in whole_lines(part / name)]


# -- sharding and quotas (no Ray) -----------------------------------------------------------------

def test_deal_is_balanced_covers_every_chunk_and_ignores_input_order():
    ids = [f"chunk{i}" for i in range(11)]
    dealt = deal(ids, 3)
    assert sorted(len(s) for s in dealt) == [3, 4, 4]
    assert sorted(c for s in dealt for c in s) == sorted(ids)
    assert deal(list(reversed(ids)), 3) == dealt  # fixed by the ids, not by their order
    assert deal(ids[:1], 2) == [ids[:1], []] or deal(ids[:1], 2) == [[], ids[:1]]


def test_quota_and_attempts_split_exactly_over_the_shards_holding_seeds():
    seeds = {"rag": [f"r{i}" for i in range(5)], "coding": ["k1"]}
    plans = plan_shards(seeds, {"rag": 7, "coding": 3}, 3, None)
    assert sum(p.quota["rag"] for p in plans) == 7
    assert all(p.quota["rag"] >= 2 for p in plans)
    holder = [p for p in plans if p.seeds["coding"]]
    assert len(holder) == 1 and holder[0].quota["coding"] == 3
    assert all(p.quota["coding"] == 0 for p in plans if not p.seeds["coding"])
    assert [p.max_attempts for p in plans] == [50 * p.num for p in plans]
    capped = plan_shards(seeds, {"rag": 7, "coding": 3}, 3, max_attempts=20)
    assert sum(p.max_attempts for p in capped) == 20
    assert max(capped, key=lambda p: p.num).max_attempts == max(p.max_attempts for p in capped)
    # the same inputs always give the same plan: a resumed job finds its shards unchanged
    assert plan_shards(seeds, {"rag": 7, "coding": 3}, 3, None) == plans


# -- the job-wide gate (no Ray: the class the actor runs) -----------------------------------------

def test_global_gate_admits_a_near_duplicate_once_across_shards(embedder, tmp_path):
    texts = [TALL, HEIGHT, "How many workers live in a honey bee colony?",
             "Who built the engine Locomotion No. 1?"]
    tall, height, bees, engine = embedder.encode(texts)
    state = tmp_path / "near_dup.faiss"
    gate = GlobalGate(embedder.dim, 0.9, state, 0.8, 0, [])
    assert gate.admit(0, TALL, tall)[0] is None  # pending for shard 0, not yet written
    reason, similarity = gate.admit(1, HEIGHT, height)
    assert reason == "near duplicate (cosine >= 0.9)" and similarity > 0.95
    assert gate.admit(1, "how tall is Mount Etna in Sicily", tall)[0] == "exact duplicate"
    gate.forget(0)  # shard 0's worker died before writing: its admission is gone
    assert gate.admit(1, HEIGHT, height)[0] is None
    gate.commit(1, HEIGHT, height)
    assert gate.committed() == 1 and gate.admit(0, TALL, tall)[0].startswith("near duplicate")
    # an admission the sink rejected afterwards (decontamination, format) is released by the
    # shard's next call, so another shard may take it
    assert gate.admit(2, texts[2], bees)[0] is None
    assert gate.admit(2, texts[3], engine, release=texts[2])[0] is None
    assert gate.admit(3, texts[2], bees)[0] is None
    # a worker killed between writing a record and its (unawaited) commit: the driver settles
    # its shard with what data.jsonl holds; what is written joins the index, the rest is dropped
    assert gate.held(2) == [texts[3]] and gate.held(3) == [texts[2]]
    assert gate.settle(2, [texts[3]]) == 1 and gate.held(2) == []
    assert gate.settle(3, []) == 0 and gate.held(3) == []  # killed before writing it
    assert gate.committed() == 2 and gate.admit(0, texts[3], engine)[0] == "exact duplicate"
    assert gate.admit(0, texts[2], bees)[0] is None  # the unwritten admission was released
    gate.commit(2, texts[3], engine)  # the dead worker's commit arriving late counts once
    assert gate.committed() == 2
    gate.forget(0)
    assert gate.save() == 2 and NearDupIndex.load(state, 0.9).ntotal == 2
    # restored from the saved state (as the driver hands it over on resume): same decisions
    again = GlobalGate(embedder.dim, 0.9, state, 0.8, 0, [HEIGHT, texts[3]])
    assert again.committed() == 2 and again.admit(0, TALL, tall)[0].startswith("near duplicate")
    assert again.admit(0, HEIGHT, height)[0] == "exact duplicate"


# -- the part layout, merge and export (no Ray) ---------------------------------------------------

def record(rid: str, skill: str = "rag") -> dict:
    return {"id": rid, "skill": skill, "subcategory": "single_fact",
            "messages": [{"role": "user", "content": f"question {rid}?"},
                         {"role": "assistant", "content": f"answer {rid}"}],
            "metadata": {"split": skill, "instruction": f"question {rid}?",
                         "source": {"doc_path": f"{rid}.md"}}}


def write_parts(out: Path, shards: dict[int, list[dict]]) -> None:
    layout.write_manifest(out, {"job": "test", "shards": len(shards), "parts": []})
    for shard, records in shards.items():
        part = layout.part_dir(out, shard)
        part.mkdir(parents=True, exist_ok=True)
        (part / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        (part / "rejected.jsonl").write_text(json.dumps({"id": f"rej{shard}"}) + "\n")


def test_merge_concatenates_parts_and_export_reads_the_parts(tmp_path):
    out = tmp_path / "out"
    write_parts(out, {0: [record("a"), record("b")], 1: [record("c")]})
    # interrupted before any merge: export still sees every accepted record, from the parts
    assert not (out / "data.jsonl").exists()
    assert [r["id"] for r in collect(out)["rag"]] == ["a", "b", "c"]
    with open(layout.part_dir(out, 1) / "data.jsonl", "a") as f:
        f.write('{"id": "torn", "sk')  # a killed worker's last line
    assert layout.merge(out) == {"data.jsonl": 3, "rejected.jsonl": 2}
    assert [r["id"] for r in lines(out / "data.jsonl")] == ["a", "b", "c"]
    assert [r["id"] for r in lines(out / "rejected.jsonl")] == ["rej0", "rej1"]
    # a merged copy that fell behind (a run interrupted later) is not what export reads
    (out / "data.jsonl").write_text(json.dumps(record("a")) + "\n")
    assert [r["id"] for r in collect(out)["rag"]] == ["a", "b", "c"]


def test_export_reports_a_damaged_manifest_in_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    write_parts(out, {0: [record("a")]})
    layout.manifest_path(out).write_text("{not json")
    assert main(["export", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.json is damaged" in err[0] and "restore it" in err[0]


# -- flags, config and guards (no Ray) ------------------------------------------------------------

@pytest.mark.parametrize("extra, message", [
    (["--ray-workers", "2"], "--ray-workers only apply to --executor ray"),
    (["--executor", "ray", "--gpus-per-teacher", "1"], "add --gpu-layers -1"),
    (["--executor", "ray", "--ray-workers", "0"], "--ray-workers"),
    (["--executor", "spark"], "invalid choice: 'spark'"),
])
def test_bad_scale_out_flags_are_one_line_usage_errors(corpus, tmp_path, capsys, extra, message):
    code = main(["--skill", "rag", "--input", str(corpus), "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o").exists()


def test_scale_out_settings_come_from_a_config_file_and_do_not_change_the_data_key(tmp_path,
                                                                                  capsys):
    toml = tmp_path / "run.toml"
    toml.write_text('skill = "rag"\ninput = "docs"\nout = "o"\nexecutor = "ray"\n'
                    'ray_address = "auto"\nray_workers = 3\ncpus_per_teacher = 2.0\n')
    assert main(["config", "--dump", "--config", str(toml)]) == 0
    dumped = capsys.readouterr().out
    assert 'executor = "ray"' in dumped and "ray_workers = 3" in dumped
    base = {"skill": "rag", "input": "docs", "out": "o"}
    local = RunConfig.model_validate(base)
    ray_cfg = RunConfig.model_validate({**base, "executor": "ray", "ray_workers": 3})
    assert local.generation_key("t") == ray_cfg.generation_key("t")


def test_each_executor_refuses_the_others_output_folder(corpus, tmp_path):
    sharded = tmp_path / "sharded"
    write_parts(sharded, {0: [record("a")]})
    cfg = RunConfig.model_validate({"skill": "rag", "input": corpus, "out": sharded})
    with pytest.raises(RunError, match="--executor ray \\(parts/\\); resume it with --executor"):
        asyncio.run(run(cfg, Progress(quiet=True)))
    single = tmp_path / "single"
    single.mkdir()
    (single / "data.jsonl").write_text(json.dumps(record("a")) + "\n")
    cfg = RunConfig.model_validate({"skill": "rag", "input": corpus, "out": single,
                                    "executor": "ray"})
    with pytest.raises(RunError, match="single-machine run"):
        asyncio.run(run_ray(cfg, Progress(quiet=True)))
    assert not layout.is_sharded(single) and not (single / "run.json").exists()


def test_a_worker_that_cannot_see_the_driver_s_out_folder_says_so(corpus, tmp_path):
    """On a cluster without a shared --out, a worker finds another job's manifest (or none)."""
    from engine.distributed.ray_run import ShardWorker
    from engine.distributed.shards import ShardPlan

    out = tmp_path / "out"
    layout.write_manifest(out, {"job": "the-driver-on-another-node", "shards": 1})
    cfg = RunConfig.model_validate({"skill": "rag", "input": corpus, "out": out,
                                    "executor": "ray"})
    worker = ShardWorker(cfg, None, None, None, "w0", "this-job")
    plan = ShardPlan(shard=0, seeds={"rag": []}, quota={"rag": 1}, max_attempts=1)
    with pytest.raises(RunError, match=r"^worker w0 on [0-9.]+: --out .* is not the folder the "
                                       r"driver writes to; .* shared filesystem"):
        asyncio.run(worker.run_shard(plan))


# -- a real local Ray cluster ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    # the workers import this module (its teacher openers) by the name pytest gave it
    path = f"{REPO / 'tests'}:{REPO}"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()


def etna_question(prompt: str) -> str:
    """Questions from the Catania document are near-duplicates of the volcano document's."""
    source = prompt.split("Source 1:", 1)[-1].split('"""')[1] if "Source 1:" in prompt else prompt
    return HEIGHT if "Catania" in source else TALL


@asynccontextmanager
async def etna_teacher(settings, say):  # imported by the worker actors (a module-level name)
    yield ScriptedTeacher(rag_replies(etna_question), slots=2)


ETNA = {"volcanoes.md": TOPICS["volcanoes.md"],
        "catania.md": "Mount Etna towers over Catania in Sicily; it is the tallest active "
                      "volcano in Europe and its height of about 3,357 metres changes with "
                      "each eruption.\n"}


def test_near_identical_records_from_two_workers_only_one_is_accepted(ray_cluster, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", ETNA)
    out = tmp_path / "out"
    cfg = RunConfig.model_validate({
        "skill": "rag", "input": corpus, "out": out, "num": 2, "max_attempts": 16,
        "max_type_share": 0, "executor": "ray", "ray_workers": 2, "flow": {"refine_rounds": 0}})
    summary = asyncio.run(run_ray(cfg, Progress(quiet=True), etna_teacher))
    assert summary["executor"]["shards"] == 2 and summary["executor"]["workers"] == 2
    # each shard holds one document, so each worker only ever writes its own variant
    by_shard = {s: (lines(layout.part_dir(out, s) / "data.jsonl"),
                    lines(layout.part_dir(out, s) / "rejected.jsonl")) for s in (0, 1)}
    data = [r for d, _ in by_shard.values() for r in d]
    assert len(data) == 1 and summary["accepted_total"] == 1 and not summary["complete"]
    winner = next(s for s, (d, _) in by_shard.items() if d)
    loser = 1 - winner
    near = [r for r in by_shard[loser][1] if r["reason"].startswith("near duplicate")]
    assert near, by_shard[loser][1]
    assert {r["raw"] for r in near} == {TALL, HEIGHT} - {data[0]["metadata"]["instruction"]}
    assert not [r for r in by_shard[loser][1] if r["reason"] == "exact duplicate"]
    assert lines(out / "data.jsonl") == data  # merged at the end
    assert NearDupIndex.load(out / "state" / "near_dup.faiss", 0.9).ntotal == 1


def distinct_questions(prompt: str, _counter=itertools.count()) -> str:
    """The next of 16 distinct questions that names something in the item's source passage.
    Each worker process counts from 0, so workers also write the same questions: the job-wide
    gate keeps one of each."""
    source = prompt.split("Source 1:", 1)[-1].split('"""')[1].lower() \
        if "Source 1:" in prompt else prompt.lower()
    fits = [q for q in DISTINCT if any(w in source for w in q.lower().strip("?").split()
                                       if len(w) > 5)]
    pool = fits or DISTINCT
    return pool[next(_counter) % len(pool)]


@asynccontextmanager
async def distinct_teacher(settings, say):  # every worker process counts on its own
    yield ScriptedTeacher(rag_replies(distinct_questions), slots=2)


def test_ray_run_merges_into_the_single_machine_layout_and_resumes_per_shard(ray_cluster,
                                                                              corpus, tmp_path):
    base = {"skill": "rag", "input": corpus, "num": 4, "flow": {"refine_rounds": 0}}
    out, single = tmp_path / "ray", tmp_path / "single"
    cfg = RunConfig.model_validate({**base, "out": out, "executor": "ray", "ray_workers": 2})
    summary = asyncio.run(run_ray(cfg, Progress(quiet=True), distinct_teacher))
    asyncio.run(run(RunConfig.model_validate({**base, "out": single}), Progress(quiet=True),
                    distinct_teacher))
    ours, theirs = lines(out / "data.jsonl"), lines(single / "data.jsonl")
    assert summary["complete"] and summary["accepted_total"] == len(ours) == len(theirs) == 4
    assert len({r["id"] for r in ours}) == 4
    assert ours == [r for s in (0, 1) for r in lines(layout.part_dir(out, s) / "data.jsonl")]
    assert [len(lines(layout.part_dir(out, s) / "data.jsonl")) for s in (0, 1)] == [2, 2]
    assert [set(r) for r in ours] == [set(r) for r in theirs]
    assert [set(r["metadata"]) for r in ours] == [set(r["metadata"]) for r in theirs]
    single_summary = json.loads((single / "summary.json").read_text())
    assert set(summary) - {"executor"} == set(single_summary)
    assert summary["skills"]["rag"]["accepted"] == single_summary["skills"]["rag"]["accepted"]
    for name_ in ("summary.json", "README.md", "stats.json", "rejected.jsonl"):
        assert (out / name_).exists() and (single / name_).exists(), name_
    assert json.loads((out / "run.json").read_text()) == \
        json.loads((single / "run.json").read_text())
    assert main(["export", str(out), "--to", "parquet"]) == 0
    assert main(["export", str(single), "--to", "parquet"]) == 0
    import pyarrow.parquet as pq

    tables = [{p.name: pq.read_table(p) for p in (o / "export" / "parquet").iterdir()}
              for o in (out, single)]
    assert list(tables[0]) == list(tables[1]) == ["rag.parquet"]
    assert tables[0]["rag.parquet"].schema == tables[1]["rag.parquet"].schema
    assert tables[0]["rag.parquet"].num_rows == 4

    # a restarted job with a larger --num: each shard resumes after what it wrote
    written = {s: {n: (layout.part_dir(out, s) / n).read_text() for n in layout.OUTPUTS}
               for s in (0, 1)}
    more = cfg.model_copy(update={"num": 6})
    summary = asyncio.run(run_ray(more, Progress(quiet=True), distinct_teacher))
    assert summary["complete"] and summary["resumed_from"] == 4
    assert summary["this_run"]["accepted"] == 2 and len(lines(out / "data.jsonl")) == 6
    for s in (0, 1):
        for name_, text in written[s].items():
            assert (layout.part_dir(out, s) / name_).read_text().startswith(text)
        assert len(ids_of(out, s)) == len(set(ids_of(out, s)))
    assert NearDupIndex.load(out / "state" / "near_dup.faiss", 0.9).ntotal == 6


@pytest.mark.slow
def test_a_killed_worker_s_shard_is_rerun_without_duplicates(ray_cluster, live_server, tmp_path):
    """Embedded teacher behind one shared llama-server; --max-attempts bounds the run (the job may
    end incomplete: this is about the kill). Each shard's share is 2 records in 4 attempts, so
    after its first written line, accepted or not, a shard still has work to be killed in."""
    url, name = live_server
    corpus = write_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    cfg = RunConfig.model_validate({
        "skill": "rag", "input": corpus, "out": out, "num": 4, "max_attempts": 8,
        "executor": "ray", "ray_workers": 2,
        "teacher": {"url": url, "model_name": name, "parallel": 2},
        "flow": {"refine_rounds": 0, "max_tokens": 256}})
    from engine.distributed.ray_run import WORKER_PREFIX

    async def kill_one_mid_shard():
        job = asyncio.create_task(run_ray(cfg, Progress(quiet=True)))
        deadline = time.monotonic() + 600
        while True:
            assert not job.done() and time.monotonic() < deadline, "no worker to kill in time"
            await asyncio.sleep(0.2)
            # a shard that has written something but is not finished (worker wN runs shard N)
            shard = next((s for s in (0, 1) if 0 < len(ids_of(out, s)) < 4 and
                          len(whole_lines(layout.part_dir(out, s) / "data.jsonl")) < 2), None)
            named = [n for n in ray_cluster.util.list_named_actors()
                     if shard is not None and n.startswith(WORKER_PREFIX)
                     and n.endswith(f"-w{shard}")]
            if named:
                break
        ray_cluster.kill(ray_cluster.get_actor(named[0]))
        await asyncio.sleep(1.0)
        written = {n: (layout.part_dir(out, shard) / n).read_text() for n in layout.OUTPUTS}
        return shard, written, await job

    shard, written, summary = asyncio.run(kill_one_mid_shard())
    assert summary["executor"]["shard_reruns"] == 1
    part = layout.part_dir(out, shard)
    for name_, text in written.items():  # append-only: the dead worker's lines are all kept
        assert (part / name_).read_text().startswith(text)
    before = [json.loads(x)["id"] for text in written.values() for x in text.splitlines()]
    after = ids_of(out, shard)
    assert before and len(after) > len(before)  # the new worker went on with the shard...
    assert len(after) == len(set(after))  # ...skipping every item the dead one had written
    assert len(ids_of(out, 1 - shard)) == len(set(ids_of(out, 1 - shard)))
    merged = lines(out / "data.jsonl")
    assert merged == [r for s in (0, 1) for r in lines(layout.part_dir(out, s) / "data.jsonl")]
    assert summary["accepted_total"] == len(merged)
    assert len(lines(out / "rejected.jsonl")) == sum(
        len(lines(layout.part_dir(out, s) / "rejected.jsonl")) for s in (0, 1))
    assert NearDupIndex.load(out / "state" / "near_dup.faiss", 0.9).ntotal == len(merged)


@pytest.mark.slow
def test_cli_ray_run_gives_each_worker_its_own_managed_llama_server(tmp_path):
    """`python -m engine --executor ray` starts its own local cluster; with no --teacher-url each
    worker runs a llama-server (embedded GGUF) on the one core Ray reserved for it."""
    corpus = write_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "engine", "--skill", "rag", "--input", str(corpus), "--out",
           str(out), "--num", "2", "--max-attempts", "4", "--executor", "ray",
           "--ray-workers", "2", "--refine-rounds", "0", "--max-tokens", "256", "--quiet"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode in (0, 3), done.stderr[-3000:]  # 3: fewer than --num in 4 attempts
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["executor"]["workers"] == 2 and printed["attempts"] >= 2
    for worker in ("w0", "w1"):  # one server per worker, each pinned to one thread
        log_text = (out / "logs" / f"llama-server-{worker}.log").read_text()
        assert "model loaded" in log_text and "n_threads = 1" in log_text
        assert "prompt eval time" in log_text  # it served this worker's calls
    merged = lines(out / "data.jsonl")
    assert merged == [r for s in (0, 1) for r in lines(layout.part_dir(out, s) / "data.jsonl")]
    assert printed["accepted_total"] == summary["accepted_total"] == len(merged)
    assert printed["accepted"] + printed["rejected"] == \
        len(lines(out / "rejected.jsonl")) + len(merged)
    if done.returncode == 3:
        assert "re-run the same command to continue" in done.stderr
