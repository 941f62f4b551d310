"""The retrieval round-trip filter: an instruction must retrieve its own seed chunk."""

import json
import re


from tests.fakes import ScriptedTeacher, rag_replies
from tests.skill_harness import run_skill


def bee_questions(prompt):
    """Always about bees, but naming one word of the seed so the cheap on-topic check passes."""
    source = prompt.split('"""')[1] if '"""' in prompt else ""
    word = next((w for w in re.findall(r"[A-Za-z]{5,}", source)), "honey")
    return f"How many workers live in a honey bee colony with a single queen, like {word}?"


def test_questions_that_do_not_find_their_source_are_rejected(corpus, tmp_path):
    teacher = ScriptedTeacher(rag_replies(bee_questions))
    # --num out of reach: all 12 items run to their end, so the misses are recorded whichever
    # item finishes first (with num=1 a bee item accepted early ended the run, under load)
    summary, data, rejected = run_skill(
        "rag", corpus, tmp_path / "out", teacher, num=12, max_attempts=12,
        flow={"refine_rounds": 0, "round_trip_k": 1}, max_type_share=0)
    why = "instruction does not retrieve its source in the top 1"
    misses = [r for r in rejected if r["reason"] == why]
    # caught as the question is written (asked again, then the item ends), before refinement
    assert misses and all(r["stage"] == "instruct" for r in misses)
    assert all(r["usage"]["retried"] == {f"instruct: {why}": 2} for r in misses)
    assert {r["metadata"]["seed_chunk_id"] for r in misses}  # seeds other than the bee text
    for rec in data:  # what is kept came from the chunk the question retrieves
        assert rec["metadata"]["source"]["doc_path"] == "bees.txt"
        assert rec["metadata"]["refinement_rounds"] == 0
    assert summary["this_run"]["rejected_by_reason"][f"instruct: {why}"] == len(misses)


def test_an_edit_that_loses_its_source_is_dropped(corpus, tmp_path):
    """The editor rewrites every question into one about bees: on a chunk of another text the
    edit fails the round trip, is dropped, and the written question goes on."""
    base = rag_replies(lambda prompt: "How tall is Mount Etna in Sicily?")

    def reply(messages, schema):
        if "\nRewrite the question" in messages[-1].content:
            # it names the volcano (on topic for the cheap checks) but asks about bees
            return json.dumps({"question": "How many workers and drones live in a honey bee "
                                           "colony on a volcano?"})
        return base(messages, schema)

    summary, data, rejected = run_skill(
        "rag", corpus, tmp_path / "out", ScriptedTeacher(reply), num=1, max_attempts=12,
        flow={"refine_rounds": 1, "round_trip_k": 1}, max_type_share=0)
    assert summary["complete"] and not [r for r in rejected if r["stage"] == "round_trip"]
    [rec] = data
    [step] = rec["metadata"]["refinement"]
    assert rec["metadata"]["source"]["doc_path"] == "volcanoes.md"
    assert not step["kept"] and "does not retrieve its source" in step["dropped_because"]
    assert rec["metadata"]["instruction"] == "How tall is Mount Etna in Sicily?"


def test_the_filter_can_be_turned_off_or_aimed_at_other_skills(corpus, tmp_path):
    for flow in ({"round_trip_k": 0}, {"round_trip_k": 1, "round_trip_skills": ["mcq"]}):
        teacher = ScriptedTeacher(rag_replies(bee_questions))
        _, _, rejected = run_skill("rag", corpus, tmp_path / str(len(flow)), teacher, num=1,
                                   max_attempts=6, flow={"refine_rounds": 0, **flow})
        assert not [r for r in rejected if r["stage"] == "round_trip"]
