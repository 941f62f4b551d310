"""Finite puzzles and their checks.

A puzzle assigns each entity a value: a position 1..n (`pos`, all different), a group (`group`,
repeats allowed) or an option (`group`, all different). Its constraints are Python boolean rules
written by the model. Rules are only ever *parsed* in this process (a static whitelist, for
precise reasons and defence in depth); they are *evaluated* only inside the sandbox, by a fixed
enumeration program whose one input is the puzzle as a JSON string literal.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, ValidationError

from agents.tools import Limits, run_python

Value = int | str


@dataclass(frozen=True)
class Structure:
    """What the rules range over: `variable` maps each entity to one of `values`."""

    variable: str  # "pos" or "group"
    values: tuple[Value, ...]
    distinct: bool  # every entity a different value (a permutation) or repeats allowed

    @classmethod
    def of(cls, kind: str, entities: list[str], groups: list[str] | None) -> Structure:
        if kind == "ordering":
            return cls("pos", tuple(range(1, len(entities) + 1)), True)
        if kind not in ("grouping", "assignment"):
            raise ValueError(f"unknown puzzle structure {kind!r}: use ordering, grouping or "
                             "assignment in the subcategory's params")
        return cls("group", tuple(groups or ()), kind == "assignment")


# -- static checks (parse only, never evaluate) ---------------------------------------------------

_ALLOWED = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub,
            ast.BinOp, ast.Add, ast.Sub, ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt,
            ast.GtE, ast.In, ast.NotIn, ast.IfExp, ast.Subscript, ast.Name, ast.Load,
            ast.Constant, ast.Tuple, ast.List, ast.Call)


def rule_entities(rule: str) -> list[str]:
    """The entities a (parseable) rule subscripts, in order."""
    tree = ast.parse(rule.strip(), mode="eval")
    return [n.slice.value for n in ast.walk(tree) if isinstance(n, ast.Subscript)
            and isinstance(n.slice, ast.Constant) and isinstance(n.slice.value, str)]


def check_rule(n: int, rule: str, entities: list[str], structure: Structure) -> str | None:
    """Rule `n` is a boolean expression over `structure.variable[<entity>]`, the structure's
    values and small integers (positions, distances), with `abs` the only call."""
    try:
        tree = ast.parse(rule.strip(), mode="eval")
    except SyntaxError as exc:
        return f"constraint {n} is not a Python expression ({exc.msg})"
    nodes = list(ast.walk(tree))
    # one kind of problem at a time, so the reason names the real mistake
    for node in nodes:
        if not isinstance(node, _ALLOWED):
            return f"constraint {n} uses {type(node).__name__}, which rules may not use"
    for node in nodes:
        if isinstance(node, ast.Name) and node.id not in (structure.variable, "abs"):
            return (f"constraint {n} uses the name {node.id!r}; only {structure.variable}[...] "
                    "is defined")
    for node in nodes:
        if isinstance(node, ast.Call) and not (
                isinstance(node.func, ast.Name) and node.func.id == "abs"
                and len(node.args) == 1 and not node.keywords):
            return f"constraint {n} calls something other than abs(x)"
    subscripted = 0
    for node in nodes:
        if isinstance(node, ast.Subscript):
            key = node.slice
            if not (isinstance(node.value, ast.Name) and node.value.id == structure.variable
                    and isinstance(key, ast.Constant) and isinstance(key.value, str)):
                return (f"constraint {n} indexes something other than "
                        f"{structure.variable}[\"<entity>\"]")
            if key.value not in entities:
                return f"constraint {n} refers to unknown entity {key.value!r}"
            subscripted += 1
    if not subscripted:
        return f"constraint {n} names no entity"
    subscripts = {id(node.slice) for node in nodes if isinstance(node, ast.Subscript)}
    for node in nodes:
        if not isinstance(node, ast.Constant) or id(node) in subscripts:
            continue
        value = node.value
        if isinstance(value, bool):  # True/False, e.g. "B if A else True"
            continue
        if structure.variable == "pos":
            if not isinstance(value, int) or not 0 <= value <= len(entities):
                return f"constraint {n} uses {value!r}; positions run from 1 to {len(entities)}"
        elif value not in structure.values:
            return f"constraint {n} uses {value!r}, which is not one of the groups"
    return None


def check_rule_text(n: int, text: str, rule: str) -> str | None:
    """The words the student reads name every entity the rule uses."""
    lowered = text.lower()
    for entity in dict.fromkeys(rule_entities(rule)):
        if entity.lower() not in lowered:
            return f"constraint {n}'s text does not mention {entity!r}, which its rule uses"
    return None


def is_conditional(text: str, rule: str) -> bool:
    """An if-then condition: 'if' in the words, an implication ((not A) or B, B if A else C) in
    the rule."""
    tree = ast.parse(rule.strip(), mode="eval")
    implication = any(isinstance(n, ast.IfExp) or isinstance(n, ast.BoolOp)
                      and isinstance(n.op, ast.Or) for n in ast.walk(tree))
    return implication and " if " in f" {text.lower()} "


# -- enumeration, in the sandbox ------------------------------------------------------------------

# The fixed program the sandbox runs. Its only input is __PUZZLE__, replaced by a JSON string
# literal (json.dumps of the JSON text, ASCII-escaped: a valid Python string literal that cannot
# end early). The rules are compiled and evaluated in there, never here.
ENUMERATOR = r'''
import itertools
import json

PUZZLE = json.loads(__PUZZLE__)


def finish(**result):
    print(json.dumps(result))
    raise SystemExit(0)


entities, variable, values = PUZZLE["entities"], PUZZLE["variable"], PUZZLE["values"]
rules = []
for n, text in enumerate(PUZZLE["rules"], 1):
    try:
        rules.append(compile(text, "<constraint %d>" % n, "eval"))
    except SyntaxError as exc:
        finish(error="constraint %d is not a Python expression (%s)" % (n, exc.msg))

if PUZZLE["distinct"]:
    arrangements = itertools.permutations(values, len(entities))
else:
    arrangements = itertools.product(values, repeat=len(entities))

count, solutions = 0, []
without = [0] * len(rules)  # arrangements satisfying every rule except rule n
for arrangement in arrangements:
    scope = {variable: dict(zip(entities, arrangement))}
    held = []
    for n, code in enumerate(rules, 1):
        try:
            value = eval(code, {"__builtins__": {}, "abs": abs}, scope)
        except Exception as exc:
            finish(error="constraint %d raised %s: %s" % (n, type(exc).__name__, str(exc)[:100]))
        if not isinstance(value, bool):
            finish(error="constraint %d gave %s, not True or False" % (n, type(value).__name__))
        held.append(value)
    if all(held):
        count += 1
        if len(solutions) < 2:
            solutions.append(scope[variable])
    for n in range(len(rules)):
        if all(h for m, h in enumerate(held) if m != n):
            without[n] += 1

finish(count=count, solutions=solutions,
       redundant=[n + 1 for n in range(len(rules)) if without[n] == count])
'''


class Enumeration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    count: int = 0
    solutions: list[dict[str, Value]] = []  # at most two
    redundant: list[int] = []  # constraints whose removal changes nothing
    error: str | None = None


def enumeration_program(entities: list[str], structure: Structure, rules: list[str]) -> str:
    puzzle = {"entities": entities, "variable": structure.variable,
              "values": list(structure.values), "distinct": structure.distinct, "rules": rules}
    return ENUMERATOR.replace("__PUZZLE__", json.dumps(json.dumps(puzzle)))


async def enumerate_solutions(entities: list[str], structure: Structure, rules: list[str],
                              limits: Limits = Limits(wall_s=10)) -> Enumeration:
    """Count the arrangements that satisfy every rule (at most 5! or 3**5 to try)."""
    result = await run_python(enumeration_program(entities, structure, rules), limits=limits)
    if not result.ok:
        why = result.limit_hit or result.signal or f"exit {result.exit_code}"
        return Enumeration(error=f"enumeration failed ({why}): {result.stderr.strip()[-200:]}")
    lines = result.stdout.strip().splitlines()
    try:
        return Enumeration.model_validate_json(lines[-1] if lines else "")
    except ValidationError:
        return Enumeration(error=f"enumeration printed no result: {result.stdout[-200:]!r}")


def check_unique(enumeration: Enumeration) -> str | None:
    if enumeration.error:
        return f"puzzle cannot be checked: {enumeration.error}"
    if enumeration.count == 0:
        return "puzzle has no solution"
    if enumeration.count > 1:
        return f"puzzle is ambiguous: {enumeration.count} solutions"
    return None


def check_assignment(entities: list[str], assignment: dict[str, Value] | list[tuple[str, Value]],
                     solution: dict[str, Value]) -> str | None:
    """The teacher placed every entity exactly once, as the unique solution does."""
    pairs = list(assignment.items()) if isinstance(assignment, dict) else list(assignment)
    placed = [entity for entity, _ in pairs]
    for entity in entities:
        if placed.count(entity) > 1:
            return f"teacher placed {entity!r} more than once"
        if entity not in placed:
            return f"teacher did not place {entity!r}"
    wrong = [f"{entity} {value} (should be {solution[entity]})" for entity, value in pairs
             if solution.get(entity) != value]
    if wrong:
        return "teacher's assignment differs from the unique solution: " + ", ".join(wrong)
    return None
