"""Data to text: hand-written validator cases, and the flow (tabulate → instruct → respond, both
directions) with a scripted teacher over real files."""

import csv
import io
import json
import re

import pytest

from agents.data_to_text.skill import (
    Table, check_asks_for, check_cells_from_text, check_columns, check_form, check_mentions_rows,
    check_numbers_from_table, check_rows, check_table, render_table, rows_model)
from tests.skill_harness import run_skill, skill_teacher

SOURCE = ("Mount Etna in Sicily rises about 3,357 metres and is one of the most active volcanoes. "
          "Mauna Loa in Hawaii is a shield volcano. The 1815 eruption of Mount Tambora in "
          "Indonesia caused the year without a summer in 1816.")
TABLE = Table(title="Volcanoes", columns=["Volcano", "Place", "Figure"],
              rows=[["Mount Etna", "Sicily", "3,357 m"], ["Mount Tambora", "Indonesia", "1815"],
                    ["Mauna Loa", "Hawaii", "shield volcano"]])


# -- the table ----------------------------------------------------------------------------------

def test_a_grounded_well_formed_table_passes():
    assert check_table(TABLE, SOURCE) is None


@pytest.mark.parametrize("change, reason", [
    ({"title": "..."}, "table title is empty or a placeholder"),
    ({"columns": ["Volcano", "...", "Figure"]}, "column name '...' is empty or a placeholder"),
    ({"columns": ["Volcano", "place", "Place"]}, "duplicate column 'place'"),
    ({"rows": [["Mount Etna", "Sicily"], ["Mount Tambora", "Indonesia", "1815"]]},
     "row 1 has 2 cells for 3 columns"),
    ({"rows": [["Mount Etna", "Sicily", "3,357 m"], ["Mount Tambora", " ", "1815"]]},
     "row 2 has an empty or placeholder cell ''"),
    ({"rows": [["Mount Etna", "Sicily", "3,357 m"], ["mount etna", "Sicily", "3357 m"]]},
     "table repeats a row"),
    ({"rows": [["Mount Etna", "Sicily", "3,357 m"], ["Mount Fuji", "Japan", "3,776 m"]]},
     "cell 'Mount Fuji' does not occur in the source text"),
    ({"rows": [["Mount Etna", "Sicily", "3,358 m"], ["Mount Tambora", "Indonesia", "1815"]]},
     "cell '3,358 m' does not occur in the source text"),
])
def test_broken_tables_are_caught(change, reason):
    assert check_table(TABLE.model_copy(update=change), SOURCE) == reason


def test_columns_rows_and_cells_separately():
    assert check_columns(["Name", "Height"]) is None
    assert check_rows([["a", "b"]], 2) is None
    assert check_rows([], 2) == "table has no rows"
    assert check_cells_from_text([["Sicily", "3357"]], SOURCE) is None
    assert check_cells_from_text([["Sicily", "Italy"]], SOURCE) == \
        "cell 'Italy' does not occur in the source text"


# -- the generated text -------------------------------------------------------------------------

def test_numbers_in_the_text_must_be_in_the_table():
    assert check_numbers_from_table("Mount Etna rises 3357 m; Tambora erupted in 1815.", TABLE) is None
    assert check_numbers_from_table("Etna is 3,357.0 metres high.", TABLE) is None
    assert check_numbers_from_table("The three volcanoes include Etna.", TABLE) is None
    assert check_numbers_from_table("1. Etna: 3,357 m\n2) Tambora: 1815", TABLE) is None
    assert check_numbers_from_table("Tambora erupted in 1815 and again in 1816.", TABLE) == \
        "number 1816 in the text is not in the table"
    assert check_numbers_from_table("Etna is 3 km high.", TABLE) == \
        "number 3 in the text is not in the table"


def test_text_must_use_enough_rows():
    text = "Mount Etna in Sicily is taller than Mount Tambora."
    assert check_mentions_rows(text, TABLE, 2) is None
    assert check_mentions_rows("Mount Etna is in Sicily.", TABLE, 2) == \
        "text uses values from 1 row(s) of the table, needs 2"
    assert check_mentions_rows("Volcanoes are mountains.", TABLE, 1) == \
        "text uses values from 0 row(s) of the table, needs 1"


@pytest.mark.parametrize("instruction, keywords, reason", [
    ("Write a short report on the volcanoes.", ["report"], None),
    ("Compare Etna with Tambora.", ["compar", "contrast"], None),
    ("Write a poem about volcanoes.", ["report"],
     "instruction does not ask for a report (none of: report)"),
])
def test_instruction_asks_for_its_type(instruction, keywords, reason):
    assert check_asks_for(instruction, keywords, "report") == reason


def test_highlights_are_bullets():
    assert check_form("- Etna: 3,357 m\n- Tambora: 1815", "bullets") is None
    assert check_form("1. Etna\n2. Tambora", "bullets") is None
    assert check_form("Etna is high. Tambora erupted.", "bullets") == \
        "highlights are not a bullet list of two or more points"
    assert check_form("Etna is high.", "any") is None


# -- rendering and the answer schema --------------------------------------------------------------

