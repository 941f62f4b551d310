import json

import pytest

from engine.sink import CorruptOutput, JsonlWriter, read_jsonl, repair_tail


def test_repair_tail_cuts_only_the_torn_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "mes')
    assert repair_tail(path) == len('{"id": "c", "mes')
    assert [r["id"] for r in read_jsonl(path)] == ["a", "b"]
    assert repair_tail(path) == 0  # idempotent


def test_repair_tail_single_torn_line_and_missing_file(tmp_path):
    path = tmp_path / "data.jsonl"
    assert repair_tail(path) == 0
    path.write_text('{"id": "only-half')
    assert repair_tail(path) == len('{"id": "only-half')
    assert path.read_text() == ""


def test_repair_tail_long_torn_line_spanning_blocks(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"id": "a"}\n' + "x" * 200_000)
    repair_tail(path)
    assert path.read_text() == '{"id": "a"}\n'


def test_corrupt_middle_line_is_refused_not_rewritten(tmp_path):
    path = tmp_path / "data.jsonl"
    original = '{"id": "a"}\nnot json\n{"id": "b"}\n'
    path.write_text(original)
    with pytest.raises(CorruptOutput, match="data.jsonl:2"):
        list(read_jsonl(path))
    assert path.read_text() == original


def test_row_without_id_is_refused(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"x": 1}\n')
    with pytest.raises(CorruptOutput, match="'id'"):
        list(read_jsonl(path))


def test_writer_appends_and_each_line_is_visible_at_once(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"id": "old"}\n')
    writer = JsonlWriter(path)
    writer.write({"id": "new", "text": "héllo"})
    # flushed per line: a reader (or a crash) sees it before close
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["old", "new"]
    writer.close()
    assert "héllo" in path.read_text(encoding="utf-8")
