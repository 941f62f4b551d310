"""Coding: hand-written validator cases, the bug planter, real sandbox runs, and the whole flow
with a scripted teacher over real code and prose files."""

import asyncio
import re
import textwrap

import pytest

from agents.coding import checks as c
from agents.coding.skill import CodingSkill
from agents.registry import load_skill
from agents.tools import run_python
from tests.skill_harness import run_skill, skill_teacher


def code(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


RESTOCK = code("""
    def restock_needed(stock, level):
        low = []
        for name, qty in stock.items():
            if qty < level:
                low.append(name)
        return sorted(low)
""")
RESTOCK_TESTS = ("assert restock_needed({'tea': 1, 'milk': 5}, 3) == ['tea']\n"
                 "assert restock_needed({'tea': 3}, 3) == []\n"
                 "assert restock_needed({'b': 0, 'a': 2}, 3) == ['a', 'b']")
DUPLICATES = code("""
    def find_duplicates(items):
        seen = set()
        dups = []
        for item in items:
            if item in seen:
                dups.append(item)
            seen.add(item)
        return dups
""")
STOCK_VALUE = code("""
    def stock_value(stock, prices):
        total = 0
        for name, qty in stock.items():
            total += qty * prices.get(name, 0)
        return total
""")
STOCK_VALUE_JS = code("""
    function stockValue(stock, prices) {
      let total = 0;
      for (const [name, qty] of Object.entries(stock)) {
        total += qty * (prices[name] ?? 0);  // missing prices count as zero
      }
      return total;
    }
""")


# -- parsing helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize("raw, clean", [
    ("```python\ndef f():\n    return 1\n```", "def f():\n    return 1"),
    ("    def f():\n        return 1\n", "def f():\n    return 1"),
    ("def f():\n    return 1", "def f():\n    return 1"),
])
def test_fences_and_common_indentation_are_removed(raw, clean):
    assert c.strip_fences(raw) == clean


def test_same_program_ignores_formatting_comments_and_docstrings():
    assert c.same_program(RESTOCK, '"""doc"""\n' + RESTOCK.replace("low = []", "low = [ ]  # x"))
    assert not c.same_program(RESTOCK, RESTOCK.replace("<", "<="))


# -- task checks --------------------------------------------------------------------------------


@pytest.mark.parametrize("name, reason", [
    ("order_total", None),
    ("order total", "not a Python identifier"),
    ("class", "not a Python identifier"),
    ("__init__", "not a Python identifier"),
    ("sorted", "shadows a Python builtin"),
])
def test_function_names(name, reason):
    got = c.check_function_name(name)
    assert got is None if reason is None else reason in got


@pytest.mark.parametrize("source, reason", [
    (RESTOCK, None),
    ("async def restock_needed(s, l):\n    return [n for n in s if s[n] < l]", None),
    ("def restock_needed(stock, level):\nreturn []", "not valid Python (expected an indented block"),
    ("def other(stock):\n    return stock", "does not define `restock_needed`"),
    ("def restock_needed(stock, level):\n    '''Later.'''\n    pass", "as a stub"),
    ("def restock_needed(stock, level):\n    ...", "as a stub"),
    ("def restock_needed(stock, level):\n    raise NotImplementedError('todo')", "as a stub"),
    ("class Shop:\n    def restock_needed(self):\n        return 1", "does not define"),
])
def test_code_must_define_the_named_function_with_a_body(source, reason):
    got = c.check_defines(source, "restock_needed")
    assert got is None if reason is None else reason in got


@pytest.mark.parametrize("source, reason", [
    (DUPLICATES, None),
    ("total = sum(prices)\nprint(total)", None),
    ("x = (", "not valid Python"),
    ("print(1)", "too short"),
    ("print(1)\nprint(2)", "defines no names"),
])
def test_snippets_for_explanation(source, reason):
    got = c.check_snippet(source)
    assert got is None if reason is None else reason in got


