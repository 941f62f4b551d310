"""The generic AgentInstruct flows (transform → instruct → refine → respond), driven by skill data.

A skill subclasses `Skill`, keeps its taxonomy and prompts in its folder, and implements
`respond` and `validate`; planning, prompting, retries and transformation caching live here once.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
import random
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

import jinja2
from pydantic import BaseModel, ConfigDict, Field, create_model

from agents.fields import line_field, question_field
from agents.items import Candidate, Rejected, Usage, WorkItem
from agents.spec import SkillSpec, Subcategory, load_spec
from models import ChatMessage, ReplyError, Teacher, chat_json
from retrieval import Chunk, CorpusIndex

T = TypeVar("T", bound=BaseModel)
COMMON_PROMPTS = Path(__file__).parent / "common_prompts"
# the end of the reason a reply that copies its demonstration is faulted with
COPIED = "copies the demonstration"


class FlowSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    refine_rounds: int = Field(1, ge=0, le=5)
    max_tokens: int = Field(320, ge=32)
    temperature: float = Field(0.7, ge=0, le=2, description="for writing instructions")
    answer_temperature: float | None = Field(
        None, ge=0, le=2, description="for the teacher's answers (default: the skill's own, "
        "skill.toml answer_temperature)")
    reply_retries: int = Field(2, ge=0, le=10, description="a reply that does not parse or "
                               "fails its stage's cheap checks is asked again this many times")
    answer_retries: int = Field(3, ge=0, le=5, description="rag: an answer its validators reject "
                                "(form, grounding, refusal) is asked again this many times")
    per_chunk: int = Field(2, ge=1, le=50, description="instructions planned per seed chunk in a row")
    # 3, not 4: the same answers accepted for 0.68x the answer prompt's evaluated tokens
    # (bench/respond_yield.py --documents, bench/RESULTS.md session 20)
    retrieval_k: int = Field(3, ge=1, le=20, description="documents in each RAG answer prompt, "
                             "the question's own passages among them")
    round_trip_k: int = Field(10, ge=0, le=200, description="round-trip filter depth; 0 = off")
    round_trip_skills: list[str] | None = Field(
        None, description="skills the round-trip filter applies to (default: skill.toml's flag)")
    tool_steps: int = Field(2, ge=0, le=8, description="tool calls the teacher may make per answer")
    unanswerable_share: float | None = Field(
        None, ge=0, le=1, description="share of unanswerable types in the plan (default: the "
        "taxonomy's weights)")


@dataclass
class FlowContext:
    teacher: Teacher
    index: CorpusIndex
    settings: FlowSettings
    # the engine's dedup gate, read only: (stage, reason) an instruction would be rejected with
    novelty: Callable[[str], Awaitable[tuple[str, str] | None]] | None = None
    _transforms: dict[tuple, Shared] = field(default_factory=dict)

    async def aclose(self) -> None:
        """Stop shared calls still running (their items were abandoned): they must not outlive
        the teacher's session nor leave an exception nobody reads."""
        pending = [shared.task for shared in self._transforms.values() if not shared.task.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


@dataclass
class Trace:
    """What one item cost and went through; lands in the record's metadata."""

    usage: Usage = field(default_factory=Usage)
    steps: list[dict[str, Any]] = field(default_factory=list)
    shared: list[Shared] = field(default_factory=list)  # shared calls whose result it used

    @property
    def fell_back(self) -> bool:
        """Its transformation failed and the seed went on as it is (transform_fallback)."""
        return any("fell_back" in s for s in self.steps)


@dataclass
class Shared:
    """One call whose result several items use (a chunk's transformation). Its tokens are
    charged once, when its users' outcome says whether they were wasted: to the first user that
    is accepted, else to the last user still waiting when all have been rejected."""

    task: asyncio.Future
    usage: Usage
    users: int = 0  # items that awaited it and have not ended yet
    charged: bool = False

    def settle(self, usage: Usage, accepted: bool) -> None:
        """One user ended: charge the call to its usage if this user decides the call's fate."""
        self.users -= 1
        if not self.charged and (accepted or self.users == 0):
            usage.merge(self.usage)
            self.charged = True


class Question(BaseModel):
    # the server stops at the question mark: what a small teacher runs on into after it (more
    # questions, an answer, options) is not generated (chat_json closes the reply)
    reply_stop: ClassVar[str | None] = "?"
    question: str = question_field()


@functools.lru_cache(maxsize=1024)
def anchored_question(anchor: str) -> type[BaseModel]:
    """A Question whose reply opens by naming its subject: under constrained decoding the
    teacher writes `{"about": "<anchor>", "question": ...` and so asks about the anchor. Typed as
    a plain optional string, so a backend that ignores schemas is not rejected for rewording or
    leaving it out (the schema still requires it)."""
    required = ConfigDict(json_schema_extra={"required": ["about", "question"]})
    model = create_model("AnchoredQuestion", __config__=required,
                         about=(str, Field("", json_schema_extra={"const": anchor})),
                         question=(str, question_field()))
    model.reply_stop = None if "?" in anchor else Question.reply_stop  # not inside `about`
    return model


def first_question(text: str) -> str:
    """Small teachers run on past the question into answers or options; keep the question."""
    text = " ".join(text.split())
    end = text.find("?")
    return text[: end + 1] if end >= 0 else text


class Suggestions(BaseModel):
    suggestions: list[Annotated[str, line_field(5, 240)]] = Field(
        min_length=1, max_length=3)


class Transformed(BaseModel):
    text: str = Field(min_length=40, max_length=1500)


_OPEN_TEXT = re.compile(r'\s*\{\s*"text"\s*:\s*"')


def salvage_transformed(raw: str) -> Transformed | None:
    """A transformation cut off by max_tokens, up to its last complete line: notes or a report
    minus an unfinished last line are still usable, and the tokens are paid for already (a
    truncated transformation was the largest single cause of waste in a measured RAG run).
    None when too little is left or it is one phrase repeated (a looping model)."""
    opened = _OPEN_TEXT.match(raw)
    end = raw.rfind("\\n")  # a JSON-escaped newline: the end of the last complete line
    if not opened or end <= opened.end():
        return None
    try:
        text = json.loads('"' + raw[opened.end():end] + '"').strip()
    except ValueError:
        return None
    words = text.split()
    if len(text) < 40 or len(set(words)) < 0.5 * len(words):
        return None
    return Transformed(text=text[:1500])


def stable_id(*parts: object) -> str:
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:16]


