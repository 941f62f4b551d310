"""Text modification: an instruction plus an input text, answered with the modified text.

The flow cuts the input text from the (transformed) seed itself (inputs.py), so the model never
has to copy it, and picks each item's knob (target case, format, language, ...) from the
subcategory's `params`. The teacher writes the instruction; the cheap checks make sure it asks
for the subcategory's change and for the knob. The validators (validators.py) measure the
modified text against the input.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from agents.fields import line_field
from agents.flow import FlowContext
from agents.items import Rejected
from agents.rag.validators import check_repetition, lexical_support
from agents.task import Draft, TaskSkill
from agents.text_modification import validators as v
from agents.text_modification.inputs import (PREFER, choose_knobs, constraint_line,
                                             knob_request, pick_excerpt, sentence_units)
from agents.text_modification.measure import squash, content_recall, similarity

# -- models -----------------------------------------------------------------------------------


class Instruction(BaseModel):
    instruction: str = line_field(12, 300)


class KeywordTask(Instruction):
    keyword: str = Field(min_length=2, max_length=40)
    replacement: str = Field(min_length=2, max_length=40)


class RemovalTask(Instruction):
    remove: str = Field(min_length=3, max_length=160)


class EntailmentTask(Instruction):
    hypothesis: str = Field(min_length=10, max_length=240)


class Modified(BaseModel):
    text: str = Field(min_length=1, max_length=1200)


class Judgement(BaseModel):
    label: Literal["entailment", "contradiction", "neutral"]
    explanation: str = Field(min_length=10, max_length=400)


TASK_MODELS: dict[str, type[Instruction]] = {
    "keyword_replacement": KeywordTask, "text_removal": RemovalTask,
    "textual_entailment": EntailmentTask}


class TextModificationSkill(TaskSkill):
    task_model = Instruction
    answer_model = Modified

    def task_schema(self, sub) -> type[BaseModel]:
        return TASK_MODELS.get(sub.name, Instruction)

    def answer_schema(self, draft: Draft) -> type[BaseModel]:
        return Judgement if draft.sub.name == "textual_entailment" else Modified

    def setup(self, draft: Draft) -> dict[str, Any]:
        """Cut the item's input text from the passage and draw its knobs (once per item)."""
        if "input_text" not in draft.extra:
            params = draft.sub.params
            text = pick_excerpt(draft.passage, draft.item.seed, params.get("max_chars", 500),
                                prefer=PREFER.get(draft.sub.name))
            if text is None:
                raise Rejected("transform", "passage has no run of whole sentences of 80+ "
                               "characters to modify", f"{len(draft.passage)} characters, "
                               f"{len(sentence_units(draft.passage))} sentences",
                               raw=draft.passage[:500])
            draft.extra["input_text"] = text
            draft.extra["knobs"] = choose_knobs(draft.sub.name, params, text, draft.item.seed)
        return draft.extra["knobs"]

    def _values(self, draft: Draft) -> dict[str, Any]:
        knobs = self.setup(draft)
        model = self.task_schema(draft.sub)
        shape = "{" + ", ".join(f'"{f}": "..."' for f in model.model_fields) + "}"
        return super()._values(draft) | {
            "passage": draft.extra["input_text"], "knobs": knobs,
            "knob_request": knob_request(draft.sub.name, knobs),
            "constraint": constraint_line(knobs), "shape": shape}

    def instruction_text(self, draft: Draft) -> str:
        return self.user_turn(draft)

    def check_task(self, draft: Draft) -> str | None:
        knobs = self.setup(draft)
        task, text, name = draft.task, draft.extra["input_text"], draft.sub.name
        knob = next((knobs[k] for k in ("case", "format", "language", "sentiment", "markup",
                                        "rule") if k in knobs), None)
        instruction = task.instruction
        if name == "text_removal":  # the quoted item is allowed to repeat the text
            instruction = re.sub(re.escape(squash(task.remove).strip(" .\"'")), " ",
                                 squash(instruction))
        problem = v.check_instruction(instruction, text, draft.sub.params.get("cue", ""), knob,
                                      knob_request(name, knobs), name)
        if problem is None and name == "keyword_replacement":
            problem = v.check_keyword_task(text, task.instruction, task.keyword, task.replacement)
        if problem is None and name == "text_removal":
            problem = v.check_removal_task(text, task.instruction, task.remove)
        if problem is None and name == "textual_entailment":
            problem = v.check_hypothesis(text, task.hypothesis)
        return problem

    async def validate(self, ctx: FlowContext, draft: Draft) -> str | None:
        knobs, text, name, task = self.setup(draft), draft.extra["input_text"], draft.sub.name, \
            draft.task
        if name == "textual_entailment":
            answer = draft.answer
            draft.scores["hypothesis_support"] = lexical_support(task.hypothesis, [text])
            draft.extra["label"] = answer.label
            return v.check_entailment(text, task.hypothesis, answer.label, answer.explanation)
        output = draft.answer.text.strip()
        draft.scores["similarity"] = similarity(text, output)
        draft.scores["content_recall"] = content_recall(text, output)
        draft.scores["length_ratio"] = len(output) / len(text)
        checks = {
            "paraphrase": lambda: v.check_paraphrase(text, output),
            "simplify": lambda: v.check_simplified(text, output),
            "expand": lambda: v.check_expanded(text, output),
            "translate": lambda: v.check_translation(text, output, knobs["language"]),
            "format": lambda: v.check_format(text, output, knobs["format"]),
            "sentiment_change": lambda: v.check_sentiment(text, output, knobs["sentiment"]),
            "annotate": lambda: v.check_annotated(text, output),
            "keyword_replacement": lambda: v.check_keyword_replaced(
                text, output, task.keyword, task.replacement),
            "text_removal": lambda: v.check_removed(text, output, task.remove),
            "capitalization": lambda: v.check_case(text, output, knobs["case"]),
            "styling": lambda: v.check_styled(text, output, knobs["markup"]),
            "content_rewriting": lambda: v.check_rewritten(text, output),
            "data_normalization": lambda: v.check_normalized(text, output, knobs["rule"]),
            "plagiarism_rewording": lambda: v.check_reworded(
                text, output, knobs.get("max_shared_run", 4)),
            "code_switching": lambda: v.check_code_switched(text, output, knobs["language"]),
            "obfuscation": lambda: v.check_obfuscated(text, output),
            "vocabulary_limited_rewriting": lambda: v.check_vocabulary(text, output, knobs),
        }
        check = checks.get(name, lambda: v.check_not_copy(text, output))
        return check() or check_repetition(output)


SKILL = TextModificationSkill