@pytest.mark.parametrize("instruction, reason", [
    ("Return the total price of an order from prices and quantities.", None),
    ("order_total.execute()", "instruction too short"),
    ("Count the words of the passage above and return the count.", "refers to 'the passage'"),
    ("Sum the prices " + "and sum the prices " * 10, "degenerate repetition"),
])
def test_instructions_stand_on_their_own(instruction, reason):
    got = c.check_instruction(instruction)
    assert got is None if reason is None else reason in got


@pytest.mark.parametrize("instruction, reason", [
    ("Return the total price of an order from prices and quantities.", None),
    ("Write def order_total(prices, q): return 0 as the answer.", "contains the solution"),
    ("Compute it; the body is return sum(prices) basically.", "contains the solution"),
])
def test_implement_instruction_must_not_hold_the_solution(instruction, reason):
    got = c.check_gives_away(instruction, "order_total")
    assert got is None if reason is None else reason in got


@pytest.mark.parametrize("text, source, passage, reason", [
    ("Compute restock needs", "", "Shops restock shelves weekly.", None),
    ("", RESTOCK, "Each item has a reorder level and a stock count.", None),  # from identifiers
    ("", "def stockValue(items):\n    return len(items)", "stock value of a shop", None),
    ("Compute restock needs", RESTOCK, "Honey bees live in colonies.", "no subject word"),
])
def test_task_is_on_the_source_topic(text, source, passage, reason):
    got = c.check_code_on_topic(text, source, passage)
    assert got is None if reason is None else reason in got


@pytest.mark.parametrize("tests, reason", [
    (RESTOCK_TESTS, None),
    ("def test_low():\n    assert restock_needed({'a': 0}, 1) == ['a']\n"
     "    assert restock_needed({}, 1) == []", None),
    ("try:\n    restock_needed(None, 1)\n    assert False\nexcept AttributeError:\n    pass\n"
     "assert restock_needed({}, 1) == []\nassert restock_needed({'a': 1}, 0) == []", None),
    ("assert restock_needed({}, 1) == [", "not valid Python"),
    ("restock_needed({}, 1)\nprint('ok')", "contain no assert"),
    ("assert True\nassert restock_needed({}, 1) == []", "cannot fail"),
    ("x = [1]\nassert len(x) == 1\nassert x[0] == 1", "never call `restock_needed`"),
    ("assert restock_needed({}, 1) == []\nassert restock_needed({}, 1) == []", "1 distinct assert(s)"),
    ("def restock_needed(s, l):\n    return []\n" + RESTOCK_TESTS, "redefine `restock_needed`"),
    ("try:\n" + textwrap.indent(RESTOCK_TESTS, "    ") + "\nexcept AssertionError:\n    pass",
     "swallow failures"),
    ("try:\n" + textwrap.indent(RESTOCK_TESTS, "    ") + "\nexcept:\n    pass", "swallow failures"),
])
def test_tests_must_exercise_the_function(tests, reason):
    got = c.check_tests(tests, "restock_needed", min_asserts=2)
    assert got is None if reason is None else reason in got


def test_failure_summary_names_part_limit_line_and_last_stderr_line():
    stderr = ('Traceback (most recent call last):\n  File "test_main.py", line 2, in <module>\n'
              "    assert restock_needed({'tea': 3}, 3) == []\n           ^^^^^\nAssertionError\n")
    label, detail = c.failure_summary("tests", None, stderr)
    assert label == "tests part"
    assert detail.startswith("failed_part=tests limit_hit=None: AssertionError")
    assert "at: assert restock_needed({'tea': 3}, 3) == []" in detail
    label, detail = c.failure_summary("main", "cpu_time", "")
    assert label == "main part, cpu_time limit" and "(no stderr)" in detail


# -- answer checks ------------------------------------------------------------------------------


def test_a_fix_or_refactor_must_change_the_code():
    assert "fix returns the code unchanged" in c.check_changed(RESTOCK + "\n# done", RESTOCK, "fix")
    assert c.check_changed(RESTOCK.replace("<", "<="), RESTOCK, "fix") is None


