"""Data to text, both ways. For data → text types a teacher step first turns the seed into a small
table (every cell copied from the seed); the student sees the table as markdown, JSON or CSV and
writes a report, profile, summary, comparison or highlights whose every number is in the table.
For text → table the student sees the text and fills a table with the task's columns, every cell
copied from the text."""

from __future__ import annotations

import csv
import io
import json
import random
import re
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints, create_model

from agents.fields import line_field
from agents.flow import FlowContext, Trace
from agents.items import Rejected, WorkItem
from agents.rag.validators import check_repetition
from agents.task import Draft, TaskSkill
from agents.text_extraction.grounding import is_placeholder, normalize, numbers, occurs

# bounds keep a table's JSON (which the small teacher pretty-prints, spending tokens on
# indentation) well inside max_tokens=320: 4 rows x 3 cells of 20 characters
Cell = Annotated[str, StringConstraints(min_length=1, max_length=20)]
Column = Annotated[str, StringConstraints(min_length=1, max_length=20)]
FORMATS = {"markdown": "a markdown table", "json": "JSON records", "csv": "CSV"}
BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+\S", re.MULTILINE)
LIST_NUMBER = re.compile(r"^\s*\d+[.)]\s", re.MULTILINE)


class Table(BaseModel):
    """The data: rows of cells under named columns (each row a key/value record)."""

    title: str = Field(min_length=3, max_length=40)
    columns: list[Column] = Field(min_length=2, max_length=3)
    rows: list[Annotated[list[Cell], Field(min_length=2, max_length=3)]] = Field(
        min_length=2, max_length=4)

    def records(self) -> list[dict[str, str]]:
        return [dict(zip(self.columns, row)) for row in self.rows]


class DataTask(BaseModel):
    instruction: str = line_field(12, 300)


class TableTask(BaseModel):
    instruction: str = line_field(12, 240)
    columns: list[Column] = Field(min_length=2, max_length=3)


class Report(BaseModel):
    text: str = Field(min_length=40, max_length=900)


class TableRows(BaseModel):
    rows: list[list[str]]


def rows_model(width: int) -> type[BaseModel]:
    """The text → table answer: rows of exactly `width` cells (the task's columns)."""
    return create_model("TableRows", __base__=TableRows, rows=(
        list[Annotated[list[Annotated[str, StringConstraints(max_length=30)]],
                       Field(min_length=width, max_length=width)]],
        Field(min_length=1, max_length=5)))


# -- rendering --------------------------------------------------------------------------------

def render_table(title: str, columns: list[str], rows: list[list[str]], fmt: str) -> str:
    """The data as the student sees it: a markdown table, JSON records or CSV."""
    if fmt == "json":
        return json.dumps({"title": title, "rows": [dict(zip(columns, r)) for r in rows]}
                          if title else [dict(zip(columns, r)) for r in rows],
                          indent=2, ensure_ascii=False)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        return buf.getvalue().strip()
    cell = lambda s: " ".join(str(s).split()).replace("|", "\\|")  # noqa: E731
    lines = [f"| {' | '.join(cell(c) for c in columns)} |",
             "|" + "|".join("---" for _ in columns) + "|"]
    lines += [f"| {' | '.join(cell(c) for c in r)} |" for r in rows]
    return (f"{title}\n\n" if title else "") + "\n".join(lines)


def pick_format(params: dict[str, Any], seed: int) -> str:
    formats = [f for f in params.get("formats", ["markdown"]) if f in FORMATS] or ["markdown"]
    return random.Random(seed).choice(formats)


def shape(width: int) -> str:
    row = "[" + ", ".join(['"..."'] * width) + "]"
    return f"[{row}, {row}]"


# -- validators: pure functions returning a reason, or None -----------------------------------

def check_columns(columns: list[str]) -> str | None:
    for c in columns:
        if is_placeholder(c):
            return f"column name {c.strip()!r} is empty or a placeholder"
    names = [normalize(c) for c in columns]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        return f"duplicate column {dupes[0]!r}"
    return None


def check_rows(rows: list[list[str]], width: int) -> str | None:
    """Well-formed: rows exist, each with one non-empty cell per column, none repeated."""
    if not rows:
        return "table has no rows"
    for i, row in enumerate(rows, 1):
        if len(row) != width:
            return f"row {i} has {len(row)} cells for {width} columns"
        for c in row:
            if is_placeholder(c):
                return f"row {i} has an empty or placeholder cell {str(c).strip()!r}"
    keys = [tuple(normalize(c) for c in r) for r in rows]
    if len(set(keys)) < len(keys):
        return "table repeats a row"
    return None


def check_cells_from_text(rows: list[list[str]], text: str) -> str | None:
    """Every cell value is written in (or normalises from) the source text."""
    for row in rows:
        for c in row:
            if not occurs(c, text):
                return f"cell {c.strip()[:40]!r} does not occur in the source text"
    return None


def check_table(table: Table, source: str) -> str | None:
    """The tabulated seed: named columns, well-formed rows, every cell from the seed."""
    if is_placeholder(table.title):
        return "table title is empty or a placeholder"
    return (check_columns(table.columns) or check_rows(table.rows, len(table.columns))
            or check_cells_from_text(table.rows, source))


def table_numbers(table: Table) -> set[str]:
    return numbers(" ; ".join([table.title, *table.columns, *(c for r in table.rows for c in r)]))


