"""One generation run: prepare the output dir, index the corpus, open the teacher, run, report."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from collections import Counter
from pathlib import Path

from agents.flow import FlowContext
from agents.registry import load_skill
from dedup.decontam import Decontaminator
from engine.config import RunConfig
from engine.gate import DedupGate
from engine.occupancy import SlotMeter
from engine.pipeline import RunStats, Shares, Sinks, quotas, run_pipeline, type_caps
from engine.progress import Progress
from engine.sink import JsonlWriter, read_jsonl, repair_tail
from engine.report import write_report
from models import default_teacher_gguf, describe, open_teacher
from models.server_build import file_key
from retrieval import CorpusIndex, Embedder

log = logging.getLogger(__name__)


class RunError(RuntimeError):
    """A fatal, explained problem with the run's inputs or output directory."""


def prepare_out(cfg: RunConfig, teacher_name: str) -> None:
    out = cfg.out
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file; pass a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise RunError(f"cannot write to --out {out} ({exc.strerror}); pick a writable "
                       "directory") from exc
    manifest = out / "run.json"
    key = cfg.generation_key(teacher_name)
    if manifest.exists():
        try:
            previous = json.loads(manifest.read_text(encoding="utf-8"))
            if not isinstance(previous, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as exc:
            raise RunError(f"{manifest} is damaged ({exc}); restore it, or delete it to adopt "
                           "the folder with the current settings") from exc
        # run.json files from before a key existed hold that key's default
        earlier = {"format": "openai"} | previous
        changed = {k: (earlier.get(k), v) for k, v in key.items() if earlier.get(k) != v}
        if changed and not cfg.force:
            what = ", ".join(f"{k} {a!r} → {b!r}" for k, (a, b) in changed.items())
            raise RunError(f"{out} was generated with different settings ({what}); use a new "
                           "--out, or --force to mix them")
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": 1, **key}, indent=2))
    os.replace(tmp, manifest)


def load_skills(cfg: RunConfig) -> dict:
    skills = {name: load_skill(name) for name in cfg.skills}
    if cfg.format == "alpaca" and (multi := [n for n, s in skills.items() if s.spec.multi_turn]):
        raise RunError(f"--format alpaca holds single-turn records only; {', '.join(multi)} "
                       "write multi-turn conversations: use --format openai or sharegpt")
    return skills


async def open_corpus(cfg: RunConfig, progress: Progress) -> tuple[Embedder, CorpusIndex]:
    """The embedder and the corpus index (built once, reused while the input is unchanged)."""
    embedder = await asyncio.to_thread(Embedder, cfg.embedder)
    index = await asyncio.to_thread(
        CorpusIndex.build_or_load, cfg.input, cfg.out / "index", embedder, cfg.chunk_size,
        cfg.chunk_overlap, progress.say)
    if index.skipped:
        progress.say(f"skipped {len(index.skipped)} file(s): " + "; ".join(
            f"{s.path} ({s.reason})" for s in index.skipped[:5]))
    return embedder, index


async def run(cfg: RunConfig, progress: Progress, teacher_opener=open_teacher) -> dict:
    """`teacher_opener(settings, say)` is an async context manager yielding a Teacher; tests and
    benchmarks pass a scripted one, everything else the real backends."""
    skills = load_skills(cfg)
    if (cfg.out / "parts" / "manifest.json").exists():  # data.jsonl there is a merged copy
        raise RunError(f"{cfg.out} holds a run made with --executor ray (parts/); resume it "
                       "with --executor ray, or use a new --out")
    quota = quotas(cfg.num, cfg.weights())
    teacher_name = describe(cfg.teacher)
    prepare_out(cfg, teacher_name)
    out = cfg.out

    # resume: repair torn tails, then learn what is already written
    for name in ("data.jsonl", "rejected.jsonl"):
        if cut := repair_tail(out / name):
            log.warning("repaired %s: removed a torn last line (%d bytes)", name, cut)
    accepted = list(read_jsonl(out / "data.jsonl"))
    done_ids = {r["id"] for r in accepted} | {r["id"] for r in read_jsonl(out / "rejected.jsonl")}
    if accepted:
        progress.say(f"resuming: {len(accepted)} records already in {out / 'data.jsonl'}")

    embedder, index = await open_corpus(cfg, progress)

    decontam = None
    if cfg.decontaminate:
        decontam = await asyncio.to_thread(Decontaminator, cfg.decontaminate, embedder,
                                           cfg.decontam_ngram, cfg.decontam_cosine)
        progress.say(f"decontaminating against {len(decontam)} eval items from "
                     f"{len(cfg.decontaminate)} file(s)")
    gate = DedupGate(embedder, cfg.near_dup_threshold, out / "state" / "near_dup.faiss",
                     cfg.density_radius, cfg.density_max)
    await gate.restore([r["metadata"]["instruction"] for r in accepted])

    teacher_settings = cfg.teacher.model_copy(update={"server_log": out / "logs" / "llama-server.log"})
    data, rejected = JsonlWriter(out / "data.jsonl"), JsonlWriter(out / "rejected.jsonl")
    stats = RunStats()
    try:
        async with teacher_opener(teacher_settings, progress.say) as backend:
            teacher = SlotMeter(backend)
            ctx = FlowContext(teacher=teacher, index=index, settings=cfg.flow)
            shares = Shares(
                quota=quota, by_skill=Counter(r["skill"] for r in accepted),
                by_type=Counter((r["skill"], r["subcategory"]) for r in accepted),
                caps=type_caps(quota, {n: [(s.name, s.weight) for s in skill.spec.taxonomy]
                                       for n, skill in skills.items()}, cfg.max_type_share),
                types={n: [s.name for s in skill.spec.taxonomy] for n, skill in skills.items()})
            sinks = Sinks(data=data, rejected=rejected, gate=gate, done_ids=done_ids,
                          shares=shares, fmt=cfg.format, decontam=decontam)
            plans = {name: skill.plan(index.chunks, cfg.seed, cfg.flow.per_chunk,
                                      cfg.flow.unanswerable_share)
                     for name, skill in skills.items()}
            progress.start(cfg.num, len(accepted))
            try:
                stats = await run_pipeline(skills, ctx, plans, sinks, shares=shares,
                                           max_attempts=cfg.attempts_cap,
                                           on_progress=progress.update)
            finally:
                stats.teacher_retries = getattr(teacher, "retried", 0)
                stats.occupancy = teacher.report()
                stats.server_restarts = getattr(teacher, "server_restarts", 0)
    finally:
        progress.stop()
        data.close()
        rejected.close()
        gate.save()
    summary = summarize(cfg, stats, len(accepted), teacher_name, len(index))
    summary["skills"] = skill_report(skills, quota, accepted, stats)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("run finished: %s", json.dumps(summary["this_run"]))
    try:
        stats_ = await asyncio.to_thread(
            write_report, out, list(read_jsonl(out / "data.jsonl")),
            list(read_jsonl(out / "rejected.jsonl")), gate.near.vectors(), summary,
            run_info(cfg, teacher_name, embedder.name))
        summary["diversity"] = stats_["diversity"]
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    except Exception:  # the data is written and safe; a broken card must not fail the run
        log.exception("could not write the dataset card and statistics")
    return summary


def run_info(cfg: RunConfig, teacher_name: str, embedder_name: str) -> dict:
    flags = cfg.model_dump(mode="json", exclude={"teacher": {"api_key"}})
    flags["teacher"]["sampling"] = cfg.teacher.sampler()  # what the requests carried, not None
    info = {"teacher": teacher_name, "embedder": embedder_name, "format": cfg.format,
            "flags": json.dumps(flags, sort_keys=True)}
    model = cfg.teacher.model_path
    if model is None and not cfg.teacher.url:
        try:
            model = default_teacher_gguf()
        except Exception:
            model = None
    if model is not None and Path(model).is_file():
        info["teacher_sha256"] = file_sha256(Path(model), cfg.out / "state" / "hashes.json")
    return info


def file_sha256(path: Path, cache: Path) -> str:
    """The teacher file's hash for the card, cached by (path, size, mtime): GGUFs are large."""
    key = file_key(path)
    known = json.loads(cache.read_text()) if cache.exists() else {}
    if key not in known:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        known[key] = digest.hexdigest()
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, cache)
    return known[key]


