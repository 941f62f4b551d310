"""The engine side by side with distilabel and a bare client: records/min on the same task.

    python bench/peers.py [--chunks 32] [--max-tokens 200] [--parallel 4] [--schema]
                          [--full-rag N]

The task: one question+answer pair per chunk, from the first `--chunks` chunks of `--input`
(read and chunked by the engine's own reader, 1,200 characters), with the embedded GGUF, the
same prompt, temperature, top_p, max_tokens and llama.cpp threads for every contender; free
text, or with `--schema` a JSON schema enforced by a llama.cpp grammar in all three:

- `distilabel`: distilabel 1.5.3 with its llama.cpp backend (`LoadDataFromDicts` →
  `TextGeneration` with `LlamaCppLLM`), in its own virtualenv under the engine's cache root
  (created on first use: a measuring stick, not a dependency). Timed: its generate calls only
  (model load and pipeline start-up are printed apart).
- `bare client`: a plain aiohttp client with `--parallel` requests in flight against the
  engine's managed llama-server started with `--parallel` slots: the ceiling. It runs before
  and after the engine (the machine may be shared: the two show how much its load moved) and
  the ceiling is their mean; each run gets a fresh server, so no cached prompt carries over.
- `engine`: the engine's scheduler (`run_pipeline`: planner, workers, sink with the dedup gate,
  JSONL writers) and its own client, against the same server, through a one-call skill defined
  here (one teacher call per chunk, no retries, no validation beyond parsing the pair).
- `--full-rag N`: `python -m engine --skill rag` on the same chunks until N records are
  accepted; its summary's accepted records/min, against distilabel's one-call rate.

Records/min counts replies (one per chunk); how many parse as a pair is printed beside it.
Every process started here is stopped on exit, Ctrl-C or SIGTERM included. Figures go to
bench/RESULTS.md with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from agents.flow import FlowContext, FlowSettings, Skill, Trace  # noqa: E402
from agents.items import Candidate, Rejected, WorkItem  # noqa: E402
from engine.gate import DedupGate  # noqa: E402
from engine.occupancy import SlotMeter  # noqa: E402
from engine.pipeline import Shares, Sinks, run_pipeline  # noqa: E402
from engine.sink import JsonlWriter  # noqa: E402
from models import ChatMessage, default_teacher_gguf  # noqa: E402
from models.llama_server import ManagedServer, ServerSettings  # noqa: E402
from models.openai_client import OpenAICompatTeacher  # noqa: E402
from models.server_build import LLAMA_CPP_PYTHON_VERSION, cache_root, ensure_binary  # noqa: E402
from retrieval import Chunk, Embedder, chunk_document, load_documents  # noqa: E402
from bench.teacher_slots import machine  # noqa: E402

DISTILABEL_VERSION = "1.5.3"
TEMPERATURE = 0.7
TOP_P = 0.95  # llama-server's default; distilabel's own default (1.0) is overridden to match
# --schema: the reply's shape enforced by a llama.cpp grammar in all three, as the engine's own
# skills do (llama-server samples first and checks the grammar; llama-cpp-python, distilabel's
# backend, applies it to the whole vocabulary every token: much slower with maxLength bounds)
QA_SCHEMA = {"type": "object", "required": ["question", "answer"], "properties": {
    "question": {"type": "string", "minLength": 10, "maxLength": 200},
    "answer": {"type": "string", "minLength": 2, "maxLength": 400}}}


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the task, the same for all three ---------------------------------------------------------

def first_chunks(root: Path, n: int) -> list[Chunk]:
    """The engine's reader and chunker with the engine's default size and overlap."""
    docs, _ = load_documents(root)
    chunks = [c for d in docs for c in chunk_document(d, size=1200, overlap=200)]
    if len(chunks) < n:
        raise SystemExit(f"--input {root} holds {len(chunks)} chunks, fewer than --chunks {n}; "
                         "pass a larger corpus or fewer chunks")
    return chunks[:n]


def prompt(text: str, json_reply: bool) -> str:
    """The one prompt all three send (of a few tried, the form SmolLM2-135M follows best)."""
    form = ('JSON: {"question": "...", "answer": "..."}' if json_reply
            else "this format:\nQuestion: ...\nAnswer: ...")
    return (f"{text}\n\nBased on the text above, write one question and its answer. Use "
            f"exactly {form}")


def parse_qa(reply: str) -> dict | None:
    """The pair from a JSON object in the reply, or from `Question: … Answer: …` lines."""
    start, end = reply.find("{"), reply.rfind("}")
    if 0 <= start < end:
        try:
            value = json.loads(reply[start:end + 1])
        except ValueError:
            value = None
        if isinstance(value, dict) and all(isinstance(value.get(k), str) and value[k].strip()
                                           for k in ("question", "answer")):
            return {"question": value["question"].strip(), "answer": value["answer"].strip()}
    found = re.search(r"question\W*:\s*(.+?)\s*answer\W*:\s*(.+)", reply, re.I | re.S)
    if found:
        return {"question": found[1].strip(' "'), "answer": found[2].strip(' "}')}
    return None


@dataclass
class Result:
    name: str
    records: int  # replies, one per chunk
    parsed: int  # replies holding a pair
    kept: int  # pairs kept (the engine's dedup gate may drop some)
    elapsed: float
    tokens: int  # completion tokens
    note: str = ""
    load: float = field(default_factory=lambda: os.getloadavg()[0])  # the machine is shared

    @property
    def per_min(self) -> float:
        return self.records / self.elapsed * 60

    def line(self) -> str:
        return (f"{self.name:<12} {self.per_min:6.1f} records/min  ({self.records} in "
                f"{self.elapsed:5.1f}s; {self.parsed} parse as a pair, {self.kept} kept; "
                f"{self.tokens / self.records:.0f} completion tokens/record, "
                f"{self.tokens / self.elapsed:.1f} tok/s; load {self.load:.1f})"
                + (f" {self.note}" if self.note else ""))


def from_replies(name: str, replies: list[str], elapsed: float, tokens: int,
                 note: str = "") -> Result:
    parsed = sum(parse_qa(r) is not None for r in replies)
    return Result(name, len(replies), parsed, parsed, elapsed, tokens, note)


# -- bare client: the ceiling -----------------------------------------------------------------

def request_body(model: str, text: str, max_tokens: int, seed: int,
                 schema: dict | None) -> dict:
    """What the engine's client sends for one call (models/openai_client.py)."""
    body = {"model": model,
            "messages": [{"role": "user", "content": prompt(text, schema is not None)}],
            "max_tokens": max_tokens, "temperature": TEMPERATURE, "seed": seed}
    if schema is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "reply", "schema": schema, "strict": True}}
    return body | {"cache_prompt": True}


