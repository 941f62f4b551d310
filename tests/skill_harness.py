"""Helpers for skill tests: a scripted teacher that answers any JSON schema with valid values
(built from the prompt's own words, so grounding checks can pass), with per-test overrides, and
a one-call runner for a skill over a corpus with the real embedder, FAISS and files."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

from engine.config import RunConfig
from engine.progress import Progress
from engine.run import run
from models import ChatMessage
from tests.fakes import ScriptedTeacher

Override = Callable[[str, dict], dict | None]  # (prompt, schema) -> reply object, or None


def _resolve(schema: dict, root: dict) -> dict:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = root["$defs"][name]
    return schema


def schema_instance(schema: dict, words: list[str], root: dict | None = None,
                    offset: int = 0) -> object:
    """A value that validates against `schema`, with strings made of `words`."""
    root = root or schema
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return schema_instance(schema[key][0], words, root, offset)
    kind = schema.get("type", "object")
    if kind == "object":
        value = {name: schema_instance(sub, words, root, offset + 7 * i)
                 for i, (name, sub) in enumerate(schema.get("properties", {}).items())}
        if isinstance(value.get("question"), str):  # a question field holds a question
            hi = _resolve(schema["properties"]["question"], root).get("maxLength", 200)
            value["question"] = value["question"][:hi - 1].rstrip() + "?"
        return value
    if kind == "array":
        n = max(schema.get("minItems", 1), min(2, schema.get("maxItems", 2)))
        return [schema_instance(schema.get("items", {"type": "string"}), words, root,
                                offset + 5 * i) for i in range(n)]
    if kind == "integer":
        return max(schema.get("minimum", 1), min(1, schema.get("maximum", 1)))
    if kind == "number":
        return float(schema.get("minimum", 1.0))
    if kind == "boolean":
        return True
    lo, hi = schema.get("minLength", 1), schema.get("maxLength", 200)
    pool = words or ["text"]
    text, i = "", offset
    while len(text) < max(lo, min(60, hi)):
        text = (text + " " + pool[i % len(pool)]).strip()
        i += 1
    return text[:hi]


_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{2,}")


def prompt_words(prompt: str) -> list[str]:
    return _WORD.findall(prompt.split('"""')[1] if prompt.count('"""') >= 2 else prompt)


def skill_teacher(override: Override | None = None, slots: int = 2) -> ScriptedTeacher:
    counter = itertools.count()

    def reply(messages: list[ChatMessage], schema: dict | None) -> str:
        prompt = messages[-1].content
        value = override(prompt, schema or {}) if override else None
        if value is None:
            value = schema_instance(schema or {"type": "object"}, prompt_words(prompt),
                                    offset=next(counter) * 3)
        return json.dumps(value)

    return ScriptedTeacher(reply, slots=slots)


def opener(teacher):
    @asynccontextmanager
    async def open_(settings, say):
        yield teacher
    return open_


def run_skill(skill: str, corpus: Path, out: Path, teacher: ScriptedTeacher, num: int = 2,
              **config) -> tuple[dict, list[dict], list[dict]]:
    """Run `skill` to `num` records; returns (summary, accepted records, rejections)."""
    cfg = RunConfig.model_validate({"skill": skill, "input": corpus, "out": out, "num": num,
                                    "max_attempts": config.pop("max_attempts", num * 10),
                                    **config})
    summary = asyncio.run(run(cfg, Progress(quiet=True), opener(teacher)))
    read = lambda name: [json.loads(x) for x in (out / name).read_text().splitlines()] \
        if (out / name).exists() else []
    return summary, read("data.jsonl"), read("rejected.jsonl")
