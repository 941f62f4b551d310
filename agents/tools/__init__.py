"""Tools agents can call: a safe calculator and a sandboxed Python interpreter."""

from agents.tools.calculator import CalculatorError, calculate
from agents.tools.sandbox import Limits, RunResult, run_python

__all__ = ["CalculatorError", "Limits", "RunResult", "calculate", "run_python"]
