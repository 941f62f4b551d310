"""`python -m engine`: generate instruction data from raw documents with AgentInstruct flows."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from pydantic import ValidationError

EXIT_FATAL, EXIT_USAGE, EXIT_INCOMPLETE = 1, 2, 3
EXIT_SIGINT, EXIT_SIGTERM = 130, 143


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        # one line like every other usage error, not the whole usage block above it
        self.exit(EXIT_USAGE, f"error: {message} (see --help)\n")


def slots_arg(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of slots or 'auto', got {text!r}") \
            from None


def sampling_arg(text: str) -> dict[str, int | float]:
    from models.sampling import parse_sampling

    try:
        return parse_sampling(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m engine",
        description="Turn raw documents and code into instruction/response pairs (AgentInstruct: "
                    "content transformation → seed instructions → refinement → teacher answers), "
                    "offline, on a local llama.cpp teacher.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", type=Path, help="TOML file with the same settings as the flags "
                   "(see `python -m engine config --dump`); flags override it")
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
    t.add_argument("--parallel", type=slots_arg, default=4, help="server slots = teacher calls "
                   "in flight (continuous batching); auto: measure the knee once per model and "
                   "machine (a llama.cpp --teacher-url: its own slot count)")
    t.add_argument("--ctx", type=int, default=4096, help="context tokens per slot")
    t.add_argument("--gpu-layers", type=int, default=0, help="layers to offload to the GPU "
                   "(-1: all)")
    t.add_argument("--threads", type=int, help="CPU threads of the managed or in-process teacher "
                   "(unset: llama.cpp's choice); fewer than the cores when other work shares "
                   "them, since llama.cpp's threads spin while they wait for each other")
    t.add_argument("--teacher-weights", choices=["auto", "as-is", "q8_0"], default="auto",
                   help="auto: serve the embedded teacher on the CPU as Q8_0, converted once "
                   "(its Q4_1 has no fast CPU prompt kernels: 1.5-1.9x prompt tok/s, same "
                   "perplexity); q8_0: convert any GGUF so; as-is: never")
    t.add_argument("--timeout", type=float, default=300.0, help="seconds per teacher call")
    t.add_argument("--sampling", type=sampling_arg, help="llama.cpp sampler settings sent with "
                   "every call, KEY=VALUE[,...] in llama-server's names (e.g. "
                   "min_p=0.05,dry_multiplier=0), or 'off'; default: min-p 0.1 and the DRY "
                   "repetition penalty for the managed or in-process teacher (models/sampling.py),"
                   " nothing for --teacher-url")

    f = p.add_argument_group("flow")
    f.add_argument("--refine-rounds", type=int, default=1, help="suggester → editor rounds")
    f.add_argument("--per-chunk", type=int, default=2, help="instructions planned per seed chunk "
                   "in a row (prompt-cache reuse)")
    f.add_argument("--retrieval-k", type=int, default=3, help="documents in each RAG user turn "
                   "(the question's own passages among them)")
    f.add_argument("--round-trip-k", type=int, default=10, help="retrieval round-trip filter: "
                   "an instruction must retrieve its own seed chunk in the top K (0: off)")
    f.add_argument("--round-trip-skills", help="comma-separated skills the round-trip filter "
                   "applies to (default: those whose skill.toml sets round_trip)")
    f.add_argument("--tool-steps", type=int, default=2, help="tool calls (calculator, python, "
                   "search) the teacher may make per answer, for skills that offer tools")
    f.add_argument("--unanswerable-share", type=float, help="share of unanswerable question "
                   "types in the plan (default: the taxonomy's weights)")
    f.add_argument("--answer-retries", type=int, default=3, help="rag: times an answer its "
                   "validators reject (form, grounding) is asked again; the question is paid "
                   "for already")
    f.add_argument("--max-tokens", type=int, default=320, help="max tokens per teacher reply")
    f.add_argument("--temperature", type=float, default=0.7, help="for writing instructions")
    f.add_argument("--answer-temperature", type=float, help="for the teacher's answers "
                   "(default: each skill's skill.toml answer_temperature, 0.2 unless it says)")
    f.add_argument("--max-attempts", type=int, help="stop after this many work items in this run "
                   "(default: 50 × --num)")

    r = p.add_argument_group("retrieval and dedup")
    r.add_argument("--embedder", type=Path, help="local sentence-transformers folder (default: "
                   "the embedded all-MiniLM-L6-v2)")
    r.add_argument("--chunk-size", type=int, default=1200, help="characters per chunk")
    r.add_argument("--chunk-overlap", type=int, default=200, help="characters shared by "
                   "neighbouring chunks")
    r.add_argument("--decontaminate", type=Path, nargs="+", metavar="FILE", default=[], help="JSONL/TXT "
                   "files of benchmark questions; records overlapping them are rejected")
    r.add_argument("--decontam-ngram", type=int, default=13, help="shared word n-gram length "
                   "that counts as contamination")
    r.add_argument("--decontam-cosine", type=float, default=0.9, help="embedding cosine to an "
                   "eval item that counts as contamination")
    r.add_argument("--density-max", type=int, default=0, help="diversity gate: reject an "
                   "instruction when more than this many accepted ones lie within "
                   "--density-radius cosine of it (0: off)")
    r.add_argument("--density-radius", type=float, default=0.8, help="cosine radius for "
                   "--density-max")
    r.add_argument("--max-type-share", type=float, default=2.0, help="diversity gate: each "
                   "subcategory holds at most this multiple of its fair share of a skill's "
                   "records (0: off)")
    r.add_argument("--near-dup-threshold", type=float, default=0.9, help="cosine at or above "
                   "which an instruction is a near duplicate of an accepted one")

    x = p.add_argument_group("scale-out (Ray)")
    x.add_argument("--executor", choices=["local", "ray"], default="local", help="local: this "
                   "machine; ray: seeds sharded over Ray workers, each with its own teacher "
                   "(README: Scale-out on Ray)")
    x.add_argument("--ray-address", help="Ray cluster to join ('auto' = the one `ray start` "
                   "made here; unset: start a local one, or join RAY_ADDRESS's)")
    x.add_argument("--ray-workers", type=int, help="teacher workers (unset: as many as the "
                   "cluster's CPUs/GPUs fit)")
    x.add_argument("--gpus-per-teacher", type=float, help="GPUs each worker's teacher reserves "
                   "(unset: 0; needs --gpu-layers)")
    x.add_argument("--cpus-per-teacher", type=float, help="CPU cores each worker reserves, also "
                   "its llama-server's threads (unset: 1)")

    o = p.add_argument_group("output")
    o.add_argument("--format", choices=["openai", "sharegpt", "alpaca"], default="openai",
                   help="record layout: OpenAI messages, ShareGPT conversations, or Alpaca "
                   "instruction/input/output (single-turn skills only)")
    o.add_argument("--force", action="store_true", help="allow changing skill/seed/teacher on an "
                   "existing --out")
    o.add_argument("--quiet", action="store_true", help="no progress output")
    o.add_argument("--verbose", action="store_true", help="debug logging")
    o.add_argument("--log-file", type=Path, help="append logs (INFO and up) to this file")
    o.add_argument("--log-format", choices=["text", "json"], default="text", help="json: one "
                   "JSON object per log line (stderr and --log-file)")
    return p


# command-line flag (argparse dest) → its place in RunConfig; the TOML config file uses the same
# places, so `--config run.toml` and flags are one schema
FLAG_PATHS: dict[str, tuple[str, ...]] = {
    "skill": ("skill",), "mix": ("mix",), "input": ("input",), "out": ("out",), "num": ("num",),
    "seed": ("seed",), "embedder": ("embedder",), "force": ("force",),
    "near_dup_threshold": ("near_dup_threshold",), "chunk_size": ("chunk_size",),
    "chunk_overlap": ("chunk_overlap",), "max_attempts": ("max_attempts",),
    "format": ("format",), "max_type_share": ("max_type_share",),
    "density_max": ("density_max",), "density_radius": ("density_radius",),
    "decontaminate": ("decontaminate",), "decontam_ngram": ("decontam_ngram",),
    "decontam_cosine": ("decontam_cosine",),
    "backend": ("teacher", "backend"), "teacher_model": ("teacher", "model_path"),
    "teacher_url": ("teacher", "url"), "teacher_name": ("teacher", "model_name"),
    "teacher_api_key": ("teacher", "api_key"), "parallel": ("teacher", "parallel"),
    "ctx": ("teacher", "ctx"), "gpu_layers": ("teacher", "gpu_layers"),
    "timeout": ("teacher", "timeout_s"), "threads": ("teacher", "threads"),
    "sampling": ("teacher", "sampling"), "teacher_weights": ("teacher", "weights"),
    "refine_rounds": ("flow", "refine_rounds"), "per_chunk": ("flow", "per_chunk"),
    "retrieval_k": ("flow", "retrieval_k"), "max_tokens": ("flow", "max_tokens"),
    "temperature": ("flow", "temperature"), "tool_steps": ("flow", "tool_steps"),
    "answer_temperature": ("flow", "answer_temperature"),
    "unanswerable_share": ("flow", "unanswerable_share"),
    "answer_retries": ("flow", "answer_retries"),
    "round_trip_k": ("flow", "round_trip_k"), "round_trip_skills": ("flow", "round_trip_skills"),
    "executor": ("executor",), "ray_address": ("ray_address",), "ray_workers": ("ray_workers",),
    "gpus_per_teacher": ("gpus_per_teacher",), "cpus_per_teacher": ("cpus_per_teacher",),
}


class ConfigFileError(ValueError):
    pass


def given_flags(argv: list[str]) -> set[str]:
    """The flags the user typed (so a config file's value is only overridden by those)."""
    probe = build_parser()
    probe.set_defaults(**{a.dest: None for a in probe._actions if a.dest != "help"})
    return {k for k, v in vars(probe.parse_args(argv)).items() if v is not None}


def read_config_file(path: Path) -> dict:
    import tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigFileError(f"--config {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"--config {path} cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"--config {path} is not valid TOML: {exc}") from None


def merged_values(args: argparse.Namespace, given: set[str], file_values: dict) -> dict:
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in file_values.items()}
    for dest, path in FLAG_PATHS.items():
        holder = merged
        for key in path[:-1]:
            holder = holder.setdefault(key, {}) if isinstance(holder.get(key, {}), dict) else {}
        if dest in given or path[-1] not in holder:
            value = getattr(args, dest)
            if dest == "mix":
                value = parse_mix(value)
            elif dest == "round_trip_skills" and value is not None:
                value = [n.strip() for n in value.split(",") if n.strip()]
            holder[path[-1]] = value
    return merged