def test_the_data_renders_as_markdown_json_or_csv():
    md = render_table(TABLE.title, TABLE.columns, TABLE.rows, "markdown")
    assert md.splitlines()[2:4] == ["| Volcano | Place | Figure |", "|---|---|---|"]
    records = json.loads(render_table(TABLE.title, TABLE.columns, TABLE.rows, "json"))
    assert records["rows"][0] == {"Volcano": "Mount Etna", "Place": "Sicily", "Figure": "3,357 m"}
    parsed = list(csv.reader(io.StringIO(render_table("", TABLE.columns, TABLE.rows, "csv"))))
    assert parsed[0] == TABLE.columns and parsed[1] == TABLE.rows[0]


def test_text_to_table_answer_schema_fixes_the_row_width():
    schema = rows_model(3).model_json_schema()
    row = schema["properties"]["rows"]["items"]
    assert row["minItems"] == row["maxItems"] == 3


# -- the flow -----------------------------------------------------------------------------------

NAMES = re.compile(r"\b[A-Z][a-z]{3,}\b")
FIGURES = re.compile(r"\b\d{1,3}(?:,\d{3})+\b|\b\d{2,}\b")
INSTRUCTIONS = {"report": "Write a short report on {s}.", "profile": "Write a profile of {s}.",
                "summary": "Write a summary of the data about {s}.",
                "comparison": "Compare {s} on their figures.",
                "highlights": "List the highlights about {s} as bullet points."}


def _rows(text: str) -> list[list[str]]:
    names = list(dict.fromkeys(NAMES.findall(text)))
    figures = list(dict.fromkeys(FIGURES.findall(text)))
    return [[names[0], figures[0]], [names[1], figures[1]]]


def test_flow_writes_both_directions_and_rejects_ungrounded_output(corpus, tmp_path):
    tables: list[dict] = []
    calls = {"tabulate": 0, "text": 0, "rows": 0}

    def reply(prompt, schema):
        props = schema.get("properties", {})
        source = prompt.split('"""')[1] if '"""' in prompt else ""
        if set(props) == {"text"} and "Passage:" in prompt:  # transformations: unchanged
            return {"text": prompt.split("Passage:\n", 1)[1].rsplit("\n\nReply", 1)[0][:1500]}
        if "title" in props:  # the tabulate step; the first table holds a placeholder
            calls["tabulate"] += 1
            rows = _rows(source)
            if calls["tabulate"] == 1:
                rows[1][0] = "..."
            table = {"title": "Facts", "columns": ["Name", "Figure"], "rows": rows}
            if calls["tabulate"] > 1:
                tables.append(table)
            return table
        if "columns" in props:  # text → table instruction (instruct or edit)
            names = NAMES.findall(source)
            return {"instruction": f"Make a table of {names[0]} and {names[1]} from the text.",
                    "columns": ["Name", "Figure"]}
        if set(props) == {"instruction"}:  # data → text instruction (instruct or edit)
            kind = re.search(r'type "([a-z ]+)"', prompt).group(1)
            subject = " and ".join(NAMES.findall(source)[:2]) or "the data"
            return {"instruction": INSTRUCTIONS[kind].format(s=subject)}
        if "text" in props:  # data → text answer: bullets quoting two rows
            calls["text"] += 1
            rows = next(t["rows"] for t in tables if t["rows"][0][0] in prompt)
            extra = " and 987654 more" if calls["text"] == 1 else ""
            return {"text": f"- {rows[0][0]} has {rows[0][1]}{extra}.\n"
                            f"- {rows[1][0]} has {rows[1][1]}, as the data shows."}
        if "rows" in props:  # text → table answer; the first one invents a cell
            calls["rows"] += 1
            rows = _rows(source)
            if calls["rows"] == 1:
                rows[0][0] = "Atlantis"
            return {"rows": rows}
        return None

    summary, data, rejected = run_skill("data_to_text", corpus, tmp_path / "out",
                                        skill_teacher(reply), num=4, flow={"refine_rounds": 1})
    assert summary["complete"] and len(data) == 4
    for rec in data:
        meta = rec["metadata"]
        assert meta["split"] == "struct2text_flow"
        assert meta["data_format"] in ("markdown", "json", "csv")
        assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant"]
        user, answer = rec["messages"][1]["content"], rec["messages"][2]["content"]
        first_cell = meta["table"]["rows"][0][0]
        if meta["instruction_type"] == "text_to_table":
            assert meta["direction"] == "to_table"
            assert 'Text:\n"""' in user and "Columns: Name, Figure" in user
            assert first_cell in answer and meta["validator_scores"]["cells_in_text"] == 1.0
            if meta["data_format"] == "csv":
                assert answer.splitlines()[0] == "Name,Figure"
        else:
            assert meta["direction"] == "to_text"
            assert meta["instruction_type"] in INSTRUCTIONS
            assert meta["task"]["instruction"] in user and first_cell in user
            assert answer.startswith(f"- {first_cell} has ") and "..." not in answer
            assert meta["validator_scores"]["numbers_in_table"] == 1.0
    stages = {(r["stage"], r["reason"]) for r in rejected}
    assert ("tabulate", "row 2 has an empty or placeholder cell '...'") in stages
    assert ("validate", "number 987654 in the text is not in the table") in stages
    assert ("validate", "cell 'Atlantis' does not occur in the source text") in stages
