"""The RAG skill: its respond step (retrieve → answer with citations) and its validation."""

from __future__ import annotations

import asyncio
import random
from typing import Annotated

import numpy as np
from pydantic import BaseModel, Field

from agents.flow import FlowContext, Skill, Trace
from agents.items import Candidate, Rejected, WorkItem
from agents.rag import validators as v
from models import ChatMessage
from retrieval import Chunk


class Answer(BaseModel):
    answerable: bool
    answer: str = Field(min_length=2, max_length=700)
    citations: list[Annotated[int, Field(ge=1, le=20)]] = Field(max_length=4)


def _overlaps(a: Chunk, b: Chunk) -> bool:
    return a.doc_path == b.doc_path and a.start < b.end and b.start < a.end


class RagSkill(Skill):
    async def partners(self, ctx: FlowContext, seed: Chunk, count: int) -> list[Chunk]:
        """Second passages for multi-passage types: the seed's nearest non-overlapping chunks."""
        if count == 0:
            return []
        hits = await ctx.index.asearch(seed.text, k=min(len(ctx.index), count + 8))
        found = [h.chunk for h in hits if not _overlaps(h.chunk, seed)][:count]
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

        question = await self.instruct(ctx, trace, sub, passages, item.seed)
        if problem := v.check_question(question):
            raise Rejected("instruct", problem, raw=question)
        question = await self.refine(ctx, trace, sub, passages, question, item.seed)
        if problem := v.check_question(question):
            raise Rejected("refine", problem, raw=question)

        documents = await self.retrieve(ctx, question, sources, rng)
        user_turn = self.render("user_turn.j2", documents=documents, question=question)
        reply = await self.ask(ctx, trace, "respond", self.render("respond.j2", user_turn=user_turn),
                               Answer, item.seed + 7, system=self.spec.system_prompt)
        answer = reply.answer.strip()
        citations = sorted(set(reply.citations))

        scores: dict[str, float] = {}
        problem = v.check_citations(citations, len(documents), reply.answerable, sub)
        if not problem and sub.answerable:
            problem = v.check_form(answer, sub.expects)
        if not problem and sub.answerable:
            cited = [documents[c - 1].text for c in citations]
            scores["lexical_support"] = round(v.lexical_support(answer, cited), 3)
            scores["cosine"] = round(await _max_cosine(ctx, answer, cited), 3)
            problem = v.check_grounding(scores["lexical_support"], scores["cosine"])
        if not problem and not sub.answerable:
            problem = v.check_refusal(answer)
        if problem:
            detail = ", ".join(f"{k} {v:.2f}" for k, v in scores.items())
            raise Rejected("validate", problem, detail, raw=reply.model_dump_json())

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
            "instruction_type": sub.name,
            "answerable": sub.answerable,
            "citations": citations,
            "refinement_rounds": len(refinements),
            "refinement": refinements,
            "teacher_model": ctx.teacher.model_name,
            "validator_scores": scores,
        }
        return Candidate(item=item, instruction=question, messages=messages, metadata=metadata,
                         usage=trace.usage)


async def _max_cosine(ctx: FlowContext, answer: str, passages: list[str]) -> float:
    vectors = await asyncio.to_thread(ctx.index.embedder.encode, [answer, *passages])
    return float(np.max(vectors[1:] @ vectors[0])) if len(passages) else 0.0


SKILL = RagSkill
