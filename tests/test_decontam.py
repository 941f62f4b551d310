"""Decontamination against eval sets: 13-gram overlap and embedding closeness, per source."""

import json

import pytest

from dedup.decontam import Decontaminator, EvalFileError, ngrams, read_eval_items
from engine.cli import main
from tests.fakes import ScriptedTeacher, rag_replies
from tests.skill_harness import run_skill

EVAL_Q = ("In which year did the eruption of Mount Tambora in Indonesia cause the year without a "
          "summer across Europe and North America?")


def test_reads_txt_and_jsonl_items(tmp_path):
    (tmp_path / "a.txt").write_text("first question?\n\n second question? \n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"question": "q1"}) + "\n\n"
                                      + json.dumps({"prompt": "q2", "id": 3}) + "\n")
    assert read_eval_items(tmp_path / "a.txt") == ["first question?", "second question?"]
    assert read_eval_items(tmp_path / "b.jsonl") == ["q1", "q2"]


@pytest.mark.parametrize("content, message", [
    ('{"question": "ok"}\nnot json\n', ":2 is not valid JSON"),
    ('{"answer": "no question field"}\n', ":1 has none of the fields"),
])
def test_bad_eval_files_name_the_line(tmp_path, content, message):
    path = tmp_path / "e.jsonl"
    path.write_text(content)
    with pytest.raises(EvalFileError, match=message):
        read_eval_items(path)


def test_ngrams_ignore_case_and_punctuation():
    assert ngrams("The Cat, sat!", 2) == ngrams("the cat sat", 2) == {("the", "cat"), ("cat", "sat")}


def test_overlap_and_closeness_are_caught_with_the_source(tmp_path, embedder):
    (tmp_path / "mmlu.txt").write_text(EVAL_Q + "\n")
    d = Decontaminator([tmp_path / "mmlu.txt"], embedder, n=13, cosine=0.9)
    leaked = "Answer this: " + EVAL_Q.lower().replace("?", "") + " Explain briefly."
    assert d.check(leaked).how == "13-gram" and d.check(leaked).source == "mmlu.txt"
    paraphrase = ("Which year did Mount Tambora's eruption in Indonesia cause the year without "
                  "a summer in Europe and North America?")
    assert d.check(paraphrase) is None  # no 13 shared words in a row...
    hit = d.check(paraphrase, embedder.encode([paraphrase])[0])  # ...but the same question
    assert hit and hit.how.startswith("cosine") and hit.source == "mmlu.txt"
    other = "How many workers live in a honey bee colony?"
    assert d.check(other, embedder.encode([other])[0]) is None


def test_a_run_rejects_contaminated_records_and_reports_them(corpus, tmp_path):
    """The eval set holds every scripted question about volcanoes (each one fits some type):
    those that pass the cheap checks are rejected at decontamination, with their source."""
    from tests.test_pipeline import DISTINCT, on_topic_questions

    volcanic = [q for q in DISTINCT if any(w in q for w in ("Etna", "Tambora", "volcano", "Fuji"))]
    evals = tmp_path / "bench.txt"
    evals.write_text("\n".join(volcanic) + "\n")
    teacher = ScriptedTeacher(rag_replies(on_topic_questions()))
    summary, data, rejected = run_skill("rag", corpus, tmp_path / "out", teacher, num=6,
                                        decontaminate=[evals], flow={"refine_rounds": 0})
    assert data and all(r["metadata"]["instruction"] not in volcanic for r in data)
    hits = [r for r in rejected if r["stage"] == "decontaminate"]
    assert hits and {r["reason"] for r in hits} == {"overlaps an eval item in bench.txt"}
    assert summary["this_run"]["decontaminated_by_source"] == {"bench.txt": len(hits)}


def test_missing_eval_file_is_a_usage_error(corpus, tmp_path, capsys):
    code = main(["--skill", "rag", "--input", str(corpus), "--out", str(tmp_path / "o"),
                 "--decontaminate", str(tmp_path / "nope.jsonl")])
    assert code == 2 and "--decontaminate" in capsys.readouterr().err