def test_identifiers_count_short_names_only_in_backticks():
    source = "def area(w, h):\n    size = w * h\n    return size"
    assert c.defined_identifiers(source) == {"area", "w", "h", "size"}
    assert c.named_identifiers("area multiplies w by h into size", source) == {"area", "size"}
    assert c.named_identifiers("`w` times `h`", source) == {"w", "h"}
    assert c.named_identifiers("the area_total and sizes", source) == set()


GOOD_EXPLANATION = ("find_duplicates walks through items once, remembering every value in the set "
                    "seen; a value already in seen is appended to dups, which is returned.")


@pytest.mark.parametrize("text, reason", [
    (GOOD_EXPLANATION, None),
    ("It loops over the input once and collects every repeated value into a list that it returns.",
     "names no identifier"),
    ("The single loop in find_duplicates collects the values that appear more than once in the input.",
     "names 1 identifier(s) from the code, needs 2"),
    ("find_duplicates uses seen.", "too short"),
    ("find_duplicates with seen: " + "\n".join(DUPLICATES.splitlines()[1:]), "only repeats the code"),
    ("find_duplicates and seen " + "is the same thing again " * 8, "degenerate repetition"),
])
def test_explanations(text, reason):
    got = c.check_explanation(text, DUPLICATES)
    assert got is None if reason is None else reason in got


@pytest.mark.parametrize("text, expected", [
    ("O(n)", "O(n)"), ("runs in O( n log n ) time", "O(n log n)"), ("O(n^2)", "O(n^2)"),
    ("Θ(len(items))", "O(len(items))"), ("O(2**n)", "O(2**n)"), ("linear", None), ("O()", None),
    ("PO(n)", None),
])
def test_big_o_expressions(text, expected):
    assert c.big_o(text) == expected


@pytest.mark.parametrize("complexity, explanation, source, reason", [
    ("O(n)", "find_duplicates checks each of the items once against seen.", DUPLICATES, None),
    ("linear", "It is O(n): find_duplicates makes one pass over items.", DUPLICATES, None),
    ("constant", "find_duplicates is fast because seen is a set.", DUPLICATES, "no big-O expression"),
    ("O(1)", "find_duplicates uses a set, seen, so it is constant.", DUPLICATES,
     "claims O(1) but `find_duplicates` loops over its input"),
    ("O(1)", "area multiplies width by height.",
     "def area(width, height):\n    return width * height", None),
    ("O(1)", "countdown calls itself until n is 0.",
     "def countdown(n):\n    return 0 if n == 0 else countdown(n - 1)", "loops over its input"),
    ("O(n)", "It visits every element once.", DUPLICATES, "names no identifier"),
])
def test_complexity_answers(complexity, explanation, source, reason):
    name = re.search(r"def (\w+)", source).group(1)
    got = c.check_complexity(complexity, explanation, source, name)
    assert got is None if reason is None else reason in got


@pytest.mark.parametrize("translation, reason", [
    (STOCK_VALUE_JS, None),
    ("const stock_value = (stock, prices) => Object.keys(stock).length;", None),
    ("", "empty"),
    (STOCK_VALUE, "still Python"),
    ("function totalValue(stock, prices) {\n  return 0;\n}", "does not define `stockValue`"),
    ("function stockValue(stock, prices) {\n  return 0;\n", "unbalanced brackets"),
    ("function stockValue(stock, prices) {\n  let total = 0;\n}", "never returns"),
    ("function stockValue(stock, prices) {\n  if (stock === None) { return 0; }\n  return 1;\n}",
     "keeps Python syntax (`None`)"),
    ("function stockValue(stock, prices) {\n  return stock.length and prices.length;\n}",
     "keeps Python syntax (`and`)"),
    ("function stockValue(stock, prices) {\n  return len(stock);\n}", "keeps Python syntax (`len(`)"),
    # Python words inside strings and comments are not syntax
    ("function stockValue(stock, prices) {\n  // None and True are Python\n"
     "  return 'None of it';\n}", None),
])
def test_translations_are_checked_for_form(translation, reason):
    got = c.check_translation(translation, "stock_value", "javascript")
    assert got is None if reason is None else reason in got