async def bare_client(url: str, model: str, chunks: list[Chunk], max_tokens: int,
                      in_flight: int, schema: dict | None) -> Result:
    limit = asyncio.Semaphore(in_flight)
    timeout = aiohttp.ClientTimeout(total=600)

    async def one(session: aiohttp.ClientSession, i: int, text: str) -> dict:
        async with limit, session.post(f"{url}/v1/chat/completions",
                                       json=request_body(model, text, max_tokens, i,
                                                         schema)) as resp:
            resp.raise_for_status()
            return await resp.json()

    async with aiohttp.ClientSession(timeout=timeout) as session:
        started = time.perf_counter()
        replies = await asyncio.gather(*(one(session, i, c.text) for i, c in enumerate(chunks)))
        elapsed = time.perf_counter() - started
    return from_replies("bare client", [r["choices"][0]["message"]["content"] or ""
                                        for r in replies],
                        elapsed, sum(r["usage"]["completion_tokens"] for r in replies))


# -- the engine: its scheduler, sink and client, with a one-call skill ------------------------

SKILL_TOML = '''
name = "peer_qa"
split = "peer_qa"
description = "One question and its answer per chunk, in one teacher call (bench/peers.py)."
system_prompt = "-"
refinement_goals = ["-"]

[[transformations]]
name = "identity"
description = "The chunk unchanged."

[[taxonomy]]
name = "qa_pair"
description = "One question the chunk answers, with its answer."
'''


