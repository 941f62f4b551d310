"""Tools agents and validators call: a safe calculator, a sandboxed Python interpreter and the
corpus search, behind one interface (`Tool.run(text) -> ToolResult`)."""

from agents.tools.base import (CalculatorTool, PythonTool, SearchTool, Tool, ToolResult,
                               make_tools)
from agents.tools.calculator import CalculatorError, calculate
from agents.tools.sandbox import Limits, RunResult, run_python

__all__ = ["CalculatorError", "CalculatorTool", "Limits", "PythonTool", "RunResult", "SearchTool",
           "Tool", "ToolResult", "calculate", "make_tools", "run_python"]
