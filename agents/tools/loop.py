"""The teacher's tool loop: it may request a tool (a JSON tool call), sees the result, and may
ask again, for a bounded number of steps; then it answers with the results in view."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

from pydantic import BaseModel, Field, create_model

from agents.tools.base import Tool, ToolResult

NO_TOOL = "none"


def request_model(tools: dict[str, Tool]) -> type[BaseModel]:
    """{"tool": one of the offered names or "none", "input": "..."}, enforced by the schema."""
    names = tuple([*tools, NO_TOOL])
    return create_model("ToolRequest", tool=(Literal[names], ...),  # type: ignore[valid-type]
                        input=(str, Field(max_length=400)))


def step_prompt(task: str, tools: dict[str, Tool], results: list[ToolResult]) -> str:
    lines = [task, "", "Before you answer, you may use a tool to look something up or to check "
             "a calculation. Tools:"]
    lines += [f"- {t.name}: {t.description}" for t in tools.values()]
    for r in results:
        lines += [f"You called {r.tool} with: {r.input}", f"Result: {r.output}"]
    lines += ["", f'Reply in JSON: {{"tool": "<tool name, or {NO_TOOL} when you are ready to '
              'answer>", "input": "..."}']
    return "\n".join(lines)


def observations_text(results: list[ToolResult]) -> str:
    if not results:
        return ""
    return "\n".join(["Tool results you obtained:"] + [
        f"- {r.tool}({r.input!r}) -> {r.output}" for r in results])


async def run_tool_loop(ask: Callable[[str, type[BaseModel], int], Awaitable[BaseModel]],
                        task: str, tools: dict[str, Tool], max_steps: int) -> list[ToolResult]:
    """`ask(prompt, model, step)` is one constrained teacher call. Repeated identical calls end
    the loop (small models repeat themselves rather than stop)."""
    if not tools or max_steps <= 0:
        return []
    model = request_model(tools)
    results: list[ToolResult] = []
    for step in range(max_steps):
        request = await ask(step_prompt(task, tools, results), model, step)
        name, text = request.tool, request.input.strip()  # type: ignore[attr-defined]
        if name == NO_TOOL or any(r.tool == name and r.input == text for r in results):
            break
        results.append(await tools[name].run(text))
    return results
