"""Text classification: the writer picks an excerpt of the seed and a label set; the teacher
chooses from that set only (the per-item answer schema is an enum of the task's labels, and the
validators check membership again for backends that ignore schemas) and justifies the choice in
one sentence that points at the text."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, create_model

from agents.fields import line_field
from agents.flow import FlowContext
from agents.rag.validators import check_repetition, content_words
from agents.task import Draft, TaskSkill
from agents.text_extraction.grounding import is_placeholder, normalize

Label = Annotated[str, StringConstraints(min_length=1, max_length=24)]
_TOKEN = re.compile(r"[a-z0-9]+(?:['.-][a-z0-9]+)*")
# a sentence ends at . ! or ? before a capitalised word or the end ("e.g. the" does not end one)
_SENTENCE_END = re.compile(r"[.!?]+(?=\s+[A-Z\"'(]|\s*$)")
MIN_EXCERPT_WORDS = 8
MIN_EXCERPT_OVERLAP = 0.8


class ClassificationTask(BaseModel):
    instruction: str = line_field(12, 200)
    text: str = Field(min_length=40, max_length=360)
    labels: list[Label] = Field(min_length=3, max_length=8)


class SingleLabel(BaseModel):
    justification: str = Field(min_length=10, max_length=240)
    label: str


class MultiLabel(BaseModel):
    justification: str = Field(min_length=10, max_length=240)
    labels: list[str]


def answer_model(labels: list[str], multi: bool) -> type[BaseModel]:
    """The answer's schema allows only the task's labels (an enum), so constrained decoding cannot
    leave the set; parsing accepts any string so `check_chosen` still reports a stray label."""
    enum = {"type": "string", "enum": list(labels)}
    if multi:
        return create_model("MultiLabel", __base__=MultiLabel, labels=(list[str], Field(
            min_length=1, max_length=len(labels), json_schema_extra={"items": enum})))
    return create_model("SingleLabel", __base__=SingleLabel,
                        label=(str, Field(json_schema_extra=enum)))


def chosen(answer: BaseModel) -> list[str]:
    return list(answer.labels) if hasattr(answer, "labels") else [answer.label]


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(normalize(text))


def excerpt_overlap(text: str, source: str, n: int = 4) -> float:
    """Share of the text's word n-grams that occur in the source (1.0 for a verbatim excerpt)."""
    words, src = _tokens(text), _tokens(source)
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    have = {tuple(src[i:i + n]) for i in range(len(src) - n + 1)}
    return sum(g in have for g in grams) / len(grams)


# -- validators: pure functions returning a reason, or None -------------------------------------

def check_excerpt(text: str, source: str) -> str | None:
    words = len(_tokens(text))
    if words < MIN_EXCERPT_WORDS:
        return f"text to classify is too short ({words} words)"
    share = excerpt_overlap(text, source)
    if share < MIN_EXCERPT_OVERLAP:
        return f"text to classify is not an excerpt of the source ({share:.0%} of it found)"
    return None


def check_label_set(labels: list[str], hints: list[str] | None = None,
                    kind: str = "label") -> str | None:
    """3-8 distinct, short, real labels; for polar types (sentiment, stance, intent) at least two
    labels of the expected vocabulary."""
    if not 3 <= len(labels) <= 8:
        return f"label set has {len(labels)} labels, needs 3 to 8"
    for label in labels:
        if is_placeholder(label):
            return f"label {label.strip()!r} is empty or a placeholder"
        if len(label.split()) > 4:
            return f"label {label!r} is longer than four words"
    names = [normalize(x).strip(" .") for x in labels]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        return f"duplicate label {dupes[0]!r}"
    if hints:
        fitting = [x for x in names if any(h in x for h in hints)]
        if len(fitting) < 2:
            return (f"{kind} label set has fewer than two labels like "
                    f"{', '.join(hints[:4])}")
    return None


def check_chosen(picked: list[str], labels: list[str], multi: bool) -> str | None:
    if not picked:
        return "no label chosen"
    for p in picked:
        if p not in labels:
            return f"label {p!r} is not in the label set"
    dupes = sorted({p for p in picked if picked.count(p) > 1})
    if dupes:
        return f"duplicate label {dupes[0]!r}"
    if not multi and len(picked) != 1:
        return f"single-label task got {len(picked)} labels"
    if multi and len(picked) == len(labels):
        return "multi-label answer chose every label"
    return None


def check_justification(justification: str, text: str, picked: list[str]) -> str | None:
    """One sentence that points at the text: it shares a content word with the text beyond the
    label names."""
    body = justification.strip()
    if len(body.split()) < 5:
        return "justification is shorter than five words"
    sentences = len(_SENTENCE_END.findall(body)) or 1
    if sentences > 1:
        return f"justification has {sentences} sentences, not one"
    own = content_words(body) - set().union(*(content_words(p) for p in picked))
    if not own & content_words(text):
        return "justification does not point at the text"
    return check_repetition(body)


class TextClassificationSkill(TaskSkill):
    task_model = ClassificationTask

    @staticmethod
    def multi(draft: Draft) -> bool:
        return draft.sub.params.get("mode") == "multi"

    def instruction_text(self, draft: Draft) -> str:
        task: ClassificationTask = draft.task
        return f"{task.instruction}\nLabels: {', '.join(task.labels)}\n{task.text}"

    def check_task(self, draft: Draft) -> str | None:
        task: ClassificationTask = draft.task
        return (super().check_task(draft)
                or check_label_set(task.labels, draft.sub.params.get("hints"),
                                   draft.sub.name.replace("_", " "))
                or check_excerpt(task.text, draft.passage))

    def answer_schema(self, draft: Draft) -> type[BaseModel]:
        return answer_model(draft.task.labels, self.multi(draft))

    async def validate(self, ctx: FlowContext, draft: Draft) -> str | None:
        task: ClassificationTask = draft.task
        picked = chosen(draft.answer)
        draft.scores["excerpt_overlap"] = excerpt_overlap(task.text, draft.passage)
        draft.extra["labels"] = list(task.labels)
        draft.extra["chosen"] = picked
        draft.extra["multi_label"] = self.multi(draft)
        return (check_chosen(picked, task.labels, self.multi(draft))
                or check_justification(draft.answer.justification, task.text, picked))


SKILL = TextClassificationSkill
