"""`--executor ray`: the same run, sharded over Ray workers.

The driver (the `python -m engine` process) indexes the corpus once and puts it in Ray's object
store, restores the job-wide dedup state from the parts, deals the seed chunks into shards
(engine/distributed/shards.py) and hands shards to worker actors. Each worker owns one teacher
(a managed llama-server on the CPU cores / GPU Ray reserved for it, or the shared --teacher-url)
and runs the single-machine pipeline over its shard, appending to OUT/parts/<shard>/; its sink
asks the one dedup actor (engine/distributed/gate.py) before writing a record. A worker that
dies is replaced and its shard re-run: the shard resumes from its files like a restarted run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import uuid
from collections import Counter, deque
from contextlib import AsyncExitStack
from dataclasses import dataclass

import faiss
import numpy as np

from agents.flow import FlowContext
from dedup.decontam import Decontaminator
from engine.config import RunConfig
from engine.distributed.gate import GateProxy, GlobalGate
from engine.distributed.parts import OUTPUTS, PartsError, is_sharded, merge, part_dir
from engine.distributed.parts import read_manifest, write_manifest
from engine.distributed.shards import ShardPlan, plan_shards
from engine.gate import DedupGate
from engine.pipeline import RunStats, Shares, Sinks, quotas, run_pipeline, type_caps
from engine.progress import Progress
from engine.report import write_report
from engine.run import (RunError, load_skills, open_corpus, prepare_out, run_info, skill_report,
                        summarize)
from engine.sink import CorruptOutput, JsonlWriter, OutputWriteError, read_jsonl, repair_tail
from models import TeacherError, describe, open_teacher
from retrieval import Chunk, CorpusIndex, Embedder

log = logging.getLogger(__name__)

MAX_SHARD_RERUNS = 3  # a shard that keeps killing its worker (OOM, a bad node) ends the job
WORKER_PREFIX = "engine-worker"
# errors that already explain themselves in one line: shown as they are
_EXPLAINED = (RunError, TeacherError, CorruptOutput, OutputWriteError, PartsError,
              FileNotFoundError, ValueError)


@dataclass
class IndexBlob:
    """The corpus index as the object store holds it: built once by the driver, read by every
    worker (no worker re-reads the input or re-embeds the corpus)."""

    chunks: list[Chunk]
    skipped: list
    faiss: np.ndarray  # faiss.serialize_index bytes

    @classmethod
    def of(cls, index: CorpusIndex) -> IndexBlob:
        return cls(index.chunks, index.skipped, faiss.serialize_index(index.faiss_index))

    def open(self, embedder: Embedder) -> CorpusIndex:
        return CorpusIndex(self.chunks, self.skipped, faiss.deserialize_index(self.faiss), embedder)


class ShardWorker:
    """One Ray actor: one teacher, one shard at a time. Opened on its first shard."""

    def __init__(self, cfg: RunConfig, gate, index: IndexBlob, teacher_opener, name: str,
                 job: str) -> None:
        self.cfg, self.gate, self.blob, self.opener = cfg, gate, index, teacher_opener
        self.name, self.job = name, job
        self.teacher = None
        self._stack = AsyncExitStack()

    async def _open(self) -> None:
        cfg = self.cfg
        manifest = read_manifest(cfg.out)
        if manifest is None or manifest.get("job") != self.job:
            raise RunError(f"--out {cfg.out} here is not the folder the driver writes to; on a "
                           "multi-node cluster --out must be a shared filesystem mounted at the "
                           "same path on every node")
        # the managed llama-server uses the cores Ray reserved for this worker, not all of them
        os.environ.setdefault("LLAMA_ARG_THREADS", str(max(1, int(cfg.cpus_per_teacher or 1))))
        self.embedder = await asyncio.to_thread(Embedder, cfg.embedder)
        self.index = self.blob.open(self.embedder)
        self.skills = load_skills(cfg)
        self.decontam = None
        if cfg.decontaminate:
            self.decontam = await asyncio.to_thread(
                Decontaminator, cfg.decontaminate, self.embedder, cfg.decontam_ngram,
                cfg.decontam_cosine)
        settings = cfg.teacher.model_copy(
            update={"server_log": cfg.out / "logs" / f"llama-server-{self.name}.log"})
        self.teacher = await self._stack.enter_async_context(self.opener(settings, log.info))

    async def run_shard(self, plan: ShardPlan) -> RunStats:
        if self.teacher is None:
            try:
                await self._open()
            except _EXPLAINED as exc:  # e.g. a GGUF or eval file missing on this node: say which
                import ray

                if exc.args and isinstance(exc.args[0], str):
                    exc.args = (f"worker {self.name} on {ray.util.get_node_ip_address()}: "
                                f"{exc.args[0]}", *exc.args[1:])
                raise
        cfg, part = self.cfg, part_dir(self.cfg.out, plan.shard)
        part.mkdir(parents=True, exist_ok=True)
        for name in OUTPUTS:  # a killed worker may have left a torn last line
            if cut := repair_tail(part / name):
                log.warning("repaired %s: removed a torn last line (%d bytes)", part / name, cut)
        accepted = list(read_jsonl(part / "data.jsonl"))
        done_ids = {r["id"] for r in accepted} | {
            r["id"] for r in read_jsonl(part / "rejected.jsonl")}
        shares = Shares(
            quota=plan.quota, by_skill=Counter(r["skill"] for r in accepted),
            by_type=Counter((r["skill"], r["subcategory"]) for r in accepted),
            # the diversity cap applies to each shard's share (so it can always be filled)
            caps=type_caps(plan.quota, {n: [(s.name, s.weight) for s in skill.spec.taxonomy]
                                        for n, skill in self.skills.items()},
                           cfg.max_type_share),
            types={n: [s.name for s in skill.spec.taxonomy] for n, skill in self.skills.items()})
        plans = {name: skill.plan([self.index.get(c) for c in plan.seeds[name]], cfg.seed,
                                  cfg.flow.per_chunk, cfg.flow.unanswerable_share)
                 for name, skill in self.skills.items() if plan.seeds[name]}
        retried = getattr(self.teacher, "retried", 0)
        data, rejected = JsonlWriter(part / "data.jsonl"), JsonlWriter(part / "rejected.jsonl")
        try:
            sinks = Sinks(data=data, rejected=rejected,
                          gate=GateProxy(self.gate, plan.shard, self.embedder),
                          done_ids=done_ids, shares=shares, fmt=cfg.format, decontam=self.decontam)
            ctx = FlowContext(teacher=self.teacher, index=self.index, settings=cfg.flow)
            stats = await run_pipeline(self.skills, ctx, plans, sinks, shares=shares,
                                       max_attempts=plan.max_attempts)
        finally:
            data.close()
            rejected.close()
            with contextlib.suppress(Exception):  # the gate may be gone; the first error tells
                await self.gate.forget.remote(plan.shard)
        stats.teacher_retries = getattr(self.teacher, "retried", 0) - retried
        return stats

    async def close(self) -> None:
        await self._stack.aclose()


def merge_stats(total: RunStats, part: RunStats) -> None:
    total.accepted += part.accepted
    total.rejected += part.rejected
    total.attempts += part.attempts
    for name in ("reasons", "subcategories", "by_skill", "contaminated", "waste_by_reason",
                 "waste_by_call"):
        getattr(total, name).update(getattr(part, name))
    total.usage.merge(part.usage)
    total.wasted_completion_tokens += part.wasted_completion_tokens
    total.teacher_retries += part.teacher_retries


def workers_that_fit(cpus: float, gpus: float) -> int:
    """Teachers the cluster holds now, node by node (a worker cannot span nodes)."""
    import ray

    fit = 0
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        res = node.get("Resources", {})
        n = int(res.get("CPU", 0) // cpus)
        if gpus:
            n = min(n, int(res.get("GPU", 0) // gpus))
        fit += n
    return fit


def _join_cluster(cfg: RunConfig) -> bool:
    """Start or join Ray; True when this process started it (and so must stop it)."""
    import ray

    if ray.is_initialized():  # an embedding program (or a test) brought its own cluster
        return False
    # no --ray-address: a fresh local cluster ("local"), not whatever `ray start` left running
    # here; RAY_ADDRESS (set by `ray job submit`) still picks the job's cluster
    address = cfg.ray_address or (None if os.environ.get("RAY_ADDRESS") else "local")
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = cfg.ray_address or "a new local cluster"
        raise RunError(f"cannot start or join Ray at {where} ({str(exc).splitlines()[0]}); "
                       "start the head with `ray start --head`, or leave out --ray-address to "
                       "run on this machine") from exc
    return True


def _last_line(exc: BaseException) -> str:
    """Ray's errors end with their reason ("...killed by `ray.kill`.", "ModuleNotFoundError:
    ...") after a long preamble."""
    lines_ = [x.strip() for x in str(exc).splitlines() if x.strip()]
    return lines_[-1] if lines_ else type(exc).__name__


