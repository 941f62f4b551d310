"""Coding validators: pure functions that return a rejection reason, or None when the item passes;
and the bug planter (AST mutations) that find_and_fix_bug and write_tests use.

Nothing here runs code: the skill runs the sandbox and hands the results to these functions.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import re
import textwrap
from dataclasses import dataclass

from agents.rag.validators import META_REFERENCE, check_repetition, content_words

_FENCE = re.compile(r"^\s*```[\w+#.-]*[ \t]*\n(.*?)\n?[ \t]*```\s*$", re.DOTALL)
_BUILTINS = frozenset(dir(builtins)) | {"self", "cls", "_"}


# -- parsing ----------------------------------------------------------------------------------


def strip_fences(code: str) -> str:
    """Teachers often wrap code in a markdown fence inside the JSON string, or indent all of it."""
    match = _FENCE.match(code)
    return textwrap.dedent(match.group(1) if match else code).strip("\n").rstrip()


def parse(code: str) -> tuple[ast.Module | None, str | None]:
    """(tree, None) or (None, the parser's message without positions)."""
    try:
        return ast.parse(code), None
    except SyntaxError as exc:  # positions go: reasons are counted, and must group
        message = re.sub(r"\s*\((?:detected at )?line \d+\)| on line \d+", "", exc.msg or "")
        return None, message or "syntax error"
    except ValueError as exc:  # null bytes
        return None, str(exc)


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    return {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
            and isinstance(first.value.value, str):
        return body[1:]
    return list(body)


def _is_stub(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for stmt in _without_docstring(fn.body):
        if isinstance(stmt, ast.Pass):
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # `...` or a stray string
        if isinstance(stmt, ast.Raise) and stmt.exc is not None and "NotImplementedError" in \
                ast.unparse(stmt.exc):
            continue
        return False
    return True


def same_program(a: str, b: str) -> bool:
    """True when two sources are the same program up to formatting, comments and docstrings."""
    trees = [parse(x)[0] for x in (a, b)]
    if any(t is None for t in trees):
        return " ".join(a.split()) == " ".join(b.split())
    dumps = []
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
                node.body = _without_docstring(node.body) or [ast.Pass()]
        dumps.append(ast.dump(tree))
    return dumps[0] == dumps[1]


# -- task checks (cheap, before the answer is paid for) ---------------------------------------


def check_function_name(name: str) -> str | None:
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("__"):
        return "function name is not a Python identifier"
    if name in _BUILTINS:
        return f"function name `{name}` shadows a Python builtin"
    return None


def check_defines(code: str, name: str, what: str = "code") -> str | None:
    """The code parses and defines a top-level function `name` with a real body."""
    tree, error = parse(code)
    if tree is None:
        return f"{what} is not valid Python ({error})"
    fn = _functions(tree).get(name)
    if fn is None:
        return f"{what} does not define `{name}`"
    if _is_stub(fn):
        return f"{what} defines `{name}` as a stub"
    return None


def check_snippet(code: str, min_lines: int = 2) -> str | None:
    """Code shown for explanation or analysis: valid Python with something to explain."""
    tree, error = parse(code)
    if tree is None:
        return f"code is not valid Python ({error})"
    lines = [ln for ln in code.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if len(lines) < min_lines:
        return "code is too short to be worth a task"
    if not defined_identifiers(code):
        return "code defines no names"
    return None


def check_instruction(instruction: str) -> str | None:
    """The student reads the instruction without the source: it must stand on its own."""
    if len(instruction.split()) < 4:
        return "instruction too short"
    if META_REFERENCE.search(instruction):
        return "instruction refers to 'the passage' instead of naming its subject"
    return check_repetition(instruction)


def check_gives_away(instruction: str, name: str) -> str | None:
    """An implement task must not already hold the implementation."""
    if re.search(rf"\bdef\s+{re.escape(name)}\s*\(", instruction) or "return " in instruction:
        return "instruction already contains the solution"
    return None


def split_identifier(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name).replace("_", " ")
    return spaced.lower().split()


def check_code_on_topic(text: str, code: str, passage: str) -> str | None:
    """A task written from a passage shares a subject word with it (names split into words)."""
    names = " ".join(w for n in defined_identifiers(code) for w in split_identifier(n))
    words = content_words(f"{text} {names}")
    source = content_words(" ".join(split_identifier(passage)) + " " + passage)
    if not words & source:
        return "task shares no subject word with its source passage"
    return None


def check_tests(tests: str, name: str, min_asserts: int = 2) -> str | None:
    """Tests must actually exercise `name`: asserts that call it, nothing that can't fail."""
    tree, error = parse(tests)
    if tree is None:
        return f"tests are not valid Python ({error})"
    if name in _functions(tree):
        return f"tests redefine `{name}`"
    asserts = [n for n in ast.walk(tree) if isinstance(n, ast.Assert)]
    if not asserts:
        return "tests contain no assert"
    for a in asserts:
        falsy = isinstance(a.test, ast.Constant) and not a.test.value  # `assert False` may fail
        if not falsy and not any(isinstance(n, (ast.Name, ast.Call, ast.Attribute, ast.Subscript))
                                 for n in ast.walk(a.test)):
            return "tests contain an assert that cannot fail"
    calling = [a for a in asserts if any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name
        for n in ast.walk(a.test))]
    if not calling:
        return f"tests never call `{name}` in an assert"
    distinct = {ast.dump(a.test) for a in calling}
    if len(distinct) < min_asserts:
        return f"tests have {len(distinct)} distinct assert(s) calling `{name}`, need {min_asserts}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            for handler in node.handlers:
                caught = ast.unparse(handler.type) if handler.type is not None else ""
                if not caught or re.search(r"\b(Exception|BaseException|AssertionError)\b", caught):
                    return "tests swallow failures in a try/except"
    return None


# -- sandbox results --------------------------------------------------------------------------


def failure_summary(failed_part: str | None, limit_hit: str | None, stderr: str) -> tuple[str, str]:
    """(short label for the reason, detail) from a failed sandbox run: which part failed, which
    limit was hit, the failing source line and the last line of stderr."""
    label = f"{failed_part or 'main'} part" + (f", {limit_hit} limit" if limit_hit else "")
    lines = [ln.rstrip() for ln in stderr.splitlines() if ln.strip()]
    last = lines[-1].strip() if lines else "(no stderr)"
    where = ""
    for i, ln in enumerate(lines[:-1]):
        if ln.lstrip().startswith('File "') and i + 1 < len(lines) \
                and not lines[i + 1].lstrip().startswith('File "'):
            where = lines[i + 1].strip()  # the innermost frame's source line wins
    detail = f"failed_part={failed_part} limit_hit={limit_hit}: {last}"
    if where and where != last:
        detail += f" (at: {where[:160]})"
    return label, detail[:600]


# -- answer checks ----------------------------------------------------------------------------


def check_changed(answer_code: str, original: str, what: str) -> str | None:
    if same_program(answer_code, original):
        return f"{what} returns the code unchanged"
    return None


def defined_identifiers(code: str) -> set[str]:
    """Names the code defines or binds: functions, classes, parameters, variables, attributes."""
    tree, _ = parse(code)
    if tree is None:
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return names - _BUILTINS


def named_identifiers(text: str, code: str) -> set[str]:
    """Identifiers of the code that the text names; names under three characters count only in
    backticks (a bare `n` or `i` is an ordinary word or letter)."""
    found = set()
    for name in defined_identifiers(code):
        if len(name) >= 3 and re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text):
            found.add(name)
        elif f"`{name}`" in text:
            found.add(name)
    return found


def check_names_identifiers(text: str, code: str, minimum: int = 2, what: str = "explanation"
                            ) -> str | None:
    available = defined_identifiers(code)
    need = min(minimum, len(available))
    found = named_identifiers(text, code)
    if len(found) < need:
        if not found:
            return f"{what} names no identifier from the code"
        return f"{what} names {len(found)} identifier(s) from the code, needs {need}"
    return None


def check_explanation(text: str, code: str, min_words: int = 15, min_identifiers: int = 2
                      ) -> str | None:
    if len(text.split()) < min_words:
        return "explanation is too short"
    code_lines = {ln.strip() for ln in code.splitlines() if len(ln.strip()) > 8}
    copied = {ln for ln in code_lines if ln in text}
    if code_lines and len(copied) / len(code_lines) >= 0.5:
        return "explanation only repeats the code"
    return check_names_identifiers(text, code, min_identifiers) or check_repetition(text)


# O(n), O(n log n), O(n^2), O(n**2), O(2^n), O(len(items)), O(n * m), Θ(n)
BIG_O = re.compile(r"(?<!\w)[OΘΩ]\(\s*([^()]+|[^()]*\([^()]*\)[^()]*)\s*\)")
_BIG_O_BODY = re.compile(r"^[\w\s*^+/.,()·-]+$")


def big_o(text: str) -> str | None:
    """The first well-formed big-O expression in the text, spaces normalised."""
    for match in BIG_O.finditer(text):
        body = match.group(1).strip()
        if body and _BIG_O_BODY.match(body) and re.search(r"[A-Za-z0-9]", body):
            return "O(" + " ".join(body.split()) + ")"
    return None


def _loops_over_input(code: str, name: str) -> bool:
    tree, _ = parse(code)
    if tree is None:
        return False
    fn = _functions(tree).get(name)
    scope = fn if fn is not None else tree
    params = {a.arg for a in ast.walk(scope) if isinstance(a, ast.arg)}
    for node in ast.walk(scope):
        if isinstance(node, ast.While):
            return True
        if isinstance(node, (ast.For, ast.comprehension)):
            if {n.id for n in ast.walk(node.iter) if isinstance(n, ast.Name)} & params:
                return True
        if fn is not None and isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id == name:
            return True  # recursion
    return False


def check_complexity(complexity: str, explanation: str, code: str, name: str) -> str | None:
    claimed = big_o(complexity) or big_o(explanation)
    if claimed is None:
        return "complexity contains no big-O expression"
    if claimed == "O(1)" and _loops_over_input(code, name):
        return f"claims O(1) but `{name}` loops over its input"
    return check_names_identifiers(explanation, code, 1, "complexity explanation") \
        or check_repetition(explanation)


# -- translations (not executable here: checked for structure) -------------------------------


@dataclass(frozen=True)
class Language:
    title: str  # as the student reads it
    fence: str
    definitions: tuple[str, ...]  # regexes with {name}: how the function is defined
    python_only: tuple[str, ...]  # regexes that mark leftover Python syntax
    comment: str  # regex for comments
    arrow_return: str  # a function body without `return` that still returns (e.g. => expr)


LANGUAGES: dict[str, Language] = {
    "javascript": Language(
        title="JavaScript", fence="javascript",
        definitions=(r"\bfunction\s*\*?\s*{name}\s*\(",
                     r"\b(?:const|let|var)\s+{name}\s*=\s*(?:async\s+)?"
                     r"(?:function\b|\([^)]*\)\s*=>|[A-Za-z_$][\w$]*\s*=>)"),
        python_only=(r"^\s*def\s+\w+\s*\(", r"\belif\b", r"\bNone\b", r"\bTrue\b", r"\bFalse\b",
                     r"^\s*(?:if|for|while|else|try|except)\b[^{\n]*:\s*$", r"\bexcept\b",
                     r"\brange\(", r"\blen\(", r"\bprint\(", r"\s(?:and|or)\s", r"\bnot\s+\w",
                     r"\bself\.", r"\bimport\s+\w+\s*$"),
        comment=r"//[^\n]*|/\*.*?\*/",
        arrow_return=r"=>\s*[^{\s]"),
}

_STRING = re.compile(r"'(?:\\.|[^'\\\n])*'|\"(?:\\.|[^\"\\\n])*\"|`(?:\\.|[^`\\])*`", re.DOTALL)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def _balanced(code: str) -> bool:
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for ch in code:
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack


def check_translation(code: str, name: str, language: str, source_returns: bool = True
                      ) -> str | None:
    """A translation is checked for form: it is not Python, defines the function under its name
    (or camelCase), has balanced brackets, returns a value when the source does, and has no
    leftover Python syntax outside strings and comments."""
    lang = LANGUAGES[language]
    if not code.strip():
        return "translation is empty"
    tree, _ = parse(code)
    if tree is not None and any(isinstance(n, (ast.FunctionDef, ast.Lambda))
                                for n in ast.walk(tree)):
        return "translation is still Python"
    bare = re.sub(lang.comment, " ", _STRING.sub('""', code), flags=re.DOTALL)
    names = {name, _camel(name)}
    if not any(re.search(p.format(name=re.escape(n)), bare)
               for p in lang.definitions for n in names):
        return f"translation does not define `{_camel(name)}` in {lang.title}"
    if not _balanced(bare):
        return "translation has unbalanced brackets"
    if source_returns and not re.search(r"\breturn\b", bare) \
            and not re.search(lang.arrow_return, bare):
        return "translation never returns a value"
    for pattern in lang.python_only:
        match = re.search(pattern, bare, flags=re.MULTILINE)
        if match:
            return f"translation keeps Python syntax (`{match.group(0).strip()}`)"
    return None


def returns_value(code: str, name: str) -> bool:
    tree, _ = parse(code)
    fn = _functions(tree).get(name) if tree is not None else None
    return fn is not None and any(isinstance(n, ast.Return) and n.value is not None
                                  for n in ast.walk(fn))


# -- the bug planter --------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutant:
    code: str
    description: str  # e.g. "line 4: `i < n` became `i <= n`"


_SWAP_COMPARE = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
                 ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
                 ast.Is: ast.IsNot, ast.IsNot: ast.Is}
_SWAP_BINARY = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult,
                ast.Div: ast.FloorDiv, ast.Mod: ast.FloorDiv}
