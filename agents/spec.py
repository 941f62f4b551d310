"""A skill's data: its taxonomy, transformations and refinement goals, read from skill.toml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class Subcategory(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    description: str = Field(min_length=10)
    answerable: bool = True
    passages: int = Field(1, ge=1, le=3, description="seed passages the question is written from")
    expects: str = Field("any", description="answer form the skill's validators check")
    asks: str | None = Field(None, description="regular expression (case-insensitive) that an "
                             "instruction of this type contains: a cheap check that a question "
                             "is of its type, before its answer is paid for")
    weight: float = Field(1.0, gt=0)
    params: dict[str, Any] = Field(default_factory=dict, description="skill-specific knobs")

    @field_validator("asks")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"asks is not a regular expression: {exc}") from None
        return value

    def off_type(self, instruction: str) -> str | None:
        """Why an instruction is not of this type, or None (see `asks`)."""
        if self.asks and not re.search(self.asks, instruction, re.IGNORECASE):
            return f"question is not a {self.name.replace('_', ' ')} question"
        return None


class Transformation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    description: str
    template: str | None = None  # None: the seed passes through unchanged (identity)
    weight: float = Field(1.0, gt=0)


class Shown(BaseModel):
    """What a demonstration shows for one type: its subject and its question, and optionally
    the answer step's reply to that question (in the skill's own reply shape, which the skill
    checks when it loads). A task skill whose task is more than a question (options and their
    key, a verdict's key) gives the whole task object as `task`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    about: str = Field(min_length=1)
    question: str = Field(min_length=12)
    answer: dict[str, Any] | None = None
    task: dict[str, Any] | None = None


class Demonstrations(BaseModel):
    """Worked examples shown to the teacher as an earlier turn of the conversation: the instruct
    prompt written from these passages, then a good reply for the item's type. Measured on the
    135M teacher: it follows a reply it is shown far better than one that is described (more
    questions pass the cheap checks, in a third of the tokens)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    passages: list[str] = Field(min_length=1, max_length=3)
    # words only the demonstration has (its names): a question that uses one its own source
    # lacks copied the example instead of asking about its source
    telltales: list[str] = Field(min_length=1)
    questions: dict[str, Shown] = Field(min_length=1)

    def copied(self, instruction: str, sources: list[str]) -> bool:
        """Whether the instruction uses a telltale that its own sources do not have."""
        text, source = instruction.lower(), " ".join(sources).lower()
        return any(w.lower() in text and w.lower() not in source for w in self.telltales)


class SkillSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    split: str
    description: str
    system_prompt: str
    transformations: list[Transformation] = Field(min_length=1)
    taxonomy: list[Subcategory] = Field(min_length=1)
    refinement_goals: list[str] = Field(min_length=1)
    seeds: Literal["any", "code", "prose"] = Field(
        "any", description="preferred seed chunks; all chunks when the corpus has none of them")
    tools: list[Literal["calculator", "python", "search"]] = Field(
        default_factory=list, description="tools the teacher may call while answering")
    multi_turn: bool = False
    answer_temperature: float = Field(0.2, ge=0, le=2, description="the temperature of the "
                                      "teacher's answers unless the run sets one")
    round_trip: bool = Field(False, description="retrieval round-trip filter on by default: the "
                             "instruction must retrieve its own seed chunk")
    transform_fallback: bool = Field(
        False, description="a transformation the teacher fails (cut off past salvage, looping, "
        "unparsable) is asked once and the seed passes on unchanged, instead of ending the item; "
        "for skills whose types do not need the transformed form")
    demonstrations: Demonstrations | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> SkillSpec:
        for kind, names in (("subcategory", [s.name for s in self.taxonomy]),
                            ("transformation", [t.name for t in self.transformations])):
            dupes = {n for n in names if names.count(n) > 1}
            if dupes:
                raise ValueError(f"duplicate {kind} names: {sorted(dupes)}")
        if demo := self.demonstrations:
            names = {s.name: s for s in self.taxonomy}
            if unknown := sorted(set(demo.questions) - set(names)):
                raise ValueError(f"demonstrations for unknown subcategories: {unknown}")
            if short := sorted(n for n in demo.questions if names[n].passages > len(demo.passages)):
                raise ValueError(f"demonstrations for {short} need more passages than the "
                                 f"{len(demo.passages)} given")
        return self

    def subcategory(self, name: str) -> Subcategory:
        return next(s for s in self.taxonomy if s.name == name)

    def transformation(self, name: str) -> Transformation:
        return next(t for t in self.transformations if t.name == name)


def load_spec(folder: Path) -> SkillSpec:
    path = folder / "skill.toml"
    try:
        return SkillSpec.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ValueError(f"invalid skill definition {path}: {exc}") from exc
