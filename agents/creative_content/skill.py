"""Creative content: a writing task whose form constraints are structured fields (lines, stanzas,
rhyme, word limits, keywords, forbidden words, title, acrostic word, cast), a piece written to
it, and a check in code for every constraint the task states.

The task schema is built per subcategory from its params: a fixed constraint is a `Literal` the
writer must copy, a range an int the writer picks (the prompt's JSON shape shows a value drawn
from the item's seed, so tasks vary even when the tiny teacher copies the shape). The answer
schema is built per task: verse and scripts reply line by line (exactly the lines asked for, so
the JSON can close in time); the validators still count lines on the finished piece, because a
line item may hold line breaks and a URL backend may ignore schemas.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, create_model

from agents.creative_content import validators as v
from agents.fields import line_field
from agents.flow import FlowContext
from agents.rag.validators import check_repetition
from agents.spec import Subcategory
from agents.task import Draft, TaskSkill

Term = Annotated[str, StringConstraints(min_length=1, max_length=30)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=20)]
RHYME_TEXT = {"couplets": "rhyming couplets (AABB...)", "alternate": "alternate rhyme (ABAB)",
              "AABBA": "rhyme scheme AABBA"}
LINE_WIDTH = {"verse": 80, "script": 110}


def _bounds(spec: int | list[int]) -> tuple[int, int]:
    return (spec, spec) if isinstance(spec, int) else (spec[0], spec[1])


def _int_field(spec: int | list[int]) -> tuple[Any, Any]:
    if isinstance(spec, int):
        return Literal[spec], ...
    lo, hi = spec
    return int, Field(ge=lo, le=hi)


def _choice_field(spec: str | list[str]) -> tuple[Any, Any]:
    return Literal[spec if isinstance(spec, str) else tuple(spec)], ...


def task_model(sub: Subcategory) -> type[BaseModel]:
    """The task's JSON shape for one subcategory. The instruction comes first: the tiny teacher
    writes it right after reading the type's description (written last, it was junk); that it
    agrees with the numbers that follow is checked (`check_stated_counts`)."""
    p = sub.params
    fields: dict[str, Any] = {"instruction": (str, line_field(20, 400))}
    lo, hi = p["keywords"]
    fields["keywords"] = (list[Term], Field(min_length=lo, max_length=hi))
    if p.get("acrostic"):
        fields["acrostic"] = (str, Field(min_length=3, max_length=8))
    if "speakers" in p:
        lo, hi = p["speakers"]
        fields["speakers"] = (list[Name], Field(min_length=lo, max_length=hi))
    for name in ("lines", "stanzas"):
        if name in p:
            fields[name] = _int_field(p[name])
    if "rhyme" in p:
        fields["rhyme"] = _choice_field(p["rhyme"])
    for name in ("min_words", "max_words"):
        if name in p:
            fields[name] = _int_field(p[name])
    if p.get("title") == "choice":
        fields["title"] = (bool, ...)
    lo, hi = p.get("forbidden", [0, 0])
    if hi:
        fields["forbidden"] = (list[Term], Field(min_length=lo, max_length=hi))
    return create_model("".join(w.title() for w in sub.name.split("_")) + "Task", **fields)


def line_count(task: BaseModel) -> int | None:
    word = getattr(task, "acrostic", None)
    return len(word) if word else getattr(task, "lines", None)


def constraint_list(task: BaseModel, params: dict[str, Any]) -> list[str]:
    """The task's constraints as the student reads them (and as refinement compares them)."""
    g = lambda name: getattr(task, name, None)  # noqa: E731
    out: list[str] = []
    if speakers := g("speakers"):
        out.append(f"a dialogue between {', '.join(speakers[:-1])} and {speakers[-1]}; every line "
                   "starts with the speaker's name and a colon")
    if (n := line_count(task)) is not None:
        out.append(f"exactly {n} lines" + (" of dialogue" if speakers else ""))
    if word := g("acrostic"):
        out.append(f"the first letters of the lines spell {word.upper()}")
    if (stanzas := g("stanzas")) is not None:
        out.append("one stanza" if stanzas == 1 else f"{stanzas} stanzas separated by blank lines")
    if (rhyme := g("rhyme")) in RHYME_TEXT:
        out.append(RHYME_TEXT[rhyme])
    if params["form"] == "line":
        out.append("a single line")
    lo, hi = g("min_words"), g("max_words")
    if lo is not None and hi is not None:
        out.append(f"between {lo} and {hi} words")
    elif hi is not None:
        out.append(f"at most {hi} words")
    for k in g("keywords") or []:
        out.append(f"use the {'phrase' if len(k.split()) > 1 else 'word'} '{k.strip()}'")
    for f in g("forbidden") or []:
        out.append(f"do not use the word '{f.strip()}'")
    if g("title"):
        out.append(f"give it a {params.get('title_label', 'title')}")
    return out


