"""Text extraction: the writer sets a small target schema (field names, descriptions, kinds), the
teacher fills it from the text, and an item is kept only when the answer has exactly those fields,
every value is written in the text, and something was found."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from agents.fields import line_field
from agents.flow import FlowContext
from agents.rag.validators import check_repetition, content_words
from agents.task import Draft, TaskSkill
from agents.text_extraction.grounding import is_placeholder, normalize, occurs

Kind = Literal["text", "date", "number", "list", "pairs", "rows"]
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_FIELDS = 4


class FieldSpec(BaseModel):
    name: str = Field(min_length=1, max_length=32)
    description: str = Field(min_length=3, max_length=80)
    kind: Kind


class ExtractionTask(BaseModel):
    instruction: str = line_field(12, 200)
    fields: list[FieldSpec] = Field(min_length=1, max_length=MAX_FIELDS)


Phrase = Annotated[str, StringConstraints(max_length=30)]
Cell = Annotated[str, StringConstraints(max_length=24)]
NESTED = ("pairs", "rows")  # at most one such field per task, so the answer fits max_tokens
# the JSON type of each kind and its most items, bounded so four fields close within max_tokens
KIND_TYPES: dict[str, tuple[Any, int | None]] = {
    "text": (Annotated[str, StringConstraints(max_length=60)], None),
    "date": (Annotated[str, StringConstraints(max_length=24)], None),
    "number": (float | None, None),
    "list": (list[Phrase], 4),
    "pairs": (list[Annotated[list[Cell], Field(min_length=2, max_length=2)]], 3),
    "rows": (list[Annotated[list[Cell], Field(min_length=2, max_length=3)]], 3),
}
KIND_SHAPES = {"text": '"..."', "date": '"..."', "number": "0", "list": '["..."]',
               "pairs": '[["...", "..."]]', "rows": '[["...", "...", "..."]]'}
KIND_HELP = {"text": "a short phrase", "date": "a date as written", "number": "a number or null",
             "list": "a list of phrases", "pairs": "a list of [first, second] pairs",
             "rows": "a list of rows, each a list of cells"}


def answer_model(fields: list[FieldSpec]) -> type[BaseModel]:
    """The answer's shape for one task: exactly the task's fields, each typed by its kind.

    The schema requires every field and forbids others, so constrained decoding produces them;
    parsing is lenient (a field may be missing, extras are kept) so that an unconstrained backend's
    mistakes reach `check_exact_fields` with a precise reason instead of a parse error."""
    names = [f.name for f in fields]

    def schema_extra(schema: dict[str, Any]) -> None:
        schema["required"] = names
        schema["additionalProperties"] = False
        for prop in schema.get("properties", {}).values():
            prop.pop("default", None)

    definitions: dict[str, Any] = {}
    for i, f in enumerate(fields):
        kind_type, most = KIND_TYPES[f.kind]
        bound = {} if most is None else {"max_length": most}
        definitions[f"f{i}"] = (kind_type, Field(None, alias=f.name, **bound))
    return create_model("Extraction", __config__=ConfigDict(
        extra="allow", serialize_by_alias=True, json_schema_extra=schema_extra),
                        **definitions)


def extracted(answer: BaseModel, fields: list[FieldSpec]) -> dict[str, Any]:
    """The fields the answer actually holds (by their names), extras included."""
    given = {f.name: getattr(answer, f"f{i}") for i, f in enumerate(fields)
             if f"f{i}" in answer.model_fields_set}
    return given | dict(answer.model_extra or {})


def answer_shape(fields: list[FieldSpec]) -> str:
    return "{" + ", ".join(f'"{f.name}": {KIND_SHAPES[f.kind]}' for f in fields) + "}"


# -- validators: pure functions returning a reason, or None ---------------------------------------

def check_field_specs(task: ExtractionTask, kinds: list[str]) -> str | None:
    """The target schema is usable: snake_case distinct names, real descriptions, and a field of
    the kind the subcategory is about."""
    names = [f.name for f in task.fields]
    for f in task.fields:
        if not IDENTIFIER.match(f.name):
            return f"field name {f.name!r} is not a snake_case identifier"
        if is_placeholder(f.description) or len(content_words(f.description)) < 1:
            return f"field {f.name!r} has no real description"
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        return f"duplicate field name {dupes[0]!r}"
    if kinds and not any(f.kind in kinds for f in task.fields):
        return f"no field of kind {' or '.join(kinds)}"
    if sum(f.kind in NESTED for f in task.fields) > 1:
        return "more than one pairs or rows field"
    return None


def check_exact_fields(values: dict[str, Any], names: list[str]) -> str | None:
    missing = [n for n in names if n not in values]
    if missing:
        return f"missing field {missing[0]!r}"
    extra = [n for n in values if n not in names]
    if extra:
        return f"unexpected field {extra[0]!r}"
    return None


def _items(value: Any) -> list[Any]:
    """The atomic values inside a field's value (list items, pair and row cells)."""
    if isinstance(value, list):
        return [x for v in value for x in _items(v)]
    return [] if value is None else [value]