def _failure(exc: BaseException, plan: ShardPlan, worker: str) -> BaseException:
    from ray.exceptions import RayActorError

    cause = getattr(exc, "cause", None) or exc
    if isinstance(cause, _EXPLAINED):
        return cause
    if isinstance(cause, RayActorError):
        return RunError("the job's dedup actor died; what was written is kept — re-run the same "
                        "command to resume")
    log.error("shard %s failed on worker %s: %s", plan.name, worker, exc)
    return RunError(f"shard {plan.name} failed on worker {worker}: {type(cause).__name__}: "
                    f"{str(cause).splitlines()[0] if str(cause) else ''}; what was written is kept "
                    "— re-run the same command to resume (details in the log)")


def _read_parts(out, shards: int) -> tuple[list[Counter], list[dict], int]:
    """Per shard its records by skill; all accepted records (shard order); rejected count.
    Torn tails left by killed workers are cut first (no worker runs now)."""
    by_part, accepted, rejected = [], [], 0
    for shard in range(shards):
        part = part_dir(out, shard)
        for name in OUTPUTS:
            if cut := repair_tail(part / name):
                log.warning("repaired %s: removed a torn last line (%d bytes)", part / name, cut)
        records = list(read_jsonl(part / "data.jsonl"))
        by_part.append(Counter(r["skill"] for r in records))
        accepted += records
        rejected += sum(1 for _ in read_jsonl(part / "rejected.jsonl"))
    return by_part, accepted, rejected