def answer_model(task: BaseModel, params: dict[str, Any]) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    if getattr(task, "title", False):
        fields["title"] = (str, Field(min_length=1, max_length=80))
    form = params["form"]
    if form in LINE_WIDTH:
        n = line_count(task) or 1
        line = Annotated[str, StringConstraints(min_length=1, max_length=LINE_WIDTH[form])]
        stanzas = getattr(task, "stanzas", None)
        if stanzas and stanzas > 1:
            stanza = Annotated[list[line], Field(min_length=1, max_length=n)]
            fields["stanzas"] = (list[stanza], Field(min_length=stanzas, max_length=stanzas))
        else:
            fields["lines"] = (list[line], Field(min_length=n, max_length=n))
    else:
        lo, hi = getattr(task, "min_words", None) or 1, task.max_words
        fields["text"] = (str, Field(min_length=max(2, 3 * lo), max_length=min(1000, 8 * hi + 20)))
    return create_model("Piece", **fields)


@dataclass
class Piece:
    """A finished piece, normalised: a line item holding line breaks counts as several lines."""

    title: str
    stanzas: list[list[str]]
    text: str

    @property
    def lines(self) -> list[str]:
        return [line for stanza in self.stanzas for line in stanza]


def piece_of(answer: BaseModel) -> Piece:
    title = (getattr(answer, "title", None) or "").strip()
    if hasattr(answer, "text"):
        text = answer.text.strip()
        return Piece(title, [[x.strip() for x in text.splitlines() if x.strip()]], text)
    groups = answer.stanzas if hasattr(answer, "stanzas") else [answer.lines]
    stanzas = [[part.strip() for item in g for part in item.strip().split("\n")]
               for g in groups]
    return Piece(title, stanzas, "\n\n".join("\n".join(s) for s in stanzas))


def check_task_fields(task: BaseModel, params: dict[str, Any], passage: str) -> str | None:
    """Every cheap check of a task: a real request for this form, on the seed's subject, with
    constraints that are well formed and can be met together."""
    g = lambda name: getattr(task, name, None)  # noqa: E731
    keywords, forbidden = g("keywords") or [], g("forbidden") or []
    counts = {"line": line_count(task), "stanza": g("stanzas"), "min_words": g("min_words"),
              "max_words": g("max_words")}
    return (v.check_request(task.instruction, params.get("form_words", []))
            or v.check_on_topic(task.instruction, keywords, passage)
            or v.check_stated_counts(task.instruction, counts)
            or (v.check_acrostic_word(g("acrostic")) if g("acrostic") is not None else None)
            or (v.check_speaker_names(g("speakers")) if g("speakers") else None)
            or v.check_terms(keywords, forbidden, g("speakers") or [])
            or v.check_form_fits(line_count(task), g("stanzas"), g("rhyme"), g("min_words"),
                                 g("max_words"), keywords)
            or check_repetition(task.instruction))


