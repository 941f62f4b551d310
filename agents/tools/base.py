"""One interface for every tool, whether the teacher requests it or a validator calls it."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict

from agents.tools.calculator import CalculatorError, calculate
from agents.tools.sandbox import Limits, run_python

MAX_OBSERVATION = 1200  # characters of a tool's output shown back to the teacher


class ToolResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tool: str
    input: str
    ok: bool
    output: str


class Tool(Protocol):
    name: str
    description: str

    async def run(self, text: str) -> ToolResult: ...


class CalculatorTool:
    name = "calculator"
    description = "evaluates one arithmetic expression (numbers, + - * / ** %, sqrt, log, round)"

    async def run(self, text: str) -> ToolResult:
        try:
            value = calculate(text)
        except CalculatorError as exc:
            return ToolResult(tool=self.name, input=text, ok=False, output=f"error: {exc}")
        return ToolResult(tool=self.name, input=text, ok=True, output=repr(value))


class PythonTool:
    name = "python"
    description = "runs a short Python program in a sandbox and returns what it prints"

    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits

    async def run(self, text: str) -> ToolResult:
        result = await run_python(text, limits=self.limits)
        output = result.stdout if result.ok else (
            f"failed ({result.limit_hit or result.signal or f'exit {result.exit_code}'}): "
            f"{result.stderr[-MAX_OBSERVATION:]}")
        return ToolResult(tool=self.name, input=text, ok=result.ok,
                          output=output[:MAX_OBSERVATION])


class SearchTool:
    name = "search"
    description = "finds passages about a query in the document collection"

    def __init__(self, index, k: int = 3) -> None:
        self.index, self.k = index, k

    async def run(self, text: str) -> ToolResult:
        if not text.strip():
            return ToolResult(tool=self.name, input=text, ok=False, output="error: empty query")
        hits = await self.index.asearch(text, k=min(self.k, len(self.index)))
        output = "\n".join(f"[{n}] ({h.chunk.doc_path}) {' '.join(h.chunk.text.split())[:400]}"
                           for n, h in enumerate(hits, 1))
        return ToolResult(tool=self.name, input=text, ok=bool(hits), output=output or "no results")


def make_tools(names: list[str], index=None) -> dict[str, Tool]:
    tools: dict[str, Tool] = {}
    for name in names:
        if name == "calculator":
            tools[name] = CalculatorTool()
        elif name == "python":
            tools[name] = PythonTool()
        elif name == "search":
            if index is None:
                raise ValueError("the search tool needs a corpus index")
            tools[name] = SearchTool(index)
        else:
            raise ValueError(f"unknown tool {name!r}")
    return tools
