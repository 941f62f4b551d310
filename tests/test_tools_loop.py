"""The tool interface and the teacher's bounded tool-call loop, with real tools."""

import asyncio
import json

import pytest
from pydantic import ValidationError

from agents.flow import FlowContext, FlowSettings
from agents.task import TaskSkill
from agents.tools import CalculatorTool, PythonTool, SearchTool, make_tools
from agents.tools.loop import request_model, run_tool_loop, step_prompt
from retrieval import CorpusIndex
from tests.fakes import ScriptedTeacher


def test_calculator_tool_reports_values_and_errors():
    ok = asyncio.run(CalculatorTool().run("2 * (3 + 4)"))
    bad = asyncio.run(CalculatorTool().run("10 / 0"))
    assert ok.ok and ok.output == "14"
    assert not bad.ok and bad.output.startswith("error:") and "zero" in bad.output


def test_python_tool_runs_in_the_sandbox():
    ok = asyncio.run(PythonTool().run("print(sum(range(10)))"))
    boom = asyncio.run(PythonTool().run("raise SystemExit(3)"))
    assert ok.ok and ok.output.strip() == "45"
    assert not boom.ok and "exit 3" in boom.output


def test_search_tool_returns_ranked_passages(corpus, tmp_path, embedder):
    index = CorpusIndex.build_or_load(corpus, tmp_path / "idx", embedder, 600, 100)
    result = asyncio.run(SearchTool(index, k=2).run("queen bee lifespan"))
    assert result.ok and result.output.startswith("[1] (bees.txt)")
    assert not asyncio.run(SearchTool(index).run("  ")).ok


def test_unknown_tools_are_refused():
    with pytest.raises(ValueError, match="unknown tool"):
        make_tools(["shell"])
    with pytest.raises(ValueError, match="needs a corpus index"):
        make_tools(["search"])


def test_request_schema_allows_only_offered_tools():
    model = request_model(make_tools(["calculator"]))
    assert model.model_json_schema()["properties"]["tool"]["enum"] == ["calculator", "none"]
    with pytest.raises(ValidationError):
        model.model_validate({"tool": "python", "input": "import os"})


def scripted_loop(requests):
    """An `ask` that replays tool requests and records the prompts it saw."""
    seen = []

    async def ask(prompt, model, step):
        seen.append(prompt)
        return model.model_validate(requests[min(step, len(requests) - 1)])
    return ask, seen


def test_loop_feeds_results_back_and_stops_on_none():
    ask, seen = scripted_loop([{"tool": "calculator", "input": "1200 * 3"},
                               {"tool": "python", "input": "print(7 * 6)"},
                               {"tool": "none", "input": ""}])
    results = asyncio.run(run_tool_loop(ask, "Estimate it.", make_tools(["calculator", "python"]), 5))
    assert [(r.tool, r.output.strip()) for r in results] == [("calculator", "3600"), ("python", "42")]
    assert len(seen) == 3 and "Result: 3600" in seen[1] and "Result: 42" in seen[2]


def test_loop_is_bounded_and_ends_on_a_repeated_call():
    ask, seen = scripted_loop([{"tool": "calculator", "input": "1 + 1"}])
    results = asyncio.run(run_tool_loop(ask, "t", make_tools(["calculator"]), 5))
    assert len(results) == 1 and len(seen) == 2  # the repeat ended it
    ask, seen = scripted_loop([{"tool": "calculator", "input": f"{n} + 1"} for n in range(10)])
    assert len(asyncio.run(run_tool_loop(ask, "t", make_tools(["calculator"]), 3))) == 3
    assert asyncio.run(run_tool_loop(ask, "t", make_tools(["calculator"]), 0)) == []


def test_step_prompt_lists_tools_without_examples_to_copy():
    text = step_prompt("Task here.", make_tools(["calculator", "python"]), [])
    assert text.startswith("Task here.") and "- calculator:" in text and "- python:" in text
    assert text.rstrip().endswith('"input": "..."}')


def test_a_task_skill_with_tools_answers_with_the_results_in_view(tmp_path, corpus, embedder):
    folder = tmp_path / "toy"
    (folder / "prompts").mkdir(parents=True)
    (folder / "skill.toml").write_text('''
name = "toy"
split = "toy"
description = "A toy skill that may use the calculator."
system_prompt = ""
refinement_goals = ["Make it harder."]
tools = ["calculator"]
[[transformations]]
name = "identity"
description = "unchanged"
[[taxonomy]]
name = "arithmetic"
description = "An arithmetic question about numbers in the source."
''')
    (folder / "prompts" / "instruct.j2").write_text('Source: {{ passage }}\\nReply in JSON: {"instruction": "..."}')
    (folder / "prompts" / "user_turn.j2").write_text("{{ task.instruction }}")
    (folder / "prompts" / "respond.j2").write_text('{{ task.instruction }}\\nReply in JSON: {"answer": "..."}')

    def reply(messages, schema):
        prompt = messages[-1].content
        props = schema["properties"]
        if "tool" in props:
            done = "Result:" in prompt
            return json.dumps({"tool": "none" if done else "calculator", "input": "20000 * 4"})
        if "answer" in props:
            assert "calculator('20000 * 4') -> 80000" in prompt
            return json.dumps({"answer": "About 80000 bees live in four colonies."})
        return json.dumps({"instruction": "How many bees live in four colonies of 20,000?"})

    index = CorpusIndex.build_or_load(corpus, tmp_path / "idx", embedder, 600, 100)
    skill = TaskSkill(folder)
    ctx = FlowContext(teacher=ScriptedTeacher(reply), index=index,
                      settings=FlowSettings(refine_rounds=0, tool_steps=2))
    item = next(skill.plan(index.chunks, seed=1))
    candidate = asyncio.run(skill.run(ctx, item))
    assert candidate.metadata["tool_calls"] == [
        {"tool": "calculator", "input": "20000 * 4", "ok": True, "output": "80000"}]
    assert candidate.messages[-1].content == "About 80000 bees live in four colonies."
    assert [m.role for m in candidate.messages] == ["user", "assistant"]  # tool calls stay out
    assert candidate.usage.calls == 4  # instruct, two tool steps, respond
