"""`python -m engine`: generate instruction data from raw documents with AgentInstruct flows."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from pydantic import ValidationError

EXIT_FATAL, EXIT_USAGE, EXIT_INCOMPLETE = 1, 2, 3
EXIT_SIGINT, EXIT_SIGTERM = 130, 143


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m engine",
        description="Turn raw documents and code into instruction/response pairs (AgentInstruct: "
                    "content transformation → seed instructions → refinement → teacher answers), "
                    "offline, on a local llama.cpp teacher.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--list-skills", action="store_true", help="print the skills and their "
                   "instruction types, then exit")
    p.add_argument("--skill", help="skill to generate (e.g. rag), several (rag,mcq) or 'all'")
    p.add_argument("--mix", help="share of records per skill, e.g. rag=0.3,mcq=0.7 (default: "
                   "equal shares)")
    p.add_argument("--input", type=Path, help="file or directory of documents/code (txt, md, "
                   "html, code, jsonl)")
    p.add_argument("--out", type=Path, help="output directory; re-running the same command "
                   "resumes where it stopped")
    p.add_argument("--num", type=int, default=20, help="accepted records to produce in total")
    p.add_argument("--seed", type=int, default=0, help="planning seed (deterministic work items)")

    t = p.add_argument_group("teacher")
    t.add_argument("--teacher-model", type=Path, help="GGUF file for the managed llama-server "
                   "(default: the embedded SmolLM2-135M-Instruct)")
    t.add_argument("--teacher-url", help="OpenAI-compatible base URL to use instead of a managed "
                   "server (llama.cpp server, vLLM, Ollama)")
    t.add_argument("--teacher-name", help="model name sent to --teacher-url")
    t.add_argument("--teacher-api-key", help="bearer token for --teacher-url")
    t.add_argument("--backend", choices=["auto", "server", "url", "in-process"], default="auto",
                   help="auto: managed llama-server, else in-process llama-cpp-python")
    t.add_argument("--parallel", type=int, default=4, help="server slots = teacher calls in "
                   "flight (continuous batching)")
    t.add_argument("--ctx", type=int, default=4096, help="context tokens per slot")
    t.add_argument("--gpu-layers", type=int, default=0, help="layers to offload to the GPU "
                   "(-1: all)")
    t.add_argument("--timeout", type=float, default=300.0, help="seconds per teacher call")

    f = p.add_argument_group("flow")
    f.add_argument("--refine-rounds", type=int, default=1, help="suggester → editor rounds")
    f.add_argument("--per-chunk", type=int, default=2, help="instructions planned per seed chunk "
                   "in a row (prompt-cache reuse)")
    f.add_argument("--retrieval-k", type=int, default=4, help="documents in each RAG user turn")
    f.add_argument("--tool-steps", type=int, default=2, help="tool calls (calculator, python, "
                   "search) the teacher may make per answer, for skills that offer tools")
    f.add_argument("--unanswerable-share", type=float, help="share of unanswerable question "
                   "types in the plan (default: the taxonomy's weights)")
    f.add_argument("--max-tokens", type=int, default=320, help="max tokens per teacher reply")
    f.add_argument("--temperature", type=float, default=0.7)
    f.add_argument("--max-attempts", type=int, help="stop after this many work items in this run "
                   "(default: 50 × --num)")

    r = p.add_argument_group("retrieval and dedup")
    r.add_argument("--embedder", type=Path, help="local sentence-transformers folder (default: "
                   "the embedded all-MiniLM-L6-v2)")
    r.add_argument("--chunk-size", type=int, default=1200, help="characters per chunk")
    r.add_argument("--chunk-overlap", type=int, default=200, help="characters shared by "
                   "neighbouring chunks")
    r.add_argument("--near-dup-threshold", type=float, default=0.9, help="cosine at or above "
                   "which an instruction is a near duplicate of an accepted one")

    o = p.add_argument_group("output")
    o.add_argument("--format", choices=["openai", "sharegpt", "alpaca"], default="openai",
                   help="record layout: OpenAI messages, ShareGPT conversations, or Alpaca "
                   "instruction/input/output (single-turn skills only)")
    o.add_argument("--force", action="store_true", help="allow changing skill/seed/teacher on an "
                   "existing --out")
    o.add_argument("--quiet", action="store_true", help="no progress output")
    o.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def config_from_args(args: argparse.Namespace):
    from engine.config import RunConfig

    missing = [f"--{n}" for n in ("skill", "input", "out") if getattr(args, n) is None]
    if missing:
        raise SystemExit(_usage(f"missing {', '.join(missing)} (see --help)"))
    return RunConfig.model_validate({
        "skill": args.skill, "mix": parse_mix(args.mix), "input": args.input, "out": args.out, "num": args.num,
        "seed": args.seed, "embedder": args.embedder, "force": args.force,
        "near_dup_threshold": args.near_dup_threshold, "chunk_size": args.chunk_size,
        "chunk_overlap": args.chunk_overlap, "max_attempts": args.max_attempts,
        "format": args.format,
        "teacher": {
            "backend": args.backend, "model_path": args.teacher_model, "url": args.teacher_url,
            "model_name": args.teacher_name, "api_key": args.teacher_api_key,
            "parallel": args.parallel, "ctx": args.ctx, "gpu_layers": args.gpu_layers,
            "timeout_s": args.timeout},
        "flow": {
            "refine_rounds": args.refine_rounds, "per_chunk": args.per_chunk,
            "retrieval_k": args.retrieval_k, "max_tokens": args.max_tokens,
            "temperature": args.temperature, "tool_steps": args.tool_steps,
            "unanswerable_share": args.unanswerable_share},
    })


def parse_mix(text: str | None) -> dict[str, float] | None:
    if text is None:
        return None
    mix = {}
    for part in text.split(","):
        name, sep, weight = part.partition("=")
        try:
            mix[name.strip()] = float(weight)
        except ValueError:
            raise SystemExit(_usage(f"--mix: {part.strip()!r} is not NAME=WEIGHT (e.g. "
                                    "rag=0.3,mcq=0.7)")) from None
        if not sep:
            raise SystemExit(_usage(f"--mix: {part.strip()!r} is not NAME=WEIGHT"))
    return mix


def _usage(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _flag(loc: tuple) -> str:
    names = {"model_path": "teacher-model", "url": "teacher-url", "timeout_s": "timeout"}
    return "--" + names.get(str(loc[-1]), str(loc[-1])).replace("_", "-")


def list_skills() -> None:
    from agents.registry import load_skill, skill_names

    total = 0
    names = skill_names()
    for name in names:
        spec = load_skill(name).spec
        total += len(spec.taxonomy)
        print(f"{name} ({len(spec.taxonomy)} instruction types, {len(spec.transformations)} "
              f"transformations, split {spec.split!r}): {spec.description}")
        for sub in spec.taxonomy:
            print(f"  - {sub.name}: {sub.description}")
    print(f"{len(names)} skills, {total} instruction types in all")


def export_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m engine export",
                                description="Write a run's records as Parquet and/or a Hugging "
                                "Face datasets directory, one split per skill.")
    p.add_argument("out", type=Path, help="the run's --out directory")
    p.add_argument("--to", default="parquet,hf", help="parquet, hf, or both (comma-separated)")
    p.add_argument("--dest", type=Path, help="where to write (default: OUT/export)")
    p.add_argument("--validation-share", type=float, default=0.0, help="share of source "
                   "documents whose records form <split>_validation (split by document)")
    args = p.parse_args(argv)
    to = [t.strip() for t in args.to.split(",") if t.strip()]
    if not to or any(t not in ("parquet", "hf") for t in to):
        return _usage(f"--to {args.to!r}: choose parquet, hf or parquet,hf")
    if not 0 <= args.validation_share < 1:
        return _usage(f"--validation-share {args.validation_share}: must be in [0, 1)")
    from engine.export import ExportError, export
    from engine.sink import CorruptOutput

    try:
        written = export(args.out, to, args.dest, args.validation_share)
    except (ExportError, CorruptOutput) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    for kind, folder in written.items():
        print(f"{kind}: {folder}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export"]:
        return export_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.list_skills:
        list_skills()
        return 0
    try:
        cfg = config_from_args(args)
    except ValidationError as exc:
        err = exc.errors()[0]
        if not err["loc"]:  # a check across several flags already names them
            return _usage(err["msg"].removeprefix("Value error, "))
        return _usage(f"{_flag(err['loc'])}: {err['msg']}")
    except SystemExit as exc:
        return int(exc.code or EXIT_USAGE)
    if not cfg.input.exists():
        return _usage(f"--input {cfg.input} does not exist; pass a file or directory of documents")

    from agents.registry import UnknownSkill
    from engine.progress import Progress
    from engine.run import RunError, run
    from engine.sink import CorruptOutput
    from models import TeacherError

    progress = Progress(quiet=args.quiet)
    terminated = []

    def on_sigterm(signum, frame):
        # SIGTERM takes Ctrl-C's graceful path: asyncio.run cancels the run, files are flushed,
        # the server is stopped
        terminated.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        summary = asyncio.run(run(cfg, progress))
    except KeyboardInterrupt:
        progress.stop()
        print("interrupted: everything written is kept; resume with the same command",
              file=sys.stderr)
        return EXIT_SIGTERM if terminated else EXIT_SIGINT
    except UnknownSkill as exc:
        return _usage(str(exc))
    except (RunError, CorruptOutput, TeacherError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    print(json.dumps(summary["this_run"] | {"accepted_total": summary["accepted_total"]},
                     indent=None) if args.quiet else _report(summary))
    if not summary["complete"]:
        print(f"stopped at {summary['accepted_total']}/{cfg.num} records after "
              f"{summary['this_run']['attempts']} attempts; re-run the same command to continue "
              "(or raise --max-attempts)", file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0


def _report(summary: dict) -> str:
    run_ = summary["this_run"]
    lines = [
        f"accepted {summary['accepted_total']}/{summary['requested']} "
        f"(this run {run_['accepted']} accepted, {run_['rejected']} rejected, "
        f"{run_['acceptance_rate']:.0%} acceptance) in {run_['elapsed_s']:.0f}s",
        f"teacher: {run_['teacher_calls']} calls, {run_['completion_tokens']} completion tokens, "
        f"{run_['completion_tokens_per_s']} tok/s, waste {run_['waste_share']:.0%}",
    ]
    for reason, n in list(run_["rejected_by_reason"].items())[:8]:
        lines.append(f"  rejected {n:>4} × {reason}")
    return "\n".join(lines)
