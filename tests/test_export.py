"""`python -m engine export`: Parquet and a datasets directory, loaded back with `datasets`."""

import json

import datasets
import pytest

from engine.cli import main
from engine.export import collect, is_validation
from tests.skill_harness import run_skill
from tests.test_multi_skill import mixed_teacher


@pytest.fixture(scope="module")
def run_out(tmp_path_factory):
    from tests.conftest import write_corpus

    root = tmp_path_factory.mktemp("export")
    corpus = write_corpus(root / "corpus")
    out = root / "out"
    summary, _, _ = run_skill("rag,mcq", corpus, out, mixed_teacher(), num=6,
                              max_attempts=80, flow={"refine_rounds": 0}, format="sharegpt")
    assert summary["complete"]
    return out


def test_export_writes_parquet_and_hf_splits_per_skill(run_out, capsys):
    assert main(["export", str(run_out)]) == 0
    printed = capsys.readouterr().out
    assert "parquet:" in printed and "hf:" in printed
    parquet = run_out / "export" / "parquet"
    assert sorted(p.name for p in parquet.iterdir()) == ["mcq.parquet", "rag.parquet"]
    loaded = datasets.load_dataset("parquet", data_files={
        "rag": str(parquet / "rag.parquet"), "mcq": str(parquet / "mcq.parquet")})
    assert loaded["rag"].num_rows + loaded["mcq"].num_rows == 6
    row = loaded["mcq"][0]
    assert row["skill"] == "mcq" and row["messages"][-1]["role"] == "assistant"
    assert json.loads(row["metadata"])["split"] == "mcq"
    disk = datasets.load_from_disk(str(run_out / "export" / "hf"))
    assert set(disk) == {"rag", "mcq"} and disk["rag"].num_rows == loaded["rag"].num_rows
    # the JSONL itself loads with the json builder too
    js = datasets.load_dataset("json", data_files=str(run_out / "data.jsonl"))["train"]
    assert js.num_rows == 6


def test_validation_split_shares_no_source_document(run_out):
    splits = collect(run_out, validation_share=0.5)
    docs = lambda names: {json.loads(r["metadata"])["source"]["doc_path"]
                          for n in names for r in splits[n]}
    train = [n for n in splits if not n.endswith("_validation")]
    val = [n for n in splits if n.endswith("_validation")]
    assert val, "with half the documents held out some records land in validation"
    assert not docs(train) & docs(val)
    assert is_validation("a.md", 0) is False and is_validation("a.md", 0.999999) is True


@pytest.mark.parametrize("argv, message", [
    (["--to", "csv"], "--to 'csv'"),
    (["--validation-share", "1.5"], "--validation-share"),
])
def test_bad_export_flags_are_usage_errors(run_out, argv, message, capsys):
    assert main(["export", str(run_out), *argv]) == 2
    assert message in capsys.readouterr().err


def test_exporting_a_missing_run_says_what_to_do(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert "does not exist; run the engine with --out" in err
