"""Output layouts: openai (default), sharegpt, alpaca; written by a real run and read back."""

import pytest

from agents.items import Record
from engine.formats import FormatError, render, to_messages
from models import ChatMessage
from tests.fakes import rag_replies
from tests.skill_harness import run_skill
from tests.fakes import ScriptedTeacher
from tests.test_pipeline import on_topic_questions


def record(*turns):
    roles = ["system", "user", "assistant", "user", "assistant"]
    return Record(id="r1", skill="rag", subcategory="numeric", metadata={"instruction": "q"},
                  messages=[ChatMessage(role=r, content=c) for r, c in zip(roles, turns)])


@pytest.mark.parametrize("fmt", ["openai", "sharegpt", "alpaca"])
def test_layouts_round_trip_to_messages(fmt):
    rec = record("Be brief.", "How tall is Etna?", "About 3,357 metres.")
    row = render(rec, fmt)
    assert row["id"] == "r1" and row["skill"] == "rag" and row["metadata"] == {"instruction": "q"}
    assert to_messages(row) == [m.model_dump() for m in rec.messages]


def test_sharegpt_uses_human_and_gpt_roles():
    row = render(record("", "Q?", "A."), "sharegpt")
    assert [c["from"] for c in row["conversations"]] == ["system", "human", "gpt"]


def test_alpaca_refuses_multi_turn_records():
    with pytest.raises(FormatError, match="multi-turn"):
        render(record("", "Q1?", "A1.", "Q2?", "A2."), "alpaca")


def test_a_run_writes_the_chosen_layout_and_refuses_switching_it(corpus, tmp_path):
    out = tmp_path / "out"
    teacher = ScriptedTeacher(rag_replies(on_topic_questions()))
    summary, data, _ = run_skill("rag", corpus, out, teacher, num=2, format="sharegpt")
    assert summary["complete"] and all("conversations" in r and "messages" not in r for r in data)
    from engine.run import RunError
    with pytest.raises(RunError, match="format 'sharegpt' → 'alpaca'"):
        run_skill("rag", corpus, out, teacher, num=3, format="alpaca")
    # resuming in the same layout continues the file
    summary, data, _ = run_skill("rag", corpus, out, ScriptedTeacher(
        rag_replies(on_topic_questions())), num=3, format="sharegpt")
    assert summary["complete"] and len(data) == 3 and all("conversations" in r for r in data)