def _unfinished(plan: ShardPlan, by_skill: Counter) -> bool:
    return any(by_skill[k] < q for k, q in plan.quota.items())


class _Pool:
    """The driver's side of the workers: spawn, hand out shards, replace the dead, retire."""

    def __init__(self, cfg: RunConfig, gate, blob, teacher_opener, job: str,
                 cpus: float, gpus: float) -> None:
        import ray

        self.cls = ray.remote(ShardWorker)
        self.cfg, self.gate, self.blob, self.opener, self.job = cfg, gate, blob, teacher_opener, job
        self.cpus, self.gpus = cpus, gpus
        self.ids = itertools.count()
        self.actors: list = []
        self.running: dict[asyncio.Future, tuple] = {}

    def spawn(self) -> tuple:
        name = f"w{next(self.ids)}"
        actor = self.cls.options(name=f"{WORKER_PREFIX}-{self.job[:8]}-{name}",
                                 num_cpus=self.cpus, num_gpus=self.gpus).remote(
            self.cfg, self.gate, self.blob, self.opener, name, self.job)
        self.actors.append(actor)
        return actor, name

    def assign(self, actor, name: str, plan: ShardPlan) -> None:
        ref = actor.run_shard.remote(plan)
        self.running[asyncio.wrap_future(ref.future())] = (actor, name, plan)

    async def retire(self, actor) -> None:
        """Nothing left for it: stop its server, free its cores/GPU."""
        import ray
        from ray.exceptions import RayActorError

        with contextlib.suppress(RayActorError):
            await actor.close.remote()
        ray.kill(actor)

    def kill_all(self) -> None:
        import ray

        for fut in self.running:  # the job ended early: nobody reads these any more
            fut.cancel()
        for actor in self.actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)