class Skill:
    """Base of every skill. Subclasses set nothing but override `respond` and `validate`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.spec: SkillSpec = load_spec(folder)
        # a skill's own prompts first; the shared ones (generic refinement) fill the gaps
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([folder / "prompts", COMMON_PROMPTS]),
            undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False,
            auto_reload=False)  # prompts are data shipped with the package: no stat per render
        # prompts use none of Jinja's globals (range, dict, ...), and every render and include
        # copies them into its context: a third of a prompt's rendering time
        self._env.globals.clear()
        self._templates = {p.name for p in (folder / "prompts").glob("*.j2")}

    @property
    def name(self) -> str:
        return self.spec.name

    def render(self, template: str, **values: Any) -> str:
        return self._env.get_template(template).render(**values).strip()

    def has_template(self, template: str) -> bool:
        return template in self._templates

    def seed_chunks(self, chunks: Sequence[Chunk]) -> list[Chunk]:
        """The chunks this skill prefers as seeds (code for coding skills); all when none fit."""
        if self.spec.seeds == "any":
            return list(chunks)
        fit = [c for c in chunks if (c.kind == "code") == (self.spec.seeds == "code")]
        return fit or list(chunks)

    # -- planning ---------------------------------------------------------------------------

    def plan(self, chunks: Sequence[Chunk], seed: int, per_chunk: int = 2,
             unanswerable_share: float | None = None) -> Iterator[WorkItem]:
        """An endless, deterministic stream of work items spread evenly over the taxonomy.

        Subcategories are dealt like cards (weighted, reshuffled each deck) so every type gets its
        share; `per_chunk` consecutive items share a seed chunk and its transformation, so the
        server's prompt cache and the transformation cache are reused (one transformation call
        feeds them all; a chunk comes back with another one in a later round).
        """
        rng = random.Random(seed)
        order = self.seed_chunks(chunks)
        taxonomy = _reweighted(self.spec.taxonomy, unanswerable_share)
        deck: list[Subcategory] = []
        n = 0
        for rnd in range(1_000_000):
            rng.shuffle(order)
            for chunk in order:
                trans = rng.choices(self.spec.transformations,
                                    weights=[t.weight for t in self.spec.transformations])[0]
                for _ in range(per_chunk):
                    if not deck:
                        deck = _weighted_deck(taxonomy, rng)
                    sub = deck.pop()
                    n += 1
                    yield WorkItem(
                        id=stable_id(self.name, seed, chunk.id, sub.name, trans.name, rnd, n),
                        skill=self.name, subcategory=sub.name, transformation=trans.name,
                        seed_chunk_id=chunk.id, seed=rng.randrange(2**31))

    # -- teacher calls ----------------------------------------------------------------------

    def answer_temperature(self, ctx: FlowContext) -> float:
        """The temperature of the teacher's answers: the run's setting, else the skill's own."""
        run = ctx.settings.answer_temperature
        return self.spec.answer_temperature if run is None else run

    async def ask(self, ctx: FlowContext, trace: Trace, stage: str, prompt: str, output: type[T],
                  seed: int, system: str | None = None, temperature: float | None = None,
                  salvage: Callable[[str], T | None] | None = None,
                  check: Callable[[T], str | None | Awaitable[str | None]] | None = None,
                  retries: int | None = None, history: Sequence[ChatMessage] = ()) -> T:
        """One constrained call, retried with a new seed when the reply is unusable; `salvage`
        may rescue a reply cut off by max_tokens instead of paying for another.

        `check` is the stage's cheap checks: a reply it faults is unusable too and is asked
        again. The calls before this one (a transformation above all) are paid for already, and
        one more short call is cheaper than throwing them away with the item (measured: most
        RAG items ended at their first question, and their transformation with them).
        `history`: earlier turns before the prompt (a demonstration)."""
        head = [ChatMessage(role="system", content=system)] if system else []
        asked = ChatMessage(role="user", content=prompt)
        messages = [*head, *history, asked]
        last: ReplyError | Rejected | None = None
        retries = ctx.settings.reply_retries if retries is None else retries
        for attempt in range(retries + 1):
            again = attempt < retries
            try:
                value, completion = await chat_json(
                    ctx.teacher, messages, output, max_tokens=ctx.settings.max_tokens,
                    temperature=ctx.settings.temperature if temperature is None else temperature,
                    seed=seed + attempt)
            except ReplyError as exc:
                trace.usage.add(exc.completion, stage)
                if salvage and exc.reason == "truncated" and (
                        value := salvage(exc.completion.text)) is not None:
                    trace.steps.append({"step": stage, "salvaged": "truncated"})
                    return value
                trace.usage.unusable_replies += 1
                if again:
                    trace.usage.retry(stage, exc.reason)
                last = exc
                continue
            trace.usage.add(completion, stage)
            problem = check(value) if check else None
            if inspect.isawaitable(problem):
                problem = await problem
            if problem:
                if again:
                    trace.usage.retry(stage, problem)
                if problem.endswith(COPIED) and history:
                    # shown it again, the teacher copies it again: ask without it
                    messages = [*head, asked]
                last = Rejected(stage, problem, raw=completion.text)
                continue
            return value
        assert last is not None
        if isinstance(last, Rejected):
            raise last
        raise Rejected(stage, last.reason, last.detail, raw=last.completion.text)

    # -- the generic flows ------------------------------------------------------------------

    async def shared_ask(self, ctx: FlowContext, trace: Trace, key: tuple, prompt: str,
                         output: type[T], seed: int,
                         salvage: Callable[[str], T | None] | None = None,
                         retries: int | None = None) -> T:
        """One constrained call shared by every item with the same key (a transformation of a
        chunk): the first item asks, the others wait for its answer, and `Skill.run` charges
        its tokens once, by outcome (see Shared)."""
        shared = ctx._transforms.get(key)
        if shared is None:
            own = Trace()
            task = asyncio.ensure_future(self.ask(ctx, own, "transform", prompt, output, seed,
                                                  salvage=salvage, retries=retries))
            # read its outcome even when every waiting item was cancelled: no "never retrieved"
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            shared = ctx._transforms[key] = Shared(task, own.usage)
        shared.users += 1
        trace.shared.append(shared)
        return await asyncio.shield(shared.task)

    def check_transformation(self, name: str, seed: str, text: str) -> str | None:
        """A skill's form check of one transformed passage (None: usable); a failed one ends
        the item, or with transform_fallback passes the seed on, as a failed call does."""
        return None

    async def transform(self, ctx: FlowContext, trace: Trace, chunk: Chunk, name: str) -> str:
        """Content transformation, shared by every item that uses the same (chunk, agent); with
        the skill's `transform_fallback`, the seed itself when the teacher fails it."""
        transformation = self.spec.transformation(name)
        if transformation.template is None:
            return chunk.text
        fallback = self.spec.transform_fallback
        try:
            result = await self.shared_ask(
                ctx, trace, (self.name, chunk.id, name),
                self.render(transformation.template, passage=chunk.text), Transformed,
                seed=int(chunk.id[:8], 16), salvage=salvage_transformed,
                retries=0 if fallback else None)
            if problem := self.check_transformation(name, chunk.text, result.text):
                raise Rejected("transform", problem, raw=result.text)
        except Rejected as exc:
            if not fallback:
                raise
            # measured: an unusable transformation was mostly a loop, which a new seed repeats
            trace.steps.append({"step": "transform", "agent": name, "fell_back": exc.reason})
            return chunk.text
        trace.steps.append({"step": "transform", "agent": name})
        return result.text

    async def instruct(self, ctx: FlowContext, trace: Trace, sub: Subcategory,
                       passages: list[str], seed: int, anchor: str | None = None,
                       source: Chunk | None = None) -> tuple[str, Subcategory]:
        """The seed instruction and its type, asked again while it fails the skill's cheap
        checks (and, given its `source` chunk, the retrieval round trip); with an `anchor` (a
        term of the passage) it is asked about it.

        When every attempt missed `sub`, the first question that missed only its type and is
        plainly of another type (see `retyped`) is kept as that type instead of ending the
        item."""
        prompt = self.render("instruct.j2", subcategory=sub, passages=passages, anchor=anchor)
        output = anchored_question(anchor) if anchor else Question
        fallback: list[tuple[str, Subcategory]] = []

        async def check(reply: BaseModel) -> str | None:
            question = first_question(reply.question)
            problem = await self.instruction_problem(ctx, question, passages, sub, source)
            if problem and not fallback and problem == sub.off_type(question) and (
                    other := self.retyped(question, sub)) and await self.instruction_problem(
                    ctx, question, passages, other, source) is None:
                fallback.append((question, other))
            return problem

        planned = sub
        try:
            question = first_question((await self.ask(
                ctx, trace, "instruct", prompt, output, seed, check=check,
                history=self.demonstration(sub, anchored=anchor is not None))).question)
        except Rejected:
            if not fallback:
                raise
            (question, sub), = fallback
        trace.steps.append({"step": "instruct", "question": question,
                            **({"anchor": anchor} if anchor else {}),
                            **({"retyped_from": planned.name} if sub is not planned else {})})
        return question, sub

    def retyped(self, instruction: str, sub: Subcategory) -> Subcategory | None:
        """The type an instruction written for `sub` plainly is instead: the only other type
        of the taxonomy whose `asks` marker it has ("How does X differ from Y?" has both the
        comparison's and the explanation's: neither), with the same number of passages and
        the same answerability (the item's sources and answer shape stay right). Its answer
        is then asked and checked as that type's."""
        marked = [other for other in self.spec.taxonomy if other.name != sub.name
                  and other.asks and other.off_type(instruction) is None]
        if len(marked) == 1 and marked[0].passages == sub.passages \
                and marked[0].answerable == sub.answerable:
            return marked[0]
        return None

    def demonstration(self, sub: Subcategory, anchored: bool) -> tuple[ChatMessage, ...]:
        """The turns that show the teacher one good reply of this type (skill.toml's
        `demonstrations`), in the reply shape the item asks for; none when the type has none."""
        demo = self.spec.demonstrations
        shown = demo.questions.get(sub.name) if demo else None
        if shown is None:
            return ()
        about = shown.about if anchored else None
        prompt = self.render("instruct.j2", subcategory=sub, passages=demo.passages[:sub.passages],
                             anchor=about)
        reply = {"about": about, "question": shown.question} if anchored else {
            "question": shown.question}
        return (ChatMessage(role="user", content=prompt),
                ChatMessage(role="assistant", content=json.dumps(reply)))

    async def instruction_problem(self, ctx: FlowContext, instruction: str, passages: list[str],
                                  sub: Subcategory, source: Chunk | None) -> str | None:
        """Why a written or edited instruction is not kept, or None: a copied demonstration (it
        names what only the demonstration is about), the skill's cheap checks, and given its
        `source` chunk, the retrieval round trip."""
        demo = self.spec.demonstrations
        if demo and demo.copied(instruction, passages):
            return f"question {COPIED}"
        return self.check_instruction(instruction, passages, sub) or \
            await self.round_trip_problem(ctx, instruction, source)

    async def round_trip_problem(self, ctx: FlowContext, instruction: str,
                                 source: Chunk | None) -> str | None:
        """Retrieval round trip: a question written from a chunk must find that chunk among the
        corpus index's top k; one that does not is ambiguous, generic or leaks nothing of its
        source. A search (milliseconds), so it is a cheap check: the flows ask a question again,
        or drop an edit, that fails it, before the calls after it are paid for."""
        k, wanted = ctx.settings.round_trip_k, ctx.settings.round_trip_skills
        if source is None or not k or not (
                self.name in wanted if wanted is not None else self.spec.round_trip):
            return None
        hits = await ctx.index.asearch(instruction, k=min(k, len(ctx.index)))
        if any(h.chunk.id == source.id or overlapping(h.chunk, source) for h in hits):
            return None
        return f"instruction does not retrieve its source in the top {k}"

    async def check_round_trip(self, ctx: FlowContext, instruction: str, source: Chunk) -> None:
        """The round trip on a finished instruction: one that fails it is rejected before its
        answer is paid for."""
        if problem := await self.round_trip_problem(ctx, instruction, source):
            raise Rejected("round_trip", problem, raw=instruction)

    async def check_novel(self, ctx: FlowContext, trace: Trace, instruction: str) -> None:
        """An instruction near one already kept would be rejected by the sink's dedup gate:
        reject it before its answer is paid for (the sink still decides, atomically)."""
        if ctx.novelty is None:
            return
        if found := await ctx.novelty(instruction):
            stage, reason = found
            raise Rejected(stage, reason, "found before the answer was asked for",
                           raw=instruction)

    def check_instruction(self, instruction: str, passages: list[str],
                          sub: Subcategory) -> str | None:
        """Cheap checks before anything more is spent on an instruction; skills add theirs."""
        return sub.off_type(instruction)

    async def refine(self, ctx: FlowContext, trace: Trace, sub: Subcategory, passages: list[str],
                     question: str, seed: int, source: Chunk | None = None,
                     anchored: bool = False) -> str:
        """Suggester → editor rounds; each round's goal is drawn from the skill's list. An edit
        that fails the skill's cheap checks (or, given its `source`, the round trip) is dropped
        and the previous version kept."""
        rng = random.Random(seed)
        # the instruct call's demonstration goes first here too: the chain's calls then share
        # one prefix (demonstration + seed material) in the server's prompt cache
        shown = self.demonstration(sub, anchored)
        for rnd in range(ctx.settings.refine_rounds):
            goal = rng.choice(self.spec.refinement_goals)
            prompt = self.render("suggest.j2", subcategory=sub, passages=passages,
                                 question=question, goal=goal)
            suggestions = (await self.ask(ctx, trace, "suggest", prompt, Suggestions,
                                          seed + 101 * (rnd + 1), history=shown)).suggestions
            prompt = self.render("edit.j2", subcategory=sub, passages=passages, question=question,
                                 suggestions=suggestions)
            edited = first_question((await self.ask(ctx, trace, "edit", prompt, Question,
                                                    seed + 211 * (rnd + 1),
                                                    history=shown)).question)
            problem = await self.instruction_problem(ctx, edited, passages, sub, source)
            trace.steps.append({"step": "refine", "round": rnd + 1, "goal": goal,
                                "suggestions": suggestions, "before": question, "after": edited,
                                "kept": problem is None, **({"dropped_because": problem}
                                                            if problem else {})})
            if problem is None:
                question = edited
        return question

    async def run(self, ctx: FlowContext, item: WorkItem) -> Candidate:
        """Run one item; a rejection carries what the item cost, so waste is accounted."""
        trace = Trace()
        try:
            candidate = await self.generate(ctx, item, trace)
        except BaseException as exc:  # a rejection, or the item abandoned: no record from it
            for shared in trace.shared:
                shared.settle(trace.usage, accepted=False)
            if isinstance(exc, Rejected):
                exc.usage = trace.usage
            raise
        for shared in trace.shared:
            shared.settle(trace.usage, accepted=True)
        candidate.usage = trace.usage
        return candidate

    async def generate(self, ctx: FlowContext, item: WorkItem, trace: Trace) -> Candidate:
        raise NotImplementedError(f"skill {self.name} must implement generate()")


