"""The RAG skill: its respond step (retrieve → answer with citations) and its validation."""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, ValidationError, create_model

from agents.flow import COPIED, FlowContext, Skill, Trace, overlapping
from agents.items import Candidate, Rejected, WorkItem
from agents.rag import validators as v
from agents.rag.anchors import pick_anchor
from agents.spec import Subcategory
from models import ChatMessage
from retrieval import Chunk


ANSWER_CHARS = 600  # the answer's length limit in its schema
REFUSAL_CHARS = 300  # an unanswerable type's, whose reply says the documents lack it


@functools.lru_cache(maxsize=64)
def answer_schema(n_documents: int, answerable: bool) -> type[BaseModel]:
    """The reply shape, narrowed per item so constrained decoding rules out whole classes of
    failure: answerable types must cite 1..n_documents, unanswerable ones cannot cite at all.
    The validators still check both (a URL backend may ignore schemas)."""
    if answerable:
        return create_model(
            "Answer", answerable=(Literal[True], ...),
            answer=(str, Field(min_length=2, max_length=ANSWER_CHARS)),
            citations=(list[Annotated[int, Field(ge=1, le=n_documents)]],
                       Field(min_length=1, max_length=min(3, n_documents))))
    return create_model(
        "Refusal", answerable=(Literal[False], ...),
        answer=(str, Field(min_length=10, max_length=REFUSAL_CHARS)),
        citations=(list[int], Field(max_length=0)))