async def _run_shards(pool: _Pool, todo: deque, workers: int, progress: Progress,
                      resumed: int) -> tuple[RunStats, Counter]:
    from ray.exceptions import RayActorError, RayTaskError

    total, reruns, live = RunStats(), Counter(), RunStats()
    for _ in range(workers):
        pool.assign(*pool.spawn(), todo.popleft())
    while pool.running:
        finished, _ = await asyncio.wait(pool.running, timeout=1.0,
                                         return_when=asyncio.FIRST_COMPLETED)
        for fut in finished:
            actor, name, plan = pool.running.pop(fut)
            try:
                merge_stats(total, fut.result())
            except RayTaskError as exc:  # the shard itself failed (teacher down, disk full…)
                raise _failure(exc, plan, name) from exc
            except RayActorError as exc:
                why = _last_line(exc)
                if exc.actor_init_failed:  # not a death: every new worker would fail alike
                    raise RunError(f"a Ray worker could not start ({why}); is the engine "
                                   "installed alike on every node?") from exc
                # the worker died (killed, out of memory, its node lost): its shard resumes on
                # a fresh worker, which skips what the dead one wrote
                reruns[plan.shard] += 1
                if reruns[plan.shard] > MAX_SHARD_RERUNS:
                    raise RunError(f"shard {plan.name} lost its worker {reruns[plan.shard]} "
                                   f"times (last: {why}); what was written is kept — check the "
                                   "nodes' memory, then re-run the same command") from exc
                progress.say(f"worker {name} died running shard {plan.name} ({why}); "
                             "re-running that shard on a new worker")
                await _settle_dead_shard(pool.gate, pool.cfg.out, plan)
                todo.appendleft(plan)
                actor, name = pool.spawn()
            if todo:
                pool.assign(actor, name, todo.popleft())
            else:
                await pool.retire(actor)
        live.accepted = await pool.gate.committed.remote() - resumed
        progress.update(live)
    return total, reruns


async def _settle_dead_shard(gate, out, plan: ShardPlan) -> None:
    """A dead worker's admissions: those in its part's data.jsonl join the job's index, so
    no later record can near-duplicate them (and the saved index matches the parts)."""
    held = set(await gate.held.remote(plan.shard))
    written = []
    if held:
        data = part_dir(out, plan.shard) / "data.jsonl"
        repair_tail(data)
        written = [r["metadata"]["instruction"] for r in read_jsonl(data)
                   if r["metadata"]["instruction"] in held]
    if committed := await gate.settle.remote(plan.shard, written):
        log.info("shard %s: %d record(s) its dead worker wrote joined the dedup index",
                 plan.name, committed)