# -- the bug planter, on real sandbox runs ------------------------------------------------------


def test_mutants_are_single_point_changes_with_a_description():
    found = c.mutants(RESTOCK)
    assert [m.description for m in found] == ["line 4: `qty < level` became `qty <= level`"]
    assert "if qty <= level:" in found[0].code
    kinds = {m.description.split(": ", 1)[1] for m in c.mutants(
        "def f(xs, k):\n    total = 0\n    for x in xs:\n        if x > k and not x % 2:\n"
        "            total += x * 2\n    return total - 1")}
    assert "`total = 0` became `total = 1`" in kinds
    assert "`x > k and (not x % 2)` became `x > k or not x % 2`" in kinds
    assert "`x > k and (not x % 2)` became `x > k and x % 2`" in kinds
    assert "`x * 2` became `x // 2`" in kinds and "`total - 1` became `total + 1`" in kinds
    assert c.mutants("def f(name):\n    return name") == [] and c.mutants("def (") == []


def test_a_planted_bug_fails_the_tests_and_the_reference_passes():
    async def runs():
        mutant = c.mutants(RESTOCK)[0]
        return (await run_python(RESTOCK, tests=RESTOCK_TESTS),
                await run_python(mutant.code, tests=RESTOCK_TESTS))
    reference, buggy = asyncio.run(runs())
    assert reference.ok
    assert not buggy.ok and buggy.failed_part == "tests" and "AssertionError" in buggy.stderr


def test_skill_refuses_a_taxonomy_it_cannot_check(tmp_path):
    import shutil
    folder = tmp_path / "coding"
    shutil.copytree(load_skill("coding").folder, folder)
    toml = (folder / "skill.toml").read_text()
    (folder / "skill.toml").write_text(toml.replace('language = "javascript"', 'language = "cobol"'))
    with pytest.raises(ValueError, match="params.language"):
        CodingSkill(folder)
    (folder / "skill.toml").write_text(toml.replace('expects = "complexity"', 'expects = "vibes"'))
    with pytest.raises(ValueError, match="unknown expects 'vibes'"):
        CodingSkill(folder)


# -- the whole flow -----------------------------------------------------------------------------

INVENTORY = '''"""Stock keeping for a small shop: items, quantities, reorder levels and prices."""


def restock_needed(stock, level):
    """Names of items whose quantity fell below the reorder level, sorted."""
    return sorted(name for name, qty in stock.items() if qty < level)


def order_total(prices, quantities):
    """Total price of an order: each item's price times the quantity ordered."""
    return sum(prices.get(item, 0) * qty for item, qty in quantities.items())


def stock_value(stock, prices):
    """Value of everything on the shelves at current prices."""
    return sum(qty * prices.get(name, 0) for name, qty in stock.items())
'''