class OneCallQA(Skill):
    """One teacher call per chunk; the reply is kept when it parses as a pair (no retries)."""

    def __init__(self, folder: Path, chunks: list[Chunk], max_tokens: int,
                 schema: dict | None) -> None:
        folder.mkdir()
        (folder / "skill.toml").write_text(SKILL_TOML)
        super().__init__(folder)
        self.chunks = {c.id: c for c in chunks}
        self.max_tokens = max_tokens
        self.schema = schema

    def plan(self, chunks, seed, per_chunk=1, unanswerable_share=None):
        for i, chunk in enumerate(self.chunks.values()):
            yield WorkItem(id=f"{chunk.id}-{i}", skill=self.name, subcategory="qa_pair",
                           transformation="identity", seed_chunk_id=chunk.id, seed=i)

    async def generate(self, ctx: FlowContext, item: WorkItem, trace: Trace) -> Candidate:
        text = prompt(self.chunks[item.seed_chunk_id].text, self.schema is not None)
        completion = await ctx.teacher.chat([ChatMessage(role="user", content=text)],
                                            schema=self.schema, max_tokens=self.max_tokens,
                                            temperature=TEMPERATURE, seed=item.seed)
        trace.usage.add(completion, "respond")
        pair = parse_qa(completion.text)
        if pair is None:
            raise Rejected("parse", "no question/answer pair in the reply", raw=completion.text)
        return Candidate(item=item, instruction=pair["question"], usage=trace.usage,
                         messages=[ChatMessage(role="user", content=text),
                                   ChatMessage(role="assistant", content=completion.text)],
                         metadata={"instruction": pair["question"], "answer": pair["answer"]})


async def engine_pipeline(url: str, model: str, chunks: list[Chunk], max_tokens: int,
                          slots: int, schema: dict | None, embedder: Embedder,
                          work: Path) -> Result:
    work.mkdir(parents=True)
    skill = OneCallQA(work / "skill", chunks, max_tokens, schema)
    teacher = SlotMeter(OpenAICompatTeacher(url, model_name=model, slots=slots, llama_cpp=True))
    # no corpus index: the skill neither retrieves nor round-trips
    ctx = FlowContext(teacher=teacher, index=None, settings=FlowSettings(reply_retries=0))
    shares = Shares(quota={skill.name: len(chunks)}, types={skill.name: ["qa_pair"]})
    sinks = Sinks(data=JsonlWriter(work / "data.jsonl"),
                  rejected=JsonlWriter(work / "rejected.jsonl"),
                  gate=DedupGate(embedder, 0.9, work / "near_dup.faiss"),
                  done_ids=set(), shares=shares)
    try:
        stats = await run_pipeline({skill.name: skill}, ctx,
                                   {skill.name: skill.plan(chunks, 0)}, sinks, shares=shares,
                                   max_attempts=len(chunks))
        elapsed = stats.elapsed  # RunStats starts with the pipeline: no set-up in it
    finally:
        await teacher.aclose()
        sinks.data.close()
        sinks.rejected.close()
    errors = {reason: n for reason, n in stats.reasons.items() if reason.startswith("error:")}
    if errors:  # a bug in the bench's skill would otherwise pass for a fast engine
        raise SystemExit(f"the engine's one-call skill failed: {errors}; see {work}")
    unparsed = sum(n for reason, n in stats.reasons.items() if reason.startswith("parse:"))
    busy = teacher.report().get("all_slots_busy")
    finished = stats.accepted + stats.rejected
    return Result("engine", finished, finished - unparsed, stats.accepted, elapsed,
                  stats.usage.completion_tokens,
                  f"all slots busy {busy:.0%}" if busy is not None else "")


@asynccontextmanager
async def fresh_server(args, binary: Path, model: Path, log: Path):
    """A managed llama-server as the engine starts it, warmed up by one short request. Each
    contender gets its own, so no prompt cached by the one before serves the next."""
    settings = ServerSettings(model_path=model, binary=binary, parallel=args.parallel,
                              ctx_per_slot=args.ctx, threads=args.threads, log_path=log)
    async with ManagedServer(settings) as server:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{server.base_url}/v1/chat/completions", json={
                    "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8}) as resp:
                resp.raise_for_status()
        yield server.base_url