def check_piece(task: BaseModel, params: dict[str, Any], piece: Piece,
                sources: list[str]) -> str | None:
    """Every constraint the task states, checked against the finished piece."""
    g = lambda name: getattr(task, name, None)  # noqa: E731
    form, lines = params["form"], piece.lines
    whole = f"{piece.title}\n{piece.text}"
    checks = []
    if form in LINE_WIDTH:
        checks += [lambda: v.check_no_empty_lines(lines),
                   lambda: v.check_line_count(lines, line_count(task))]
    if (stanzas := g("stanzas")) is not None:
        checks.append(lambda: v.check_stanza_count(piece.stanzas, stanzas))
    if g("acrostic"):
        checks.append(lambda: v.check_acrostic(lines, g("acrostic")))
    if g("speakers"):
        checks.append(lambda: v.check_speakers(lines, g("speakers")))
    if "line_words" in params:
        checks.append(lambda: v.check_line_length(lines, params["line_words"]))
    if g("rhyme"):
        checks.append(lambda: v.check_rhyme(lines, g("rhyme")))
    if form == "line":
        checks.append(lambda: v.check_single_line(piece.text))
    # a keyword must be used in what is written, not met by a speaker's label
    spoken = "\n".join(m.group(2) if (m := v.SPEAKER.match(line)) else line for line in lines) \
        if form == "script" else piece.text
    checks += [lambda: v.check_word_count(piece.text, g("min_words"), g("max_words")),
               lambda: v.check_keywords(f"{piece.title}\n{spoken}", g("keywords") or []),
               lambda: v.check_forbidden(whole, g("forbidden") or [])]
    if g("title"):
        checks.append(lambda: v.check_title(piece.title, lines))
    checks += [lambda: v.check_not_copied(whole, sources),
               lambda: v.check_repeated_lines(lines),
               lambda: check_repetition(piece.text)]
    return next((problem for check in checks if (problem := check())), None)


class CreativeContentSkill(TaskSkill):
    def __init__(self, folder) -> None:
        super().__init__(folder)
        self._task_models = {s.name: task_model(s) for s in self.spec.taxonomy}

    def task_schema(self, sub: Subcategory) -> type[BaseModel]:
        return self._task_models[sub.name]

    def answer_schema(self, draft: Draft) -> type[BaseModel]:
        return answer_model(draft.task, draft.sub.params)

    def instruction_text(self, draft: Draft) -> str:
        # the request and its constraints: two haiku tasks on one subject differ in these
        return self.user_turn(draft)

    def check_task(self, draft: Draft) -> str | None:
        """Cheap checks; for a refinement edit (a previous version was accepted) also that it
        keeps every constraint and adds one. The accepted version's constraints are kept in
        `extra` (they are the record's metadata too)."""
        task = draft.task
        if problem := check_task_fields(task, draft.sub.params, draft.passage):
            return problem
        now = constraint_list(task, draft.sub.params)
        before = draft.extra.get("constraints")
        if before is not None and (problem := v.check_adds_constraints(
                [c.lower() for c in before], [c.lower() for c in now])):
            return problem
        draft.extra["constraints"] = now
        return None

    async def validate(self, ctx: FlowContext, draft: Draft) -> str | None:
        params, piece = draft.sub.params, piece_of(draft.answer)
        draft.scores["words"] = len(v.words(piece.text))
        draft.scores["lines"] = len(piece.lines)
        draft.extra["form"] = params["form"]
        return check_piece(draft.task, params, piece, [draft.passage, draft.task.instruction])

    def _values(self, draft: Draft) -> dict[str, Any]:
        values = super()._values(draft)
        params = draft.sub.params
        rng = random.Random(draft.item.seed)
        values |= {"task_help": task_help(params), "task_shape": task_shape(params, rng)}
        if draft.task is not None:
            values |= {"constraints": constraint_list(draft.task, params),
                       "answer_help": answer_help(draft.task, params),
                       "answer_shape": answer_shape(draft.task, params)}
        if draft.answer is not None:
            values["piece"] = piece_of(draft.answer)
        return values


# -- prompt helpers: the JSON shapes carry "..." for text, never copyable content -------------

def _fits(lines: int, rhyme: str | None) -> bool:
    return not ((rhyme == "couplets" and lines % 2) or (rhyme == "alternate" and lines % 4))