# one task per type: (instruct reply, tests-stage reply or None, good answer)
TASKS = {
    "implement_function": (
        {"function_name": "order_total",
         "instruction": "Return the total price of an order given item prices and ordered "
                        "quantities; items without a price count as zero."},
        "assert order_total({'tea': 2.5}, {'tea': 4}) == 10.0\n"
        "assert order_total({'tea': 2}, {}) == 0\nassert order_total({}, {'milk': 3}) == 0",
        {"explanation": "Multiply each ordered quantity by its price, defaulting to zero.",
         "code": "def order_total(prices, quantities):\n"
                 "    return sum(prices.get(k, 0) * q for k, q in quantities.items())"}),
    "find_and_fix_bug": (
        {"function_name": "restock_needed",
         "instruction": "Return the sorted names of items whose stock is below the level.",
         "code": RESTOCK},
        RESTOCK_TESTS,
        {"explanation": "An item exactly at the reorder level does not need restocking.",
         "code": RESTOCK}),
    "refactor": (
        {"function_name": "apply_discount",
         "instruction": "Remove the duplicated branches and give the stock price variables "
                        "clear names.",
         "code": "def apply_discount(p, pct):\n    if pct > 0:\n        r = p - p * pct / 100\n"
                 "        return round(r, 2)\n    else:\n        r = p\n        return round(r, 2)"},
        "assert apply_discount(200, 10) == 180.0\nassert apply_discount(50, 0) == 50\n"
        "assert apply_discount(80, 25) == 60.0",
        {"explanation": "One expression covers both branches.",
         "code": "def apply_discount(price, percent):\n"
                 "    return round(price * (1 - percent / 100), 2)"}),
    "write_tests": (
        {"function_name": "units_to_packs",
         "code": "def units_to_packs(quantity, pack_size):\n    if quantity <= 0:\n        return 0\n"
                 "    return (quantity + pack_size - 1) // pack_size"},
        None,
        {"tests": "assert units_to_packs(10, 4) == 3\nassert units_to_packs(8, 4) == 2\n"
                  "assert units_to_packs(0, 4) == 0\nassert units_to_packs(1, 6) == 1"}),
    "translate_code": (
        {"function_name": "stock_value", "code": STOCK_VALUE},
        None,
        {"code": "```javascript\n" + STOCK_VALUE_JS + "\n```"}),
    "explain_code": (
        {"instruction": "What does low_stock_report return when every item is above the level?",
         "code": "def low_stock_report(stock, level):\n    lines = []\n"
                 "    for name in sorted(stock):\n        if stock[name] < level:\n"
                 "            lines.append(name + ': ' + str(stock[name]))\n"
                 "    return '; '.join(lines)"},
        None,
        {"explanation": "low_stock_report walks the item names of stock in sorted order and keeps "
                        "those whose quantity is below level, as 'name: quantity' entries in "
                        "lines. When every item is at or above level, lines stays empty and the "
                        "function returns an empty string."}),
    "complexity_analysis": (
        {"function_name": "find_duplicates", "code": DUPLICATES},
        None,
        {"complexity": "O(n)",
         "explanation": "find_duplicates visits each of the items once; the membership test on "
                        "the set seen is O(1) on average."}),
}
NAME_TO_TYPE = {"low_stock_report": "explain_code",
                **{t[0]["function_name"]: k for k, t in TASKS.items() if "function_name" in t[0]}}

# deliberately bad replies, by (stage, type, how many times that stage ran for the type)
BAD = {
    ("tests", "implement_function", 1): "total = 1\nassert total == 1\nassert total > 0",
    ("tests", "find_and_fix_bug", 1): "assert restock_needed({'tea': 1}, 3) == ['milk']\n"
                                      "assert restock_needed({}, 3) == []",
    ("tests", "find_and_fix_bug", 2): "assert restock_needed({'a': 1}, 3) is not None\n"
                                      "assert restock_needed({}, 3) is not None",
    ("respond", "implement_function", 1): {
        "explanation": "Add up the prices.",
        "code": "def order_total(prices, quantities):\n    return sum(prices.values())"},
    ("respond", "find_and_fix_bug", 1): "unchanged",
    ("respond", "refactor", 1): {"explanation": "Loops until done.",
                                 "code": "def apply_discount(price, percent):\n    while True:\n"
                                         "        pass"},
    ("respond", "write_tests", 1): {"tests": "assert units_to_packs(10, 4) is not None\n"
                                             "assert units_to_packs(0, 4) is not None\n"
                                             "assert units_to_packs(3, 1) is not None"},
    ("respond", "translate_code", 1): {"code": STOCK_VALUE},
    ("respond", "explain_code", 1): {
        "explanation": "It goes through every entry, builds a text report of the items that are "
                       "running low and hands that report back to the caller as one string."},
    ("respond", "complexity_analysis", 1): {
        "complexity": "O(1)", "explanation": "find_duplicates uses the set seen, so it is fast."},
}
EXPECTED_REJECTIONS = {
    "tests never call `order_total` in an assert",
    "reference code fails its own tests (tests part)",
    "tests catch none of the 1 planted bug(s)",
    "answer code fails the tests (tests part)",
    "fix returns the code unchanged",
    "answer's tests catch none of the",
    "translation is still Python",
    "explanation names no identifier from the code",
    "claims O(1) but `find_duplicates` loops over its input",
}