class RagSkill(Skill):
    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        # an answer shown to the teacher has the reply shape its items are held to
        demo = self.spec.demonstrations
        for name in demo.questions if demo else ():
            try:
                self.shown_answer(self.spec.subcategory(name))
            except ValidationError as exc:
                why = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                for e in exc.errors())
                raise ValueError(f"invalid skill definition {folder / 'skill.toml'}: the "
                                 f"demonstration's answer for {name}: {why}") from None

    def check_instruction(self, instruction: str, passages: list[str],
                          sub: Subcategory) -> str | None:
        # an unanswerable type's question asks what its passages do not say, names included
        return (v.check_question(instruction) or v.check_on_topic(instruction, passages)
                or (v.check_question_specifics(instruction, passages) if sub.answerable
                    else None)
                or super().check_instruction(instruction, passages, sub))

    async def partners(self, ctx: FlowContext, seed: Chunk, count: int) -> list[Chunk]:
        """Second passages for multi-passage types: the seed's nearest non-overlapping chunks."""
        if count == 0:
            return []
        hits = await ctx.index.asearch(seed.text, k=min(len(ctx.index), count + 8))
        found = [h.chunk for h in hits if not overlapping(h.chunk, seed)][:count]
        if len(found) < count:
            raise Rejected("transform", "no partner passage", "corpus too small for this type")
        return found

    async def retrieve(self, ctx: FlowContext, question: str, required: list[Chunk],
                       rng: random.Random) -> list[Chunk]:
        """The search tool's top-k for the question, with the passages the question came from
        guaranteed present (a real retriever misses sometimes; training data should not)."""
        k = ctx.settings.retrieval_k
        hits = [h.chunk for h in await ctx.index.asearch(question, k=min(len(ctx.index), k))]
        docs = [c for c in hits if all(c.id != r.id for r in required)]
        docs = (required + docs)[: max(k, len(required))]
        rng.shuffle(docs)
        return docs

    async def generate(self, ctx: FlowContext, item: WorkItem, trace: Trace) -> Candidate:
        sub = self.spec.subcategory(item.subcategory)
        rng = random.Random(item.seed)
        seed_chunk = ctx.index.get(item.seed_chunk_id)
        sources = [seed_chunk, *await self.partners(ctx, seed_chunk, sub.passages - 1)]
        passages = [await self.transform(ctx, trace, c, item.transformation) for c in sources]

        anchor = pick_anchor(passages[0], ctx.index, item.seed, within=seed_chunk.text)
        question, sub = await self.instruct(ctx, trace, sub, passages, item.seed, anchor,
                                            source=seed_chunk)
        # the round trip ran on the written question and on every edit kept: no need again
        question = await self.refine(ctx, trace, sub, passages, question, item.seed,
                                     source=seed_chunk, anchored=anchor is not None)
        await self.check_novel(ctx, trace, question)

        documents = await self.retrieve(ctx, question, sources, rng)
        user_turn = self.render("user_turn.j2", documents=documents, question=question)
        verdict = await self.answer(ctx, trace, sub, question, user_turn, documents, item.seed)
        answer, citations = verdict.answer, verdict.citations

        content = answer
        if citations:
            content += "\n\nSources: " + ", ".join(f"[{c}]" for c in citations)
        messages = [
            ChatMessage(role="system", content=self.spec.system_prompt),
            ChatMessage(role="user", content=user_turn),
            ChatMessage(role="assistant", content=content),
        ]
        refinements = [s for s in trace.steps if s["step"] == "refine"]
        metadata = {
            "split": self.spec.split,
            "instruction": question,
            "source": {"chunk_id": seed_chunk.id, "doc_path": seed_chunk.doc_path,
                       "start": seed_chunk.start, "end": seed_chunk.end},
            "passages": [c.id for c in sources],
            "documents": [c.id for c in documents],
            "transformation": item.transformation,
            # the teacher failed it: the passage went on as it is (skill.toml transform_fallback)
            "transformation_fell_back": trace.fell_back,
            "instruction_type": sub.name,
            # differs from instruction_type when every question the teacher wrote for the planned
            # type was of another type; always present so every record has the same columns
            "planned_type": item.subcategory,
            "anchor": anchor,
            "answerable": sub.answerable,
            "citations": citations,
            "citations_repaired": verdict.repaired,
            "refinement_rounds": len(refinements),
            "refinement": refinements,
            "teacher_model": ctx.teacher.model_name,
            "validator_scores": verdict.scores,
        }
        return Candidate(item=item, subcategory=sub.name, instruction=question,
                         messages=messages, metadata=metadata, usage=trace.usage)


    async def answer(self, ctx: FlowContext, trace: Trace, sub: Subcategory, question: str,
                     user_turn: str, documents: list[Chunk], seed: int) -> Verdict:
        """The teacher's answer, judged. An answer a validator rejects is asked again
        `answer_retries` times, at the writing `temperature`: the question and its passages are
        paid for already, and these validators judge the answer's own form and grounding (there is
        no key that re-sampling could agree with by chance). A retry's prompt is the first
        one's, so the server's prompt cache serves it."""
        prompt = self.render("respond.j2", user_turn=user_turn, subcategory=sub)
        schema = answer_schema(len(documents), sub.answerable)
        shown = self.answer_demonstration(sub)
        for attempt in range(ctx.settings.answer_retries + 1):
            reply = await self.ask(ctx, trace, "respond", prompt, schema, seed + 7 + 977 * attempt,
                                   system=self.spec.system_prompt, history=shown,
                                   temperature=self.answer_temperature(ctx) if attempt == 0
                                   else ctx.settings.temperature)
            verdict = await self.judge(ctx, sub, question, reply, documents)
            if verdict.problem is None:
                return verdict
            if attempt < ctx.settings.answer_retries:
                trace.usage.retry("validate", verdict.problem)
            if verdict.problem.endswith(COPIED):
                shown = ()  # shown it again, the teacher copies it again: ask without it
        detail = ", ".join(f"{name} {value:.2f}" for name, value in verdict.scores.items())
        raise Rejected("validate", verdict.problem, detail, raw=reply.model_dump_json())

    def answer_demonstration(self, sub: Subcategory) -> tuple[ChatMessage, ...]:
        """The turns that show the teacher a good answer of this type before it answers: the
        demonstration's question asked with its passages as the documents, then its answer. The
        record keeps only the item's own turns. No turns when the type shows no answer."""
        reply = self.shown_answer(sub)
        if reply is None:
            return ()
        demo = self.spec.demonstrations
        documents = [{"doc_path": f"examples/passage-{n}.html", "text": text}
                     for n, text in enumerate(demo.passages, 1)]
        user_turn = self.render("user_turn.j2", documents=documents,
                                question=demo.questions[sub.name].question)
        # in the schema's key order, the order the teacher's own reply is constrained to
        return (ChatMessage(role="user", content=self.render("respond.j2", user_turn=user_turn,
                                                             subcategory=sub)),
                ChatMessage(role="assistant", content=json.dumps(reply.model_dump())))

    def shown_answer(self, sub: Subcategory) -> BaseModel | None:
        """The demonstration's answer for this type as the reply schema reads it (its passages
        are the documents), or None when the type shows none; raises ValidationError when it
        does not fit the schema (checked once at load)."""
        demo = self.spec.demonstrations
        shown = demo.questions.get(sub.name) if demo else None
        if shown is None or shown.answer is None:
            return None
        return answer_schema(len(demo.passages), sub.answerable).model_validate(shown.answer)

    async def judge(self, ctx: FlowContext, sub: Subcategory, question: str, reply: BaseModel,
                    documents: list[Chunk]) -> Verdict:
        """The validators on one reply, cheapest first."""
        verdict = Verdict(reply.answer.strip(), sorted(set(reply.citations)))
        demo = self.spec.demonstrations
        if demo and demo.copied(verdict.answer, [d.text for d in documents]):
            verdict.problem = f"answer {COPIED}"
            return verdict
        verdict.problem = (v.check_citations(verdict.citations, len(documents), reply.answerable,
                                             sub)
                           or v.check_echo(verdict.answer)
                           or v.check_repetition(verdict.answer)
                           or v.check_repeated_sentence(verdict.answer)
                           or v.check_looping(verdict.answer)
                           or v.check_complete(verdict.answer, ANSWER_CHARS
                                               if sub.answerable else REFUSAL_CHARS)
                           or v.check_specifics(verdict.answer,
                                                [question, *(d.text for d in documents)],
                                                question))
        if verdict.problem or not sub.answerable:
            verdict.problem = verdict.problem or v.check_refusal(verdict.answer)
            return verdict
        verdict.problem = (v.check_not_heading(verdict.answer, [d.text for d in documents])
                           or v.check_form(verdict.answer, sub.expects)
                           or v.check_adds_information(question, verdict.answer))
        if verdict.problem:
            return verdict
        relevance, cosines = await _cosines(ctx, verdict.answer, question, documents)
        verdict.problem = v.check_relevance(question, verdict.answer, relevance)
        if verdict.problem:
            verdict.scores = {"relevance": round(relevance, 3)}
            return verdict
        cited = _grounding(verdict.answer, documents, cosines, verdict.citations)
        if v.check_grounding(*cited) and (best := _best_supported(verdict.answer, documents,
                                                                  cosines)):
            # the answer is grounded, but in another document than the one it cites:
            # cite what measurably supports it rather than drop a correct answer
            (verdict.citations, cited), verdict.repaired = best, True
        verdict.scores = {"lexical_support": round(cited[0], 3), "cosine": round(cited[1], 3),
                          "relevance": round(relevance, 3)}
        verdict.problem = v.check_grounding(*cited)
        return verdict