def summarize(cfg: RunConfig, stats: RunStats, resumed_from: int, teacher: str,
              chunks: int) -> dict:
    total = resumed_from + stats.accepted
    completion = stats.usage.completion_tokens
    elapsed = stats.elapsed
    return {
        "skill": ",".join(cfg.skills),
        "requested": cfg.num,
        "accepted_total": total,
        "complete": total >= cfg.num,
        "this_run": {
            "accepted": stats.accepted,
            "rejected": stats.rejected,
            "attempts": stats.attempts,
            "acceptance_rate": round(stats.accepted / max(1, stats.accepted + stats.rejected), 3),
            "rejected_by_reason": dict(stats.reasons.most_common()),
            "accepted_by_skill": dict(sorted(stats.by_skill.items())),
            "decontaminated_by_source": dict(sorted(stats.contaminated.items())),
            "teacher_calls": stats.usage.calls,
            "teacher_retries": stats.teacher_retries,  # transport faults, retried by the client
            "server_restarts": stats.server_restarts,  # managed llama-server deaths survived
            "unusable_replies": stats.usage.unusable_replies,  # asked again with a new seed
            # why: a reply that did not parse, or that a cheap check or validator faulted
            "retried_by_reason": dict(sorted(stats.usage.retried.items(),
                                             key=lambda kv: (-kv[1], kv[0]))),
            "prompt_tokens": stats.usage.prompt_tokens,
            "cached_prompt_tokens": stats.usage.cached_tokens,
            # prompt tokens the teacher computed (not served from its prompt cache), per work
            # item and per accepted record: what prompt layout and routing are meant to cut
            "evaluated_prompt_tokens": stats.usage.evaluated_prompt_tokens,
            "evaluated_prompt_tokens_per_item": round(
                stats.usage.evaluated_prompt_tokens / max(1, stats.accepted + stats.rejected), 1),
            "evaluated_prompt_tokens_per_accepted": round(
                stats.usage.evaluated_prompt_tokens / max(1, stats.accepted), 1),
            "evaluated_prompt_tokens_by_call": _shares(
                Counter(stats.usage.evaluated_by_stage), stats.usage.evaluated_prompt_tokens),
            "completion_tokens": completion,
            "wasted_completion_tokens": stats.wasted_completion_tokens,
            "waste_share": round(stats.wasted_completion_tokens / max(1, completion), 3),
            # the wasted tokens by why their item was rejected, and by the call that made them
            "waste_by_reason": _shares(stats.waste_by_reason, completion),
            "waste_by_call": _shares(stats.waste_by_call, completion),
            "elapsed_s": round(elapsed, 2),
            "completion_tokens_per_s": round(completion / max(elapsed, 1e-9), 1),
            "accepted_per_min": round(stats.accepted / max(elapsed, 1e-9) * 60, 2),
            # share of time every teacher slot was working (engine/occupancy.py)
            "teacher_occupancy": stats.occupancy,
        },
        "resumed_from": resumed_from,
        "teacher": teacher,
        "parallel": cfg.teacher.parallel,
        "corpus_chunks": chunks,
        "input": str(cfg.input),
        "seed": cfg.seed,
    }


def skill_report(skills: dict, quota: dict[str, int], earlier: list[dict], stats: RunStats) -> dict:
    """Per skill, over everything in data.jsonl: records per subcategory and how evenly they
    spread over the taxonomy (the largest subcategory against an even share)."""
    counts = Counter((r["skill"], r["subcategory"]) for r in earlier) + stats.subcategories
    report = {}
    for name, skill in skills.items():
        taxonomy = [s.name for s in skill.spec.taxonomy]
        per_sub = {sub: counts[name, sub] for sub in taxonomy}
        total = sum(per_sub.values())
        fair = total / len(taxonomy)
        report[name] = {
            "quota": quota[name],
            "accepted": total,
            "split": skill.spec.split,
            "by_subcategory": per_sub,
            "subcategories_used": sum(1 for n in per_sub.values() if n),
            "subcategories": len(taxonomy),
            "max_over_fair_share": round(max(per_sub.values()) / fair, 2) if total else None,
        }
    return report


def _shares(tokens: Counter, total: int) -> dict[str, dict]:
    """Tokens and their share of `total` (completion or evaluated prompt tokens), largest first."""
    return {key: {"tokens": n, "share": round(n / max(1, total), 3)}
            for key, n in tokens.most_common() if n}