async def against_server(args, model: Path, chunks: list[Chunk], work: Path) -> list[Result]:
    """The bare client, the engine, the bare client again (the machine is shared: the two bare
    runs bracket the engine's and show how much its load moved), each against a fresh managed
    llama-server."""
    schema = QA_SCHEMA if args.schema else None
    say("loading the embedder for the engine's dedup gate")
    embedder = await asyncio.to_thread(Embedder)
    await asyncio.to_thread(embedder.encode, ["warm up"])
    binary = ensure_binary("llama-server", log=say)
    results = []
    async with fresh_server(args, binary, model, work / "bare-server.log") as url:
        say(f"bare client: {len(chunks)} requests, {args.parallel} in flight")
        results.append(await bare_client(url, model.name, chunks, args.max_tokens, args.parallel,
                                         schema))
    async with fresh_server(args, binary, model, work / "engine-server.log") as url:
        say("engine: run_pipeline with a one-call skill")
        results.append(await engine_pipeline(url, model.name, chunks, args.max_tokens,
                                             args.parallel, schema, embedder, work / "engine"))
    async with fresh_server(args, binary, model, work / "bare-again-server.log") as url:
        say("bare client again")
        again = await bare_client(url, model.name, chunks, args.max_tokens, args.parallel, schema)
        again.name = "bare again"
        results.append(again)
    return results


# -- distilabel, in its own virtualenv --------------------------------------------------------

DISTILABEL_RUNNER = '''
import json, sys, time
started = time.time()
cfg = json.load(open(sys.argv[1]))
from distilabel.models.llms import LlamaCppLLM
from distilabel.pipeline import Pipeline
from distilabel.steps import LoadDataFromDicts
from distilabel.steps.tasks import TextGeneration


def mark(event, start, **extra):
    with open(cfg["marks"], "a") as f:
        f.write(json.dumps({"event": event, "start": start, "end": time.time(), **extra}) + "\\n")


class TimedLlamaCppLLM(LlamaCppLLM):
    """Marks when the model load and each completion start and end (the step runs in a worker
    process: the marks go to a file). `generate` itself is left alone: distilabel validates
    `generation_kwargs` against its signature."""

    def load(self):
        start = time.time()
        super().load()
        mark("load", start)

    def _generate_chat_completion(self, input, *args, **kwargs):
        start = time.time()
        out = super()._generate_chat_completion(input, *args, **kwargs)
        mark("generate", start)
        return out


with Pipeline(name="peers-bench", cache_dir=cfg["cache_dir"]) as pipeline:
    load = LoadDataFromDicts(data=[{"instruction": p} for p in cfg["prompts"]],
                             batch_size=len(cfg["prompts"]))
    llm = TimedLlamaCppLLM(
        model_path=cfg["model"], n_ctx=cfg["n_ctx"], n_gpu_layers=0,
        extra_kwargs={"n_threads": cfg["threads"], "n_threads_batch": cfg["threads"]},
        # on the LLM, not the task (TextGeneration forbids extra fields)
        generation_kwargs={"max_new_tokens": cfg["max_tokens"], "temperature": cfg["temperature"],
                           "top_p": cfg["top_p"], "extra_generation_kwargs": cfg["extra"]})
    generate = TextGeneration(llm=llm, input_batch_size=len(cfg["prompts"]))
    load >> generate

distiset = pipeline.run(use_cache=False)
rows = distiset["default"]["train"]
# keyed by the step's name: statistics_text_generation_0
stats = [next(v for k, v in m.items() if k.startswith("statistics_"))
         for m in rows["distilabel_metadata"]]
json.dump({"generations": [g or "" for g in rows["generation"]],
           "output_tokens": sum(s["output_tokens"] for s in stats),
           "wall_s": time.time() - started}, open(cfg["result"], "w"))
'''


def distilabel_python(log: Path) -> Path:
    """The bench virtualenv's python, created (once) with distilabel and llama-cpp-python."""
    venv = cache_root() / "bench-distilabel-venv"
    python = venv / "bin" / "python"
    # the imports the runner makes: `import distilabel` alone passes without `requests`, which
    # distilabel.models needs (image_generation/openai.py) but 1.5.3 does not declare
    check = ("import distilabel, llama_cpp, distilabel.models.llms, distilabel.pipeline; "
             f"assert distilabel.__version__ == {DISTILABEL_VERSION!r}, distilabel.__version__")
    if python.exists() and subprocess.run([python, "-c", check],
                                          capture_output=True).returncode == 0:
        return python
    say(f"creating {venv} with distilabel {DISTILABEL_VERSION} (a few minutes, once)")
    with open(log, "ab") as out:
        subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
        done = subprocess.run([python, "-m", "pip", "install", f"distilabel=={DISTILABEL_VERSION}",
                               f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}", "requests"],
                              stdout=out, stderr=out)
    if done.returncode != 0 or subprocess.run([python, "-c", check]).returncode != 0:
        raise SystemExit(f"installing distilabel into {venv} failed; see {log}")
    return python


