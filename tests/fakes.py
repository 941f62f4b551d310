"""A scripted teacher: a real Teacher backend that answers from a function and records prompts."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Sequence

from models import ChatMessage, Completion


class ScriptedTeacher:
    model_name = "scripted"

    def __init__(self, reply: Callable[[list[ChatMessage], dict | None], str], slots: int = 4,
                 gate: asyncio.Event | None = None) -> None:
        self.reply = reply
        self.slots = slots
        self.prompts: list[list[ChatMessage]] = []
        self.temperatures: list[float] = []  # each call's, in the order of `prompts`
        self.seed: int | None = None  # the seed of the call being answered, for `reply` to read
        self.in_flight = 0
        self.max_in_flight = 0
        self._limit = asyncio.Semaphore(slots)
        self._gate = gate

    async def chat(self, messages: Sequence[ChatMessage], *, schema: dict | None = None,
                   max_tokens: int = 256, temperature: float = 0.7,
                   seed: int | None = None, stop: Sequence[str] = ()) -> Completion:
        async with self._limit:
            self.prompts.append(list(messages))
            self.temperatures.append(temperature)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if self._gate is not None:
                    await self._gate.wait()
                await asyncio.sleep(0)  # let other calls interleave, as a server would
                self.seed = seed
                text = self.reply(list(messages), schema)
            finally:
                self.in_flight -= 1
        # as a server does: the reply ends before the first stop string, which is not returned
        cuts = [text.find(s) for s in stop if s in text]
        text = text[:min(cuts)] if cuts else text
        return Completion(text=text, finish_reason="stop", prompt_tokens=len(messages[-1].content) // 4,
                          completion_tokens=max(1, len(text) // 4), model=self.model_name)

    async def aclose(self) -> None:
        pass


def rag_replies(question_for: Callable[[str], str] | None = None):
    """Valid replies for every RAG step; the question text can depend on the prompt."""

    def reply(messages: list[ChatMessage], schema: dict | None) -> str:
        prompt = messages[-1].content
        props = (schema or {}).get("properties", {})
        if "suggestions" in props:
            return json.dumps({"suggestions": ["Name the exact quantity asked for."]})
        if props.get("answerable", {}).get("const") is False:  # an unanswerable type: refuse
            return json.dumps({"answerable": False, "citations": [],
                               "answer": "The documents do not contain the answer to this."})
        if "answerable" in props:
            # answer with words of the document nearest the question and cite it: grounded and
            # on the question by construction, wherever retrieval and shuffling put it
            n, text = nearest_document(prompt)
            return json.dumps({"answerable": True, "answer": " ".join(text.split()[:12]),
                               "citations": [n]})
        if "text" in props:
            return json.dumps({"text": prompt[-300:]})
        if "\nRewrite the question" in prompt:  # the editor keeps the question as it is
            return json.dumps({"question": prompt.split("\nQuestion: ", 1)[1].split("\n", 1)[0]})
        question = question_for(prompt) if question_for else "What does the volcano text describe?"
        return json.dumps({"question": question})

    return reply


_DOCUMENT = re.compile(r"^Document \[(\d+)\] \([^)\n]*\):\n", re.MULTILINE)


def nearest_document(prompt: str) -> tuple[int, str]:
    """The number and text of the answer prompt's document that shares most words with its
    question (the first of those tied)."""
    documents, question = prompt.split("\nQuestion: ", 1)
    words = lambda text: set(re.findall(r"[a-z0-9]+", text.lower()))  # noqa: E731
    parts = _DOCUMENT.split(documents)[1:]  # number, text, number, text, ...
    found = [(int(parts[i]), parts[i + 1].strip()) for i in range(0, len(parts), 2)]
    asked = words(question.split("\n", 1)[0])
    return max(found, key=lambda d: (len(asked & words(d[1])), -d[0]))


def answers_yes(base):
    """A scripted teacher's replies whose answers start with "Yes," (a yes/no answer's form)."""
    def reply(messages: list[ChatMessage], schema: dict | None) -> str:
        text = base(messages, schema)
        if "answerable" in (schema or {}).get("properties", {}):
            value = json.loads(text)
            return json.dumps({**value, "answer": "Yes, " + value["answer"]})
        return text
    return reply