def task_shape(params: dict[str, Any], rng: random.Random) -> str:
    """The task's JSON shape with numbers, choices and list sizes drawn from the item's seed
    (consistent with each other), strings as "..."."""
    shape: dict[str, Any] = {"instruction": "...",
                             "keywords": ["..."] * rng.randint(*params["keywords"])}
    if params.get("acrostic"):
        shape["acrostic"] = "..."
    if "speakers" in params:
        shape["speakers"] = ["..."] * rng.randint(*params["speakers"])
    rhyme = params.get("rhyme")
    rhyme = rng.choice(rhyme) if isinstance(rhyme, list) else rhyme
    if "lines" in params:
        lo, hi = _bounds(params["lines"])
        shape["lines"] = rng.choice([n for n in range(lo, hi + 1) if _fits(n, rhyme)] or [lo])
    if "stanzas" in params:
        lo, hi = _bounds(params["stanzas"])
        n = shape.get("lines", 1)
        shape["stanzas"] = rng.choice([s for s in range(lo, hi + 1) if s == 1 or n >= 2 * s])
    if rhyme is not None:
        shape["rhyme"] = rhyme
    for name in ("min_words", "max_words"):
        if name in params:
            shape[name] = rng.randint(*_bounds(params[name]))
    if params.get("title") == "choice":
        shape["title"] = rng.random() < 0.5
    lo, hi = params.get("forbidden", [0, 0])
    if hi:
        shape["forbidden"] = ["..."] * rng.randint(lo, hi)
    return json.dumps(shape)


def task_help(params: dict[str, Any]) -> list[str]:
    form = params.get("form_words", ["piece"])[0]
    out = [f"instruction: a request that begins with the word Write, asks for a {form} and "
           "names its subject"]
    out.append("keywords: words taken from the source, which the piece must use")
    if params.get("acrostic"):
        out.append("acrostic: one word of 3 to 8 letters from the source; the first letters of "
                   "the lines spell it")
    if "speakers" in params:
        out.append("speakers: the first names of the characters who speak")
    for name, what in (("lines", "the exact number of lines"), ("stanzas", "how many stanzas"),
                       ("min_words", "the least number of words"),
                       ("max_words", "the largest number of words")):
        if name in params:
            lo, hi = _bounds(params[name])
            out.append(f"{name}: {what}" + (f", from {lo} to {hi}" if lo != hi else f", {lo}"))
    if isinstance(params.get("rhyme"), list):
        out.append(f"rhyme: the rhyme scheme, one of {', '.join(params['rhyme'])}")
    elif "rhyme" in params:
        out.append(f"rhyme: the rhyme scheme, {params['rhyme']}")
    if params.get("title") == "choice":
        out.append(f"title: true if the piece must have a {params.get('title_label', 'title')}")
    if params.get("forbidden", [0, 0])[1]:
        out.append("forbidden: common words the piece must not use, never one of the keywords")
    return out


def answer_shape(task: BaseModel, params: dict[str, Any]) -> str:
    shape: dict[str, Any] = {}
    if getattr(task, "title", False):
        shape["title"] = "..."
    if params["form"] in LINE_WIDTH:
        n, stanzas = line_count(task) or 1, getattr(task, "stanzas", None) or 1
        if stanzas > 1:
            sizes = [n // stanzas + (i < n % stanzas) for i in range(stanzas)]
            shape["stanzas"] = [["..."] * k for k in sizes]
        else:
            shape["lines"] = ["..."] * n
    else:
        shape["text"] = "..."
    return json.dumps(shape)


def answer_help(task: BaseModel, params: dict[str, Any]) -> list[str]:
    form = params.get("form_words", ["piece"])[0]
    out = []
    if params["form"] == "script":
        out.append("Each item of \"lines\" is one line of dialogue: a speaker's name, a colon, "
                   "then what they say.")
    elif params["form"] == "verse":
        out.append(f"Each item is one line of the {form}.")
    if word := getattr(task, "acrostic", None):
        out.append("Line " + ", line ".join(f"{i} starts with {c}" for i, c in
                                            enumerate(word.upper(), 1)) + ".")
    if (rhyme := getattr(task, "rhyme", None)) in RHYME_TEXT:
        groups = v.rhyme_groups(rhyme, line_count(task) or 0)
        for g in groups:
            nums = [str(i + 1) for i in g]
            out.append(f"The last words of lines {', '.join(nums[:-1])} and {nums[-1]} rhyme.")
    return out


SKILL = CreativeContentSkill
