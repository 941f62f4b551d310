"""Record layouts users train on: OpenAI `messages` (default), ShareGPT `conversations`, and
Alpaca instruction/input/output (single-turn only). Every layout keeps `id`, `skill`,
`subcategory` and `metadata`, which resume and export read."""

from __future__ import annotations

from typing import Literal

from agents.items import Record

Format = Literal["openai", "sharegpt", "alpaca"]
FORMATS: tuple[str, ...] = ("openai", "sharegpt", "alpaca")
SHAREGPT_ROLE = {"system": "system", "user": "human", "assistant": "gpt", "tool": "tool"}


class FormatError(ValueError):
    pass


def render(record: Record, fmt: Format) -> dict:
    base = {"id": record.id, "skill": record.skill, "subcategory": record.subcategory}
    messages = [m.model_dump() for m in record.messages]
    if fmt == "openai":
        return base | {"messages": messages, "metadata": record.metadata}
    if fmt == "sharegpt":
        return base | {"conversations": [{"from": SHAREGPT_ROLE[m["role"]], "value": m["content"]}
                                         for m in messages], "metadata": record.metadata}
    if fmt == "alpaca":
        turns = [m for m in messages if m["role"] != "system"]
        if [m["role"] for m in turns] != ["user", "assistant"]:
            raise FormatError(f"record {record.id} ({record.skill}) is multi-turn; alpaca holds "
                              "one instruction and one output — use --format openai or sharegpt")
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        return base | {"instruction": turns[0]["content"], "input": "",
                       "output": turns[1]["content"], "system": system,
                       "metadata": record.metadata}
    raise FormatError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def to_messages(row: dict) -> list[dict]:
    """Back to OpenAI messages from any of the layouts (export and statistics read this)."""
    if "messages" in row:
        return row["messages"]
    if "conversations" in row:
        back = {v: k for k, v in SHAREGPT_ROLE.items()}
        return [{"role": back[c["from"]], "content": c["value"]} for c in row["conversations"]]
    out = [{"role": "system", "content": row["system"]}] if row.get("system") else []
    user = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
    return out + [{"role": "user", "content": user},
                  {"role": "assistant", "content": row["output"]}]