def config_from_args(args: argparse.Namespace, given: set[str] | None = None):
    from engine.config import RunConfig

    given = set(vars(args)) if given is None else given
    file_values = read_config_file(args.config) if args.config else {}
    values = merged_values(args, given, file_values)
    missing = [f"--{n}" for n in ("skill", "input", "out") if values.get(n) is None]
    if missing:
        raise SystemExit(_usage(f"missing {', '.join(missing)} (see --help, or set them in "
                                "--config)"))
    try:
        return RunConfig.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":  # a typo in --config: say where the valid keys are
            msg += " (unknown setting; `python -m engine config --dump` lists the valid ones)"
        if not loc:  # a check across several values already names them
            raise SystemExit(_usage(msg)) from None
        flag = next((d for d, p in FLAG_PATHS.items() if p == loc[:len(p)]), None)
        if args.config and (flag is None or flag not in given):
            raise SystemExit(_usage(f"{args.config}: {'.'.join(loc)}: {msg}")) from None
        raise SystemExit(_usage(f"{_flag(err['loc'])}: {msg}")) from None


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
    p = _Parser(prog="python -m engine export",
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


def config_main(argv: list[str]) -> int:
    """`python -m engine config --dump [--config FILE] [flags]`: the effective configuration as
    TOML (a file that --config accepts)."""
    if "--dump" not in argv:
        return _usage("usage: python -m engine config --dump [--config FILE] [run flags]")
    argv = [a for a in argv if a != "--dump"]
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args, given_flags(argv))
    except ConfigFileError as exc:
        return _usage(str(exc))
    except SystemExit as exc:
        return int(exc.code or EXIT_USAGE)
    import tomli_w

    values = cfg.model_dump(mode="json", exclude_none=True, exclude={"teacher": {"api_key"}})
    if cfg.teacher.api_key:
        print("# teacher.api_key is set but not printed")
    print(tomli_w.dumps(values), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export"]:
        return export_main(argv[1:])
    if argv[:1] == ["config"]:
        return config_main(argv[1:])
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error it has already printed
        return int(exc.code or 0)
    _no_model_loading_bar()
    from engine.logs import setup_logging

    try:
        setup_logging(args.verbose, args.log_format, args.log_file)
    except OSError as exc:
        return _usage(f"--log-file {args.log_file} cannot be opened ({exc.strerror or exc}); "
                      "pass a file path in a writable folder")
    if args.list_skills:
        list_skills()
        return 0
    try:
        cfg = config_from_args(args, given_flags(argv))
    except ConfigFileError as exc:
        return _usage(str(exc))
    except SystemExit as exc:
        return int(exc.code or EXIT_USAGE)
    if problem := check_paths(cfg):
        return _usage(problem)

    from agents.registry import UnknownSkill
    from engine.progress import Progress
    from engine.run import RunError, run
    from engine.sink import CorruptOutput, OutputWriteError
    from models import TeacherError

    progress = Progress(quiet=args.quiet)
    terminated = []

    def on_sigterm(signum, frame):
        # SIGTERM takes Ctrl-C's graceful path: asyncio.run cancels the run, files are flushed,
        # the server is stopped
        terminated.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    # a background job of a non-interactive shell (`engine ... &`, nohup) starts with SIGINT
    # ignored, and asyncio only handles it when it is not: `kill -INT` must still stop the run
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if cfg.executor == "ray":
        from engine.distributed import run_ray as run
    try:
        summary = asyncio.run(run(cfg, progress))
    except KeyboardInterrupt:
        progress.stop()
        print("interrupted: everything written is kept; resume with the same command",
              file=sys.stderr)
        return EXIT_SIGTERM if terminated else EXIT_SIGINT
    except UnknownSkill as exc:
        return _usage(str(exc))
    except (RunError, CorruptOutput, OutputWriteError, TeacherError, ValueError,
            FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except OSError as exc:  # e.g. the disk filled up while saving the index or the summary
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: writing or reading{where} failed ({exc.strerror or exc}); what was written "
              "is kept — fix that (free space, permissions), then re-run the same command to "
              "resume", file=sys.stderr)
        return EXIT_FATAL
    print(json.dumps(summary["this_run"] | {"accepted_total": summary["accepted_total"]},
                     indent=None) if args.quiet else _report(summary))
    if not summary["complete"]:
        print(f"stopped at {summary['accepted_total']}/{cfg.num} records after "
              f"{summary['this_run']['attempts']} attempts; re-run the same command to continue "
              "(or raise --max-attempts)", file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0


def _no_model_loading_bar() -> None:
    """Our progress is the only bar: transformers draws "Loading weights" on every run, --quiet
    included. It reads the switch when first imported; if it already is, tell it directly."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if (tf_logging := sys.modules.get("transformers.utils.logging")) is not None:
        tf_logging.disable_progress_bar()


def check_paths(cfg) -> str | None:
    """The usage error for a path flag that cannot work, found before anything is created."""
    if not cfg.input.exists():
        return f"--input {cfg.input} does not exist; pass a file or directory of documents"
    if not (cfg.input.is_dir() or cfg.input.is_file()):
        return (f"--input {cfg.input} is not a regular file or directory (a pipe, socket or "
                "device); pass documents on disk")
    for path in cfg.decontaminate:
        if not path.exists():
            return (f"--decontaminate {path} does not exist; pass JSONL or TXT files of "
                    "benchmark questions")
        if not path.is_file():
            return f"--decontaminate {path} is not a file; pass JSONL or TXT files, not a folder"
    if cfg.embedder is not None and not cfg.embedder.is_dir():
        return (f"--embedder {cfg.embedder} is not a folder; pass a local sentence-transformers "
                "model folder, or leave it out for the bundled all-MiniLM-L6-v2")
    model = cfg.teacher.model_path
    if model is not None and not cfg.teacher.url:  # before the corpus is indexed, not after
        if not model.is_file():
            return (f"--teacher-model {model} " + ("is a folder" if model.is_dir() else
                    "does not exist") + "; pass a .gguf model file")
        from models.llama_server import GGUF_MAGIC

        try:
            with open(model, "rb") as f:
                magic = f.read(len(GGUF_MAGIC))
        except OSError as exc:
            return f"--teacher-model {model} cannot be read ({exc.strerror or exc})"
        if magic != GGUF_MAGIC:
            return (f"--teacher-model {model} is not a GGUF file (it does not start with "
                    "'GGUF'); pass a model converted for llama.cpp")
    return None


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