_SWAP_BOOL = {ast.And: ast.Or, ast.Or: ast.And}


def _sites(tree: ast.AST) -> list[tuple[int, str, int]]:
    """(position in ast.walk order, kind, operator index) of every place a bug can be planted."""
    sites = []
    for i, node in enumerate(ast.walk(tree)):
        if isinstance(node, ast.Compare):
            sites += [(i, "compare", j) for j, op in enumerate(node.ops)
                      if type(op) in _SWAP_COMPARE]
        elif isinstance(node, ast.BinOp) and type(node.op) in _SWAP_BINARY:
            sites.append((i, "binary", 0))
        elif isinstance(node, ast.BoolOp):
            sites.append((i, "bool", 0))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            sites.append((i, "not", 0))
        elif isinstance(node, ast.Constant) and type(node.value) is int \
                and abs(node.value) <= 10**6:
            sites.append((i, "constant", 0))
    return sites


def _replace(parent: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for field, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, field, new)
        elif isinstance(value, list):
            for k, item in enumerate(value):
                if item is old:
                    value[k] = new


def mutants(code: str) -> list[Mutant]:
    """Every single-point bug the planter can make in `code`: a flipped comparison, a swapped
    arithmetic or boolean operator, a dropped `not`, an off-by-one constant. Docstrings and
    comments are not touched (comments are lost: the mutant is unparsed from the AST)."""
    tree, _ = parse(code)
    if tree is None:
        return []
    out = []
    for index, kind, j in _sites(tree):
        copy = ast.parse(code)  # a fresh tree walks in the same order
        nodes = list(ast.walk(copy))
        parents = {child: node for node in nodes for child in ast.iter_child_nodes(node)}
        node = nodes[index]
        shown = node if kind in ("compare", "binary", "bool") else parents.get(node, node)
        if not isinstance(shown, ast.expr) and not (
                isinstance(shown, ast.stmt) and not hasattr(shown, "body")):
            shown = node  # a compound statement would print its whole body
        before = ast.unparse(shown)
        if kind == "compare":
            node.ops[j] = _SWAP_COMPARE[type(node.ops[j])]()
        elif kind == "binary":
            node.op = _SWAP_BINARY[type(node.op)]()
        elif kind == "bool":
            node.op = _SWAP_BOOL[type(node.op)]()
        elif kind == "not":
            _replace(parents[node], node, node.operand)
            if shown is node:
                shown = node.operand
        else:
            node.value += 1
        after = ast.unparse(shown)
        ast.fix_missing_locations(copy)
        mutated = ast.unparse(copy)
        if before != after and not same_program(mutated, code):
            out.append(Mutant(mutated, f"line {node.lineno}: `{before}` became `{after}`"))
    return out