def coding_teacher(topic_words: str = ""):
    seen: dict[tuple[str, str], int] = {}

    def count(stage, kind):
        seen[stage, kind] = seen.get((stage, kind), 0) + 1
        return BAD.get((stage, kind, seen[stage, kind]))

    def reply(prompt, schema):
        props = schema.get("properties", {})
        if "text" in props:  # transformations: hand the source back
            return {"text": prompt.split("Source:\n", 1)[1].rsplit("\n\nReply in JSON", 1)[0]}
        if "\nWrite ONE Python coding task" in prompt:
            kind = re.search(r'type "([a-z ]+)"', prompt).group(1).replace(" ", "_")
            task = dict(TASKS[kind][0])
            if "instruction" in task and topic_words:
                task["instruction"] += f" Think of {topic_words}."
            return task
        if prompt.startswith("Write tests for the Python function"):
            kind = NAME_TO_TYPE[re.search(r"function `(\w+)`", prompt).group(1)]
            bad = count("tests", kind)
            return {"tests": bad or TASKS[kind][1]}
        if set(props) & {"code", "tests", "explanation", "complexity"} \
                and "\nRewrite the task" not in prompt:
            kind = next(NAME_TO_TYPE[n] for n in NAME_TO_TYPE if re.search(rf"\b{n}\b", prompt))
            bad = count("respond", kind)
            if bad == "unchanged":  # the buggy code the student was shown, handed back
                buggy = prompt.rsplit("```python\n", 1)[1].split("\n```", 1)[0]
                return {"explanation": "Looks fine to me.", "code": buggy}
            return bad or TASKS[kind][2]
        return None  # suggest/edit: the harness fills the schema with prompt words

    return skill_teacher(reply)


@pytest.fixture
def code_corpus(tmp_path):
    root = tmp_path / "code"
    root.mkdir()
    (root / "inventory.py").write_text(INVENTORY, encoding="utf-8")
    (root / "notes.md").write_text("# Notes\n\nThe shop counts stock every Friday evening.\n")
    return root