@dataclass
class Verdict:
    """One answer as the validators saw it; `problem` None means accepted."""

    answer: str
    citations: list[int]
    problem: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    repaired: bool = False  # citations moved to the document that supports the answer


async def _cosines(ctx: FlowContext, answer: str, question: str, documents: list[Chunk]
                   ) -> tuple[float, list[float]]:
    """The answer's cosine with its question and with each document, in one forward pass (the
    question's vector is remembered from its dedup check)."""
    vectors = await ctx.index.embedder.aencode([answer, question, *(d.text for d in documents)])
    return float(vectors[1] @ vectors[0]), [float(c) for c in vectors[2:] @ vectors[0]]


def _grounding(answer: str, documents: list[Chunk], cosines: list[float],
               citations: list[int]) -> tuple[float, float]:
    """(lexical support, cosine) of the answer by the cited documents: its words may come from
    any of them (multi-hop answers), its meaning must be close to at least one."""
    cited = [documents[c - 1].text for c in citations]
    return v.lexical_support(answer, cited), max(cosines[c - 1] for c in citations)


def _best_supported(answer: str, documents: list[Chunk], cosines: list[float]
                    ) -> tuple[list[int], tuple[float, float]] | None:
    """The single document that supports the answer best, with its support, if it is enough."""
    scored = [(_grounding(answer, documents, cosines, [n]), n) for n in range(1, len(documents) + 1)]
    support, n = max(scored)
    return ([n], support) if v.check_grounding(*support) is None else None


SKILL = RagSkill