def stated_numbers(text: str) -> set[str]:
    """The numbers a text states, leaving out the numbering of a list ("1. ", "2) ")."""
    return numbers(LIST_NUMBER.sub(" ", text))


def check_numbers_from_table(text: str, table: Table) -> str | None:
    """Every number the text states is in the data (1,000 and 1000 are the same number)."""
    known = table_numbers(table)
    for n in sorted(stated_numbers(text), key=lambda x: (len(x), x)):
        if n not in known:
            return f"number {n} in the text is not in the table"
    return None


def rows_mentioned(text: str, table: Table) -> int:
    """Rows of the table the text uses: at least one of the row's cells occurs in the text."""
    return sum(any(occurs(c, text) for c in row) for row in table.rows)


def check_mentions_rows(text: str, table: Table, least: int) -> str | None:
    least = min(least, len(table.rows))
    found = rows_mentioned(text, table)
    if found < least:
        return f"text uses values from {found} row(s) of the table, needs {least}"
    return None


def check_asks_for(instruction: str, keywords: list[str], kind: str) -> str | None:
    """The instruction asks for the subcategory's kind of output."""
    text = normalize(instruction)
    if keywords and not any(k in text for k in keywords):
        return f"instruction does not ask for a {kind} (none of: {', '.join(keywords)})"
    return None


def check_form(text: str, expects: str) -> str | None:
    if expects == "bullets" and len(BULLET.findall(text)) < 2:
        return "highlights are not a bullet list of two or more points"
    return None


class DataToTextSkill(TaskSkill):
    task_model = DataTask
    answer_model = Report

    @staticmethod
    def direction(draft: Draft) -> str:
        return draft.sub.params.get("direction", "to_text")

    def table(self, draft: Draft) -> Table:
        return Table.model_validate(draft.extra["table"])

    def task_schema(self, sub) -> type[BaseModel]:
        return TableTask if sub.params.get("direction") == "to_table" else DataTask

    def answer_schema(self, draft: Draft) -> type[BaseModel]:
        if self.direction(draft) == "to_table":
            return rows_model(len(draft.task.columns))
        return Report

    def instruction_text(self, draft: Draft) -> str:
        if self.direction(draft) == "to_table":
            return f"{draft.task.instruction}\nColumns: {', '.join(draft.task.columns)}"
        table = self.table(draft)
        return f"{draft.task.instruction}\n{table.title}: {', '.join(table.columns)}"

    def check_task(self, draft: Draft) -> str | None:
        problem = super().check_task(draft) or check_asks_for(
            draft.task.instruction, draft.sub.params.get("keywords", []),
            draft.sub.name.replace("_", " "))
        if problem or self.direction(draft) != "to_table":
            return problem
        return check_columns(draft.task.columns)

    async def start(self, ctx: FlowContext, trace: Trace, item: WorkItem) -> Draft:
        draft = await super().start(ctx, trace, item)
        sub, passage = draft.sub, draft.passage
        fmt = pick_format(sub.params, item.seed)
        draft.extra.update(direction=self.direction(draft), data_format=fmt)
        if self.direction(draft) == "to_text":
            # the data stage: the seed as a table; the student and the teacher then see only it
            table = await self.ask(ctx, trace, "tabulate", self.render("tabulate.j2",
                                                                       passage=passage),
                                   Table, item.seed + 3)
            trace.steps.append({"step": "tabulate", "table": table.model_dump()})
            if problem := check_table(table, passage):
                raise Rejected("tabulate", problem, raw=table.model_dump_json())
            draft.extra["table"] = table.model_dump()
            draft.passage = render_table(table.title, table.columns, table.rows, fmt)

        return draft

    async def validate(self, ctx: FlowContext, draft: Draft) -> str | None:
        if self.direction(draft) == "to_table":
            columns, rows = draft.task.columns, draft.answer.rows
            cells = [c for r in rows for c in r]
            draft.scores["cells_in_text"] = (sum(occurs(c, draft.passage) for c in cells)
                                             / len(cells) if cells else 0.0)
            draft.extra["table"] = {"title": "", "columns": columns, "rows": rows}
            return check_rows(rows, len(columns)) or check_cells_from_text(rows, draft.passage)
        text, table = draft.answer.text, self.table(draft)
        stated = stated_numbers(text)
        draft.scores["numbers_in_table"] = (len(stated & table_numbers(table)) / len(stated)
                                            if stated else 1.0)
        draft.scores["rows_mentioned"] = rows_mentioned(text, table)
        return (check_repetition(text) or check_numbers_from_table(text, table)
                or check_mentions_rows(text, table, draft.sub.params.get("mention_rows", 1))
                or check_form(text, draft.sub.expects))

    def assistant_turn(self, draft: Draft) -> str:
        if self.direction(draft) == "to_table":
            return render_table("", draft.task.columns, draft.answer.rows,
                                draft.extra["data_format"])
        return draft.answer.text.strip()

    def _values(self, draft: Draft) -> dict[str, Any]:
        fmt = draft.extra.get("data_format", "markdown")
        values = super()._values(draft) | {"format_name": FORMATS[fmt], "data": draft.passage}
        if isinstance(draft.task, TableTask):
            values["shape"] = shape(len(draft.task.columns))
        return values


SKILL = DataToTextSkill
