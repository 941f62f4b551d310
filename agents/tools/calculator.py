"""A calculator tool for agents: arithmetic on numbers, nothing else.

The expression is parsed with `ast` and walked node by node against a whitelist, so model output
can never reach `eval`, attribute access, imports or arbitrary calls. Results are bounded: a
single `**` or big-integer product cannot make the engine spend seconds (or gigabytes) on one
tool call.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

MAX_EXPRESSION_CHARS = 2_000
MAX_RESULT_DIGITS = 10_000
MAX_EXPONENT = 10_000
# Comparing against 10**N is cheap (ints compare by size first); counting the digits of a huge
# int (str(n)) is quadratic.
_TOO_MANY_DIGITS = 10**MAX_RESULT_DIGITS

Number = int | float


class CalculatorError(ValueError):
    """The expression was refused or could not be evaluated; the message says why and where."""


def _log(x: Number, base: Number | None = None) -> float:
    return math.log(x) if base is None else math.log(x, base)


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    if not isinstance(ndigits, int):
        raise CalculatorError(f"round: the number of digits must be an integer, got {ndigits!r}")
    return round(x, ndigits)


# name -> (function, min args, max args); max None = any number (min/max).
_FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int | None]] = {
    "sqrt": (math.sqrt, 1, 1),
    "log": (_log, 1, 2),
    "log10": (math.log10, 1, 1),
    "log2": (math.log2, 1, 1),
    "exp": (math.exp, 1, 1),
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
    "asin": (math.asin, 1, 1),
    "acos": (math.acos, 1, 1),
    "atan": (math.atan, 1, 1),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "round": (_round, 1, 2),
    "abs": (abs, 1, 1),
    "min": (lambda *xs: min(xs), 1, None),
    "max": (lambda *xs: max(xs), 1, None),
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}

_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
# Operators Python accepts but a calculator user almost certainly did not mean.
_REFUSED_OPERATORS = {
    ast.BitXor: "'^' is bitwise xor in this syntax, not a power; write a ** b for powers",
    ast.BitAnd: "'&' (bitwise and) is not supported",
    ast.BitOr: "'|' (bitwise or) is not supported",
    ast.LShift: "'<<' (shift) is not supported",
    ast.RShift: "'>>' (shift) is not supported",
    ast.MatMult: "'@' (matrix multiply) is not supported",
}


def calculate(expression: str) -> Number:
    """Evaluate an arithmetic expression in Python syntax, e.g. `2 * (3 + sqrt(16)) ** 2`.

    Supports + - * / // % **, unary +/-, parentheses, pi, e and the functions sqrt, log (x or
    x, base), log10, log2, exp, sin, cos, tan, asin, acos, atan, floor, ceil, round (x or x,
    ndigits), abs, min, max. Raises CalculatorError for anything else and for results that are
    not finite, complex, or too large.
    """
    if not isinstance(expression, str):
        raise CalculatorError(f"expected the expression as a string, got {type(expression).__name__}")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression is {len(expression):,} characters; the limit is "
                              f"{MAX_EXPRESSION_CHARS:,}: split it into smaller calculations")
    if not expression.strip():
        raise CalculatorError("empty expression: pass something like '2 + 2'")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        # offset 0/None: the parser ran out of input (e.g. '1 +').
        where = f"at column {exc.offset}" if exc.offset else "at the end of the expression"
        raise CalculatorError(f"syntax error {where}: {exc.msg} "
                              f"(the calculator uses Python syntax, e.g. 2 ** 10, not 2^10)") from None
    except (ValueError, MemoryError, RecursionError) as exc:  # e.g. null bytes, absurd nesting
        raise CalculatorError(f"cannot parse the expression: {exc}") from None
    try:
        return _evaluate(tree.body)
    except RecursionError:
        raise CalculatorError("expression is nested too deeply: simplify it or split it up") from None


def _evaluate(node: ast.expr) -> Number:
    if isinstance(node, ast.BinOp):
        return _binary_chain(node)
    if isinstance(node, ast.UnaryOp):
        return _unary_chain(node)
    if isinstance(node, ast.Constant):
        return _constant(node)
    if isinstance(node, ast.Name):
        return _name(node)
    if isinstance(node, ast.Call):
        return _call(node)
    raise CalculatorError(_unsupported(node))


def _binary_chain(node: ast.BinOp) -> Number:
    # `1 + 2 + ... + 1000` is a left-leaning tree 1000 deep; walk its left spine in a loop so a
    # long but legitimate sum does not hit Python's recursion limit.
    chain: list[ast.BinOp] = []
    current: ast.expr = node
    while isinstance(current, ast.BinOp):
        chain.append(current)
        current = current.left
    value = _evaluate(current)
    for step in reversed(chain):
        value = _apply_binary(step, value, _evaluate(step.right))
    return value


def _apply_binary(node: ast.BinOp, left: Number, right: Number) -> Number:
    op_type = type(node.op)
    where = f"at column {node.col_offset + 1}"
    if op_type in _REFUSED_OPERATORS:
        raise CalculatorError(f"{_REFUSED_OPERATORS[op_type]} ({where})")
    if op_type is ast.Pow:
        _check_power(left, right, where)
    try:
        result = _BINARY[op_type](left, right)
    except ZeroDivisionError:
        raise CalculatorError(f"division by zero {where}") from None
    except OverflowError:
        raise CalculatorError(f"result too large {where}") from None
    return _checked(result, where)


def _check_power(base: Number, exponent: Number, where: str) -> None:
    # Refuse before computing: 9 ** 10**8 would otherwise run for minutes inside the engine.
    if abs(exponent) > MAX_EXPONENT:
        raise CalculatorError(f"exponent {exponent:g} is too large (limit {MAX_EXPONENT:,}) {where}")
    if abs(base) > 1 and exponent > 0:
        digits = exponent * math.log10(abs(base))
        if digits > MAX_RESULT_DIGITS:
            raise CalculatorError(f"result would have about {digits:,.0f} digits (limit "
                                  f"{MAX_RESULT_DIGITS:,}) {where}")


def _unary_chain(node: ast.UnaryOp) -> Number:
    ops: list[ast.UnaryOp] = []
    current: ast.expr = node
    while isinstance(current, ast.UnaryOp):
        ops.append(current)
        current = current.operand
    value = _evaluate(current)
    for step in reversed(ops):
        if type(step.op) not in _UNARY:
            symbol = {ast.Not: "not", ast.Invert: "~"}.get(type(step.op), type(step.op).__name__)
            raise CalculatorError(f"unary '{symbol}' is not supported (at column {step.col_offset + 1})")
        value = _UNARY[type(step.op)](value)
    return value


def _constant(node: ast.Constant) -> Number:
    value = node.value
    where = f"at column {node.col_offset + 1}"
    # bool is an int subclass; True + True = 2 is a trap, not arithmetic.
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "complex number" if isinstance(value, complex) else type(value).__name__
        raise CalculatorError(f"only int and float numbers are allowed, got a {kind} {value!r} {where}")
    return _checked(value, where)


def _name(node: ast.Name) -> Number:
    where = f"at column {node.col_offset + 1}"
    if node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if node.id in _FUNCTIONS:
        raise CalculatorError(f"{node.id} is a function: call it, e.g. {node.id}(2) ({where})")
    raise CalculatorError(f"unknown name {node.id!r} {where}; available: "
                          f"{', '.join(sorted(_CONSTANTS) + sorted(_FUNCTIONS))}")


def _call(node: ast.Call) -> Number:
    where = f"at column {node.col_offset + 1}"
    if isinstance(node.func, ast.Attribute):
        raise CalculatorError(f"attribute access ('.{node.func.attr}') is not allowed {where}: "
                              f"call the listed functions by bare name, e.g. sqrt(2)")
    if not isinstance(node.func, ast.Name):
        raise CalculatorError(f"only the listed functions can be called, e.g. sqrt(2) ({where})")
    name = node.func.id
    if name not in _FUNCTIONS:
        raise CalculatorError(f"unknown function {name!r} {where}; available: "
                              f"{', '.join(sorted(_FUNCTIONS))}")
    if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
        raise CalculatorError(f"{name}: pass plain positional arguments only ({where})")
    function, least, most = _FUNCTIONS[name]
    if len(node.args) < least or (most is not None and len(node.args) > most):
        if most is None:
            expected = f"{least} or more"
        else:
            expected = f"{least}" if least == most else f"{least} to {most}"
        raise CalculatorError(f"{name} takes {expected} argument(s), got {len(node.args)} ({where})")
    args = [_evaluate(arg) for arg in node.args]
    try:
        result = function(*args)
    except ZeroDivisionError:
        raise CalculatorError(f"{name}: division by zero {where}") from None
    except OverflowError:
        raise CalculatorError(f"{name}: result too large {where}") from None
    except CalculatorError:
        raise
    except ValueError as exc:  # math domain errors: sqrt(-1), log(0), asin(2)
        raise CalculatorError(f"{name}({', '.join(map(repr, args))}): {exc} {where}") from None
    return _checked(result, where)


def _checked(value: object, where: str) -> Number:
    if isinstance(value, complex):
        raise CalculatorError(f"result is a complex number (e.g. a fractional power of a negative "
                              f"number) {where}")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError(f"result is not a finite number ({value}) {where}")
    if isinstance(value, int) and abs(value) >= _TOO_MANY_DIGITS:
        raise CalculatorError(f"result has more than {MAX_RESULT_DIGITS:,} digits {where}")
    return value  # type: ignore[return-value]


def _unsupported(node: ast.AST) -> str:
    where = f" at column {node.col_offset + 1}" if hasattr(node, "col_offset") else ""
    if isinstance(node, ast.Attribute):
        return f"attribute access ('.{node.attr}') is not allowed{where}"
    if isinstance(node, ast.Tuple):
        return (f"a tuple is not a number{where}: don't use ',' as a thousands separator "
                "(write 1000 or 1_000)")
    if isinstance(node, ast.Lambda):
        return f"lambda is not allowed{where}"
    if isinstance(node, ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
        return f"comprehensions are not allowed{where}"
    if isinstance(node, ast.Compare | ast.BoolOp):
        return f"comparisons and boolean logic are not supported{where}: this is an arithmetic calculator"
    return (f"{type(node).__name__} expressions are not supported{where}; "
            "use numbers, operators and the listed functions")