async def run_ray(cfg: RunConfig, progress: Progress, teacher_opener=open_teacher) -> dict:
    """The `--executor ray` counterpart of engine.run.run; same summary, same output layout."""
    try:
        import ray
    except ImportError as exc:
        raise RunError("--executor ray needs Ray on every node: pip install "
                       "'agentinstruct-engine[ray]'") from exc
    skills = load_skills(cfg)
    out = cfg.out
    if (out / "data.jsonl").exists() and not is_sharded(out):
        raise RunError(f"{out} holds a single-machine run (data.jsonl without parts/); resume it "
                       "without --executor ray, or use a new --out")
    quota = quotas(cfg.num, cfg.weights())
    teacher_name = describe(cfg.teacher)
    prepare_out(cfg, teacher_name)
    shards = (read_manifest(out) or {}).get("shards")

    embedder, index = await open_corpus(cfg, progress)

    cpus, gpus = cfg.cpus_per_teacher or 1.0, cfg.gpus_per_teacher or 0.0
    started_here, gate, pool, saved = False, None, None, False
    total, reruns, workers = RunStats(), Counter(), 0
    try:
        if shards is None:  # a new job: one shard per worker, fixed from now on (resume)
            if cfg.ray_workers is None:
                started_here = _join_cluster(cfg)
            shards = cfg.ray_workers or max(1, workers_that_fit(cpus, gpus))
        by_part, accepted, rejected_before = _read_parts(out, shards)
        resumed = len(accepted)
        if resumed:
            progress.say(f"resuming: {resumed} records already in {out / 'parts'}")
        # the job-wide dedup state, from the parts: the saved index, or rebuilt and saved
        state = out / "state" / "near_dup.faiss"
        restored = DedupGate(embedder, cfg.near_dup_threshold, state, cfg.density_radius,
                             cfg.density_max)
        instructions = [r["metadata"]["instruction"] for r in accepted]
        await restored.restore(instructions)
        vectors = restored.near.vectors()

        seeds = {n: [c.id for c in s.seed_chunks(index.chunks)] for n, s in skills.items()}
        plans = plan_shards(seeds, quota, shards, cfg.max_attempts)
        todo = deque(p for p in plans if _unfinished(p, by_part[p.shard]))
        job = uuid.uuid4().hex  # workers check they see this: --out must be shared
        write_manifest(out, _manifest(job, plans, by_part))
        if todo:  # a finished job re-run starts nothing
            started_here = _join_cluster(cfg) or started_here
            fit = workers_that_fit(cpus, gpus)
            if fit == 0:
                raise RunError(f"the Ray cluster has no node with {cpus:g} free CPU(s)"
                               + (f" and {gpus:g} GPU(s)" if gpus else "") + " for a teacher "
                               "worker; lower --cpus-per-teacher/--gpus-per-teacher or add nodes")
            wanted = cfg.ray_workers or fit
            if wanted > fit:
                progress.say(f"the cluster fits {fit} teacher worker(s), not {wanted}: using {fit}")
            workers = min(wanted, fit, len(todo))
            progress.say(f"{len(todo)} of {shards} shard(s) to run on {workers} Ray worker(s)")
            gate_options: dict = {"num_cpus": 0}
            with contextlib.suppress(Exception):  # beside the driver, whose disk has its state
                from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

                gate_options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
                    ray.get_runtime_context().get_node_id(), soft=True)
            gate = ray.remote(GlobalGate).options(**gate_options).remote(
                embedder.dim, cfg.near_dup_threshold, state, cfg.density_radius, cfg.density_max,
                instructions)
            pool = _Pool(cfg, gate, ray.put(IndexBlob.of(index)), teacher_opener, job, cpus, gpus)
            progress.start(cfg.num, resumed)
            total, reruns = await _run_shards(pool, todo, workers, progress, resumed)
            await gate.save.remote()
            saved = True
            vectors = await gate.vectors.remote()
    finally:
        progress.stop()
        if ray.is_initialized():
            if pool is not None:  # an error or Ctrl-C: stop every worker now
                pool.kill_all()
            if gate is not None:
                if not saved:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(asyncio.wrap_future(gate.save.remote().future()),
                                               30)
                with contextlib.suppress(Exception):
                    ray.kill(gate)
            if started_here:
                ray.shutdown()

    counts = await asyncio.to_thread(merge, out)  # OUT/data.jsonl: the single-machine layout
    records = list(read_jsonl(out / "data.jsonl"))
    total.accepted = len(records) - resumed  # from the files: dead workers' records count too
    total.rejected = counts["rejected.jsonl"] - rejected_before
    summary = summarize(cfg, total, resumed, teacher_name, len(index))
    summary["skills"] = skill_report(skills, quota, records, RunStats())
    by_part = _read_parts(out, shards)[0]
    manifest = _manifest(job, plans, by_part)
    write_manifest(out, manifest)
    summary["executor"] = {"kind": "ray", "workers": workers, "shards": shards,
                           "shard_reruns": sum(reruns.values()), "parts": manifest["parts"]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    try:
        stats_ = await asyncio.to_thread(
            write_report, out, records, list(read_jsonl(out / "rejected.jsonl")), vectors,
            summary, run_info(cfg, teacher_name, embedder.name))
        summary["diversity"] = stats_["diversity"]
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    except Exception:  # the data is written and safe; a broken card must not fail the run
        log.exception("could not write the dataset card and statistics")
    return summary


def _manifest(job: str, plans: list[ShardPlan], by_part: list[Counter]) -> dict:
    return {"job": job, "shards": len(plans), "parts": [
        {"part": p.name, "quota": p.quota, "accepted": sum(by_part[p.shard].values()),
         "complete": not _unfinished(p, by_part[p.shard]), "max_attempts": p.max_attempts,
         "seed_chunks": {k: len(v) for k, v in p.seeds.items()}} for p in plans]}