def overlapping(a: Chunk, b: Chunk) -> bool:
    """Neighbouring chunks share text (the chunk overlap): either counts as the source."""
    return a.doc_path == b.doc_path and a.start < b.end and b.start < a.end


def _reweighted(taxonomy: Sequence[Subcategory], unanswerable_share: float | None
                ) -> list[Subcategory]:
    """Scale weights so unanswerable types make up the requested share of the plan."""
    no = [s for s in taxonomy if not s.answerable]
    yes = [s for s in taxonomy if s.answerable]
    if unanswerable_share is None or not no or not yes:
        return list(taxonomy)
    if unanswerable_share == 0:
        return yes
    if unanswerable_share == 1:
        return no
    total_no, total_yes = sum(s.weight for s in no), sum(s.weight for s in yes)
    scale_no = unanswerable_share / total_no
    scale_yes = (1 - unanswerable_share) / total_yes
    return [s.model_copy(update={"weight": s.weight * (scale_yes if s.answerable else scale_no)})
            for s in taxonomy]


def _weighted_deck(taxonomy: Sequence[Subcategory], rng: random.Random) -> list[Subcategory]:
    scale = 1 / min(s.weight for s in taxonomy)
    deck = [s for s in taxonomy for _ in range(max(1, round(s.weight * scale)))]
    rng.shuffle(deck)
    return deck