def _die_with_parent() -> None:
    # in the child before exec: SIGTERM when this bench dies, even by SIGKILL (as the engine
    # does for its llama-server)
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextmanager
def process_group(cmd: list, log: Path, **kwargs):
    """A child in its own session, so it and everything it starts (distilabel's worker pool,
    the engine's llama-server) can be stopped together on any exit."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_die_with_parent, **kwargs)
    try:
        yield proc
    finally:
        # the leader first gets SIGTERM (the engine stops its own server); whatever is left
        # in the group after that, or after 15 s, gets SIGKILL
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break  # nothing left in the group
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                pass


def distilabel(args, model: Path, chunks: list[Chunk], work: Path) -> tuple[Result, str]:
    python = distilabel_python(work / "distilabel-venv.log")
    version = subprocess.run([python, "-c", "import distilabel, llama_cpp; "
                              "print(distilabel.__version__, llama_cpp.__version__)"],
                             capture_output=True, text=True, check=True).stdout.split()
    (work / "runner.py").write_text(DISTILABEL_RUNNER)
    cfg = {"prompts": [prompt(c.text, args.schema) for c in chunks], "model": str(model),
           "n_ctx": args.ctx, "threads": args.threads, "max_tokens": args.max_tokens,
           "temperature": TEMPERATURE, "top_p": TOP_P, "cache_dir": str(work / "distilabel-cache"),
           # llama-cpp-python's own schema → grammar path (distilabel's `structured_output`
           # would need outlines)
           "extra": {"response_format": {"type": "json_object", "schema": QA_SCHEMA}}
           if args.schema else None,
           "marks": str(work / "marks.jsonl"), "result": str(work / "result.json")}
    (work / "config.json").write_text(json.dumps(cfg))
    log = work / "distilabel.log"
    say(f"distilabel {version[0]}: {len(chunks)} prompts through LlamaCppLLM (log: {log})")
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("VIRTUAL_ENV", None)
    with process_group([python, work / "runner.py", work / "config.json"], log, env=env) as proc:
        code = proc.wait()
    if code != 0 or not (work / "result.json").exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise SystemExit(f"the distilabel pipeline failed (exit {code}); last lines of {log}:\n"
                         f"{tail}")
    out = json.loads((work / "result.json").read_text())
    marks = [json.loads(line) for line in (work / "marks.jsonl").read_text().splitlines()]
    gen = [m for m in marks if m["event"] == "generate"]
    load = sum(m["end"] - m["start"] for m in marks if m["event"] == "load")
    elapsed = max(m["end"] for m in gen) - min(m["start"] for m in gen)
    note = f"(model load {load:.1f}s; whole pipeline.run {out['wall_s']:.1f}s)"
    return (from_replies("distilabel", out["generations"], elapsed, out["output_tokens"], note),
            f"distilabel {version[0]} (llama-cpp-python {version[1]})")


# -- the full RAG flow ------------------------------------------------------------------------

def full_rag(args, model: Path, chunks: list[Chunk], work: Path) -> dict:
    """`python -m engine --skill rag` on the same chunks (one text file each) for N records."""
    docs = work / "chunks"
    docs.mkdir(parents=True)
    for i, chunk in enumerate(chunks):
        (docs / f"chunk-{i:03d}.txt").write_text(chunk.text)
    out = work / "out"
    cmd = [sys.executable, "-m", "engine", "--skill", "rag", "--input", docs, "--out", out,
           "--num", str(args.full_rag), "--parallel", str(args.parallel), "--teacher-model",
           model, "--ctx", str(args.ctx), "--quiet"]
    if args.full_rag_attempts:
        cmd += ["--max-attempts", str(args.full_rag_attempts)]
    say(f"full RAG flow: {' '.join(map(str, cmd[1:]))}")
    with process_group(cmd, work / "engine.log", cwd=ROOT) as proc:
        code = proc.wait()
    if not (out / "summary.json").exists():
        raise SystemExit(f"the RAG run wrote no summary (exit {code}); see {work / 'engine.log'}")
    return json.loads((out / "summary.json").read_text())["this_run"]


# -- report -----------------------------------------------------------------------------------

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--input", type=Path, default=ROOT.parent / "shared" / "corpus")
    p.add_argument("--chunks", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=200)
    p.add_argument("--parallel", type=int, default=4, help="server slots = requests in flight")
    p.add_argument("--ctx", type=int, default=4096, help="context tokens per slot (and "
                   "distilabel's n_ctx)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="llama.cpp threads, the "
                   "same for the server and distilabel")
    p.add_argument("--model", type=Path, default=None, help="GGUF (default: the embedded one)")
    p.add_argument("--full-rag", type=int, default=0, metavar="N",
                   help="also run the full RAG flow until N records are accepted")
    p.add_argument("--full-rag-attempts", type=int, default=None, metavar="M",
                   help="stop the RAG flow after M work items (its --max-attempts) even short "
                   "of N")
    p.add_argument("--schema", action="store_true", help="constrain every reply to a JSON "
                   "schema (a llama.cpp grammar) in all three")
    p.add_argument("--skip-distilabel", action="store_true", help="the engine and the bare "
                   "client only")
    args = p.parse_args()
    # SIGTERM takes Ctrl-C's path (also where a background shell ignores SIGINT), so every
    # finally below (servers, process groups, the temporary folder) runs
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)
    try:
        measure(args)
    except KeyboardInterrupt:
        print("interrupted: every server and child process started here is stopped",
              file=sys.stderr)
        raise SystemExit(130)


def measure(args) -> None:
    model = args.model or default_teacher_gguf()
    chunks = first_chunks(args.input, args.chunks)
    print(f"machine: {machine()}, load {os.getloadavg()[0]:.2f}; "
          f"python {platform.python_version()}")
    print(f"model {model.name} ({model.stat().st_size / 2**20:.0f} MiB); {len(chunks)} chunks "
          f"of {min(len(c.text) for c in chunks)}-{max(len(c.text) for c in chunks)} characters "
          f"from {args.input}; max_tokens {args.max_tokens}, temperature {TEMPERATURE}, "
          f"{'JSON-schema constrained' if args.schema else 'free text'}, "
          f"{args.threads} llama.cpp threads; server --parallel {args.parallel}")
    versions = f"llama-server and llama-cpp-python {LLAMA_CPP_PYTHON_VERSION}, " \
               f"aiohttp {aiohttp.__version__}"
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        work = Path(tmp)
        results = asyncio.run(against_server(args, model, chunks, work))
        for r in results:  # each figure as soon as it is known
            print(r.line(), flush=True)
        if not args.skip_distilabel:
            (work / "distilabel").mkdir()
            result, version = distilabel(args, model, chunks, work / "distilabel")
            print(result.line(), flush=True)
            results.append(result)
            versions += f", {version}"
        rag = full_rag(args, model, chunks, work / "rag") if args.full_rag else None
    print(f"versions: {versions}; load at the end {os.getloadavg()[0]:.2f}")
    rate = {r.name: r.per_min for r in results}
    before, after = rate["bare client"], rate.pop("bare again")
    rate["bare client"] = (before + after) / 2
    print(f"bare client, mean of the runs before and after the engine's: "
          f"{rate['bare client']:.1f} records/min (they differ by "
          f"{abs(after - before) / min(before, after):.0%}: the load moved that much)")
    pairs = [("engine", "bare client", "goal >= 0.95"), ("engine", "distilabel", ""),
             ("bare client", "distilabel", "")]
    for a, b, goal in pairs:
        if a in rate and b in rate:
            print(f"{a} / {b}: {rate[a] / rate[b]:.2f}x" + (f"  ({goal})" if goal else ""))
    if rag is not None:
        print(f"full RAG flow: {rag['accepted']} accepted, {rag['rejected']} rejected in "
              f"{rag['elapsed_s']:.0f}s = {rag['accepted_per_min']:.2f} accepted/min "
              f"({rag['teacher_calls']} teacher calls); waste {rag['waste_share']:.0%}; all "
              f"slots busy {rag['teacher_occupancy']['all_slots_busy']:.0%} of the run "
              f"({rag['teacher_occupancy']['steady_all_slots_busy']:.0%} after warm-up "
              f"and before the drain), mean occupancy "
              f"{rag['teacher_occupancy']['mean_occupancy']:.0%}")
        if "distilabel" in rate:
            print(f"full RAG accepted/min / distilabel records/min: "
                  f"{rag['accepted_per_min'] / rate['distilabel']:.2f}x  (goal >= 1)")


if __name__ == "__main__":
    main()