def check_shapes(values: dict[str, Any], fields: list[FieldSpec]) -> str | None:
    """Each value has its kind's form (the schema enforces most of this; an unconstrained backend
    does not)."""
    for f in fields:
        value = values.get(f.name)
        if f.kind in ("text", "date"):
            if not isinstance(value, str):
                return f"field {f.name!r} should be a string"
            if f.kind == "date" and value.strip() and not re.search(r"\d", value):
                return f"date field {f.name!r} holds no digit"
        elif f.kind == "number":
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                return f"field {f.name!r} should be a number or null"
        else:
            if not isinstance(value, list):
                return f"field {f.name!r} should be a list"
            if f.kind in ("pairs", "rows"):
                if any(not isinstance(v, list) for v in value):
                    return f"field {f.name!r} should hold lists"
                if f.kind == "pairs" and any(len(v) != 2 for v in value):
                    return f"field {f.name!r} has an item that is not a pair"
                if len({len(v) for v in value}) > 1:
                    return f"rows of field {f.name!r} differ in width"
            keys = [json.dumps([normalize(x) for x in _items(v)]) for v in value]
            for k in keys:
                if keys.count(k) > 1:
                    return f"duplicate item in field {f.name!r}"
    return None


def check_values_in_text(values: dict[str, Any], text: str) -> str | None:
    """Every extracted value is written in the text (empty values mean "not stated")."""
    for name, value in values.items():
        for item in _items(value):
            if isinstance(item, str) and not item.strip():
                continue
            if isinstance(item, str) and is_placeholder(item):
                return f"field {name!r} holds a placeholder {item.strip()!r}"
            if isinstance(item, float) and item.is_integer():
                item = int(item)
            if not occurs(item, text):
                return f"value {str(item)[:40]!r} of field {name!r} does not occur in the text"
    return None


def check_not_empty(values: dict[str, Any]) -> str | None:
    if not any(isinstance(x, int | float) or str(x).strip() for v in values.values()
               for x in _items(v)):
        return "every field is empty"
    return None


def plain(value: Any) -> Any:
    """Numbers as the text would write them: 3357.0 → 3357."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


class TextExtractionSkill(TaskSkill):
    task_model = ExtractionTask

    def instruction_text(self, draft: Draft) -> str:
        task: ExtractionTask = draft.task
        return task.instruction + "\n" + "\n".join(
            f"{f.name}: {f.description}" for f in task.fields)

    def check_task(self, draft: Draft) -> str | None:
        return (super().check_task(draft)
                or check_field_specs(draft.task, draft.sub.params.get("kinds", [])))

    def answer_schema(self, draft: Draft) -> type[BaseModel]:
        return answer_model(draft.task.fields)

    async def validate(self, ctx: FlowContext, draft: Draft) -> str | None:
        task: ExtractionTask = draft.task
        values = extracted(draft.answer, task.fields)
        items = [x for v in values.values() for x in _items(v)
                 if not (isinstance(x, str) and not x.strip())]
        draft.scores["values_in_text"] = (
            sum(occurs(plain(x), draft.passage) for x in items) / len(items) if items else 0.0)
        draft.extra["extraction"] = plain(values)
        draft.extra["schema"] = [f.model_dump() for f in task.fields]
        return (check_exact_fields(values, [f.name for f in task.fields])
                or check_shapes(values, task.fields)
                or check_not_empty(values)
                or check_values_in_text(values, draft.passage)
                or check_repetition(json.dumps(plain(values))))

    def assistant_turn(self, draft: Draft) -> str:
        values = extracted(draft.answer, draft.task.fields)
        return json.dumps(plain(values), indent=2, ensure_ascii=False)

    def _values(self, draft: Draft) -> dict[str, Any]:
        values = super()._values(draft) | {"kind_help": KIND_HELP}
        if draft.task is not None:
            values["shape"] = answer_shape(draft.task.fields)
        return values


SKILL = TextExtractionSkill