def test_flow_runs_answers_in_the_sandbox_and_rejects_with_precise_reasons(code_corpus, tmp_path):
    # one record per type and, with in-flight items counted against that cap, never two items of
    # a type at once: the endless refactor's sandbox verdict always comes back before the second
    # refactor item starts, so the run cannot end with it abandoned in flight
    summary, data, rejected = run_skill("coding", code_corpus, tmp_path / "out", coding_teacher(),
                                        num=7, max_attempts=40, max_type_share=1.0,
                                        flow={"refine_rounds": 0})
    assert summary["complete"] and len(data) == 7
    by_type = {r["metadata"]["instruction_type"]: r for r in data}
    assert set(by_type) == set(TASKS)
    for rec in data:
        meta = rec["metadata"]
        assert meta["split"] == "code_" and meta["source"]["doc_path"] == "inventory.py"
        assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant"]
        assert rec["messages"][0]["content"].startswith("You are an expert Python programmer")
        assert meta["instruction"] == rec["messages"][1]["content"]

    impl = by_type["implement_function"]
    assert impl["metadata"]["task"]["tests"] == TASKS["implement_function"][1]
    assert "`order_total`" in impl["messages"][1]["content"]
    assert "```python\nassert order_total(" in impl["messages"][1]["content"]
    assert impl["messages"][2]["content"].endswith(
        "```python\n" + TASKS["implement_function"][2]["code"] + "\n```")
    assert [r["run"] for r in impl["metadata"]["sandbox_runs"]] == ["answer"]
    assert impl["metadata"]["sandbox_runs"][0]["ok"] is True

    fix = by_type["find_and_fix_bug"]
    task = fix["metadata"]["task"]
    assert task["planted_bug"] == "line 4: `qty < level` became `qty <= level`"
    assert "if qty <= level:" in task["buggy_code"] and task["buggy_code"] in fix["messages"][1]["content"]
    assert "if qty < level:" not in fix["messages"][1]["content"]  # the student sees only the bug
    assert [(r["run"], r["ok"]) for r in fix["metadata"]["sandbox_runs"]] == [
        ("reference", True), ("mutant", False), ("answer", True)]  # bug real, fix proven

    refactor = by_type["refactor"]
    assert [(r["run"], r["ok"]) for r in refactor["metadata"]["sandbox_runs"]] == [
        ("reference", True), ("answer", True)]

    tests = by_type["write_tests"]
    assert tests["messages"][2]["content"].startswith("```python\nassert units_to_packs(10, 4) == 3")
    assert tests["metadata"]["caught_bug"] and tests["metadata"]["sandbox_runs"][0]["run"] == "answer"

    js = by_type["translate_code"]
    assert js["metadata"]["language"] == "javascript" and "to JavaScript" in js["messages"][1]["content"]
    assert js["messages"][2]["content"] == "```javascript\n" + STOCK_VALUE_JS + "\n```"

    assert by_type["complexity_analysis"]["messages"][2]["content"].endswith("Time complexity: O(n)")
    assert by_type["explain_code"]["messages"][2]["content"].startswith("low_stock_report walks")
    assert "```python\ndef low_stock_report" in by_type["explain_code"]["messages"][1]["content"]

    reasons = [r["reason"] for r in rejected]
    for expected in EXPECTED_REJECTIONS:
        assert any(expected in r for r in reasons), (expected, reasons)
    # the endless refactor; killed on the wall clock the sandbox cannot tell which part ran
    assert any(re.fullmatch(r"answer code fails the tests \((main|tests) part, (wall|cpu)_time "
                            r"limit\)", r["reason"]) for r in rejected), reasons
    failing = next(r for r in rejected if r["reason"] == "answer code fails the tests (tests part)")
    assert failing["stage"] == "validate" and failing["subcategory"] == "implement_function"
    assert failing["detail"] == ("failed_part=tests limit_hit=None: AssertionError "
                                 "(at: assert order_total({'tea': 2.5}, {'tea': 4}) == 10.0)")
    assert next(r for r in rejected if "reference code fails" in r["reason"])["stage"] == "tests"


def test_prose_seeds_work_and_off_topic_tasks_are_rejected(corpus, tmp_path):
    """No code in the corpus: prose chunks are the seeds. Tasks carrying words of the passage
    pass; tasks with nothing from the passage (inventory code on volcanoes) are rejected."""
    topic = "volcanoes, bees, railways and coffee"
    summary, data, rejected = run_skill("coding", corpus, tmp_path / "out",
                                        coding_teacher(topic), num=2, max_attempts=30,
                                        flow={"refine_rounds": 1})
    assert summary["complete"] and len(data) == 2
    for rec in data:
        assert rec["metadata"]["instruction_type"] in {
            "implement_function", "find_and_fix_bug", "refactor", "explain_code"}
        assert not rec["metadata"]["source"]["doc_path"].endswith(".py")
        refinement = rec["metadata"]["refinement"]
        assert len(refinement) == 1 and refinement[0]["kept"] is False  # word-salad edit dropped
        assert refinement[0]["dropped_because"]
    assert any(r["reason"] == "task shares no subject word with its source passage"
               for r in rejected)
