"""Coding: tasks written from code files (or technical prose), answered with code that is RUN.

Each subcategory's `expects` names what its answer is and how it is checked:

  code             implement a function    answer runs against the flow's tests
  fixed_code       find and fix a bug      the flow plants a bug the tests catch; the fix passes
  refactored_code  refactor                the original passes the tests; the refactor must too
  tests            write tests             the answer's tests pass on the code, catch a planted bug
  translation      translate to another    not executable here: checked for structure
                   language (params.language)
  explanation      explain code            names the code's identifiers, does not just copy it
  complexity       complexity analysis     a big-O expression, identifiers, no O(1) for loops

The tests are written by a separate "tests" stage after refinement, not by the instruct stage:
code plus tests in one reply would not fit the 320-token reply budget of a small teacher, an
edit during refinement cannot leave the tests out of step with the task, and for
fixed_code/refactored_code the tests are written against the final reference code and proven
on it in the sandbox before the answer is paid for.
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import BaseModel, Field, create_model

from agents.coding import checks as c
from agents.fields import line_field
from agents.flow import FlowContext, Trace
from agents.items import Candidate, Rejected
from agents.rag.validators import check_repetition
from agents.spec import Subcategory
from agents.task import Draft, TaskSkill
from agents.tools import Limits, RunResult, run_python

# What the instruct stage writes, per answer kind (the rest of the task is the flow's).
FIELDS: dict[str, tuple[str, ...]] = {
    "code": ("function_name", "instruction"),
    "fixed_code": ("function_name", "instruction", "code"),
    "refactored_code": ("function_name", "instruction", "code"),
    "tests": ("function_name", "code"),
    "translation": ("function_name", "code"),
    "explanation": ("instruction", "code"),
    "complexity": ("function_name", "code"),
}
FLOW_TESTS = {"code", "fixed_code", "refactored_code"}  # the flow writes tests for these
RUNS_REFERENCE = {"fixed_code", "refactored_code"}  # the task's code must pass those tests
FIELD_SPECS: dict[str, Any] = {
    "function_name": (str, Field(min_length=1, max_length=40)),
    "instruction": (str, line_field(12, 300)),
    "code": (str, Field(min_length=20, max_length=600)),
}
LIMITS = Limits(wall_s=3.0, cpu_s=2, memory_mb=256, max_output_bytes=16_000)


class CodeTask(BaseModel):
    """A whole coding task: what the teacher wrote plus what the flow added."""

    function_name: str = ""
    instruction: str = ""
    code: str = ""
    tests: str = ""  # plain asserts, written by the tests stage
    buggy_code: str = ""  # fixed_code: the code with the planted bug, as the student sees it
    planted_bug: str = ""  # what the planter changed


class Tests(BaseModel):
    tests: str = Field(min_length=20, max_length=500)


class CodeAnswer(BaseModel):
    explanation: str = Field(min_length=10, max_length=240)
    code: str = Field(min_length=20, max_length=700)


class TestsAnswer(BaseModel):
    tests: str = Field(min_length=20, max_length=600)


class Translation(BaseModel):
    code: str = Field(min_length=20, max_length=800)


class Explanation(BaseModel):
    explanation: str = Field(min_length=40, max_length=900)


class Complexity(BaseModel):
    complexity: str = Field(min_length=4, max_length=40)
    explanation: str = Field(min_length=20, max_length=500)


ANSWERS: dict[str, type[BaseModel]] = {
    "code": CodeAnswer, "fixed_code": CodeAnswer, "refactored_code": CodeAnswer,
    "tests": TestsAnswer, "translation": Translation, "explanation": Explanation,
    "complexity": Complexity,
}


class CodingSkill(TaskSkill):
    def __init__(self, folder) -> None:
        super().__init__(folder)
        self._schemas: dict[str, type[BaseModel]] = {}
        for sub in self.spec.taxonomy:  # the taxonomy is data: refuse what the code can't check
            if sub.expects not in FIELDS:
                raise ValueError(f"coding subcategory {sub.name}: unknown expects {sub.expects!r}")
            if sub.expects == "translation" and sub.params.get("language") not in c.LANGUAGES:
                raise ValueError(f"coding subcategory {sub.name}: params.language must be one of "
                                 f"{sorted(c.LANGUAGES)}")

    # -- schemas and text -------------------------------------------------------------------

    def task_schema(self, sub: Subcategory) -> type[BaseModel]:
        if sub.name not in self._schemas:
            self._schemas[sub.name] = create_model(
                f"{sub.name.title().replace('_', '')}Task",
                **{f: FIELD_SPECS[f] for f in FIELDS[sub.expects]})
        return self._schemas[sub.name]

    def answer_schema(self, draft: Draft) -> type[BaseModel]:
        return ANSWERS[draft.sub.expects]

    def instruction_text(self, draft: Draft) -> str:
        return self.user_turn(draft)

    def _values(self, draft: Draft) -> dict[str, Any]:
        fields = FIELDS[draft.sub.expects]
        shape = "{" + ", ".join(f'"{f}": "..."' for f in fields) + "}"
        answer_fields = ANSWERS[draft.sub.expects].model_fields
        answer_shape = "{" + ", ".join(f'"{f}": "..."' for f in answer_fields) + "}"
        lang = c.LANGUAGES.get(draft.sub.params.get("language", ""))
        return super()._values(draft) | {
            "fields": fields, "shape": shape, "answer_shape": answer_shape,
            "expects": draft.sub.expects, "t": self._task(draft),
            "language": lang.title if lang else "Python", "fence": lang.fence if lang else "python",
            "big_o": draft.extra.get("complexity", "")}

    @staticmethod
    def _task(draft: Draft) -> CodeTask:
        if isinstance(draft.task, CodeTask) or draft.task is None:
            return draft.task or CodeTask()
        return CodeTask(**draft.task.model_dump())

    # -- cheap checks -----------------------------------------------------------------------

    def check_task(self, draft: Draft) -> str | None:
        t, expects = self._task(draft), draft.sub.expects
        fields = FIELDS[expects]
        if "code" in fields:
            t = t.model_copy(update={"code": c.strip_fences(t.code)})
        problem = None
        if "function_name" in fields:
            problem = c.check_function_name(t.function_name.strip())
        if problem is None and "code" in fields:
            problem = c.check_defines(t.code, t.function_name.strip()) \
                if "function_name" in fields else c.check_snippet(t.code)
        if problem is None and expects == "code":
            problem = c.check_gives_away(t.instruction, t.function_name.strip())
        if problem is None and "instruction" in fields:
            problem = c.check_instruction(t.instruction)
        if problem is None:
            problem = c.check_code_on_topic(t.instruction or t.function_name, t.code, draft.passage)
        return problem

    # -- the flow's own steps: tests, reference run, planted bug -----------------------------

    async def respond(self, ctx: FlowContext, trace: Trace, draft: Draft) -> None:
        """Before the teacher answers: normalise the task and, for executable types, write the
        tests, prove them on the reference code and plant the bug."""
        t = self._task(draft)
        draft.task = t.model_copy(update={"code": c.strip_fences(t.code),
                                          "function_name": t.function_name.strip()})
        draft.extra["language"] = draft.sub.params.get("language", "python")
        draft.extra["sandbox_runs"] = []
        if draft.sub.expects in FLOW_TESTS:
            await self.write_tests(ctx, trace, draft)
        if draft.sub.expects in RUNS_REFERENCE:
            await self.run_checked(draft, "reference", draft.task.code, draft.task.tests,
                                   stage="tests", reason="reference code fails its own tests")
        if draft.sub.expects == "fixed_code":
            await self.plant_bug(draft)
        await super().respond(ctx, trace, draft)

    async def write_tests(self, ctx: FlowContext, trace: Trace, draft: Draft) -> None:
        reply = await self.ask(ctx, trace, "tests", self.render("tests.j2", **self._values(draft)),
                               Tests, draft.item.seed + 97)
        tests = c.strip_fences(reply.tests)
        trace.steps.append({"step": "tests", "tests": tests})
        if problem := c.check_tests(tests, draft.task.function_name,
                                    draft.sub.params.get("min_asserts", 2)):
            raise Rejected("tests", problem, raw=reply.model_dump_json())
        draft.task = draft.task.model_copy(update={"tests": tests})

    async def sandbox(self, draft: Draft, what: str, code: str, tests: str | None) -> RunResult:
        result = await run_python(code, tests=tests, limits=LIMITS)
        draft.extra["sandbox_runs"].append({
            "run": what, "ok": result.ok, "failed_part": result.failed_part,
            "limit_hit": result.limit_hit, "wall_s": result.wall_s})
        return result

    async def run_checked(self, draft: Draft, what: str, code: str, tests: str, stage: str,
                          reason: str, raw: str = "") -> None:
        """Run code against tests; a failure rejects the item with where and why it failed."""
        result = await self.sandbox(draft, what, code, tests)
        if not result.ok:
            label, detail = c.failure_summary(result.failed_part, result.limit_hit, result.stderr)
            raise Rejected(stage, f"{reason} ({label})", detail, raw=raw or code)

    async def first_caught_mutant(self, draft: Draft, code: str, tests: str
                                  ) -> tuple[c.Mutant | None, int]:
        """The first planted bug (in a seeded order) that makes the tests fail in the tests part
        without hitting a limit; and how many were tried."""
        found = c.mutants(code)
        random.Random(draft.item.seed).shuffle(found)
        tried = 0
        for mutant in found[: draft.sub.params.get("max_mutants", 8)]:
            tried += 1
            result = await self.sandbox(draft, "mutant", mutant.code, tests)
            if not result.ok and result.failed_part == "tests" and result.limit_hit is None:
                return mutant, tried
        return None, tried

    async def plant_bug(self, draft: Draft) -> None:
        t: CodeTask = draft.task
        mutant, tried = await self.first_caught_mutant(draft, t.code, t.tests)
        draft.scores["mutants_tried"] = tried
        if mutant is None:
            reason = "code has no place to plant a bug" if tried == 0 else \
                f"tests catch none of the {tried} planted bug(s)"
            raise Rejected("tests", reason, raw=t.model_dump_json())
        draft.task = t.model_copy(update={"buggy_code": mutant.code,
                                          "planted_bug": mutant.description})

    # -- validation of the answer -----------------------------------------------------------

    async def validate(self, ctx: FlowContext, draft: Draft) -> str | None:
        t: CodeTask = draft.task
        expects, raw = draft.sub.expects, draft.answer.model_dump_json()
        a = draft.answer
        if expects in ("code", "fixed_code", "refactored_code"):
            code = c.strip_fences(a.code)
            draft.answer = a.model_copy(update={"code": code})
            problem = c.check_defines(code, t.function_name, "answer code") \
                or check_repetition(a.explanation)
            if problem is None and expects == "fixed_code":
                problem = c.check_changed(code, t.buggy_code, "fix")
            if problem is None and expects == "refactored_code":
                problem = c.check_changed(code, t.code, "refactor")
            if problem:
                return problem
            await self.run_checked(draft, "answer", code, t.tests, stage="validate",
                                   reason="answer code fails the tests", raw=raw)
            return None
        if expects == "tests":
            tests = c.strip_fences(a.tests)
            draft.answer = a.model_copy(update={"tests": tests})
            if problem := c.check_tests(tests, t.function_name,
                                        draft.sub.params.get("min_asserts", 2)):
                return f"answer {problem}"
            await self.run_checked(draft, "answer", t.code, tests, stage="validate",
                                   reason="code fails the answer's tests", raw=raw)
            mutant, tried = await self.first_caught_mutant(draft, t.code, tests)
            draft.scores["mutants_tried"] = tried
            if tried and mutant is None:
                return f"answer's tests catch none of the {tried} planted bug(s)"
            if mutant is not None:
                draft.extra["caught_bug"] = mutant.description
            return None
        if expects == "translation":
            code = c.strip_fences(a.code)
            draft.answer = a.model_copy(update={"code": code})
            return c.check_translation(code, t.function_name, draft.extra["language"],
                                       c.returns_value(t.code, t.function_name))
        if expects == "explanation":
            draft.scores["identifiers_named"] = len(c.named_identifiers(a.explanation, t.code))
            return c.check_explanation(a.explanation, t.code,
                                       min_identifiers=draft.sub.params.get("min_identifiers", 2))
        if expects == "complexity":
            draft.scores["identifiers_named"] = len(c.named_identifiers(a.explanation, t.code))
            problem = c.check_complexity(a.complexity, a.explanation, t.code, t.function_name)
            if problem is None:
                draft.extra["complexity"] = c.big_o(a.complexity) or c.big_o(a.explanation)
            return problem
        raise AssertionError(expects)

    def candidate(self, ctx: FlowContext, draft: Draft, trace: Trace) -> Candidate:
        cand = super().candidate(ctx, draft, trace)
        # the task as stored: only the fields this type uses
        cand.metadata["task"] = {k: v for k, v in cand.metadata["task"].items() if v}
        return cand


SKILL = CodingSkill
