"""The scheduler, sink, dedup gate and resume, end to end with a scripted teacher and the real
embedder, FAISS index and files."""

import asyncio
import itertools
import json
import re
from collections import Counter
from contextlib import asynccontextmanager

import pytest

from agents.rag.validators import check_question_specifics, content_words
from agents.registry import load_skill
from engine.config import RunConfig
from engine.progress import Progress
from engine.run import RunError, run
from tests.conftest import TOPICS, write_corpus
from tests.fakes import ScriptedTeacher, answers_yes, nearest_document, rag_replies


def opener(teacher):
    @asynccontextmanager
    async def open_(settings, say):
        yield teacher
    return open_


DISTINCT = [
    "How tall is Mount Etna in Sicily?", "What caused the year without a summer in 1816?",
    "How many workers live in a honey bee colony?", "Why do worker bees perform a waggle dance?",
    "When did the Stockton and Darlington Railway open?", "Who built the engine Locomotion No. 1?",
    "Which share of world coffee production is Arabica?", "At what temperature are coffee beans roasted?",
    "What kind of lava builds shield volcanoes like Mauna Loa?", "How long does a queen bee live?",
    "What is the standard railway gauge in millimetres?", "Which country produces the most coffee?",
    "What is the job of drones in a bee colony?", "Which line was the first intercity railway?",
    "What reaction gives roasted coffee its brown colour?", "How is Mount Fuji built up?",
    # per topic, one of each type whose form RAG's skill.toml checks (`asks`)
    "Is Mount Etna one of the most active volcanoes?", "List the volcanoes named beside Mount Etna.",
    "Summarize how Mount Tambora changed the year 1816.",
    "How do shield volcanoes differ from stratovolcanoes?",
    "Does a honey bee colony have a single queen?", "List the kinds of bees in a honey bee colony.",
    "Describe how honey bees make honey.", "How does a worker bee's life differ from a queen's?",
    "Was the Stockton and Darlington Railway the first public railway?",
    "Name the railways George Stephenson built engines for.",
    "Summarize what George Stephenson did for early railways.",
    "How did the Liverpool and Manchester Railway differ from the Stockton and Darlington one?",
    "Is Arabica most of the world's coffee production?", "What are the two main coffee species?",
    "Is Brazil the largest producer of coffee?",  # of a passage cut before "Arabica"
    "List what roasting does to coffee beans.",
    "Describe how coffee beans are roasted.",
    "What is the difference between Arabica and Robusta coffee?",
]
RAG_TYPES = load_skill("rag").spec


def asked_type(prompt: str) -> str | None:
    """The type an instruct prompt asks for ("Write ONE yes no question ..." → yes_no)."""
    named = re.search(r"\nWrite ONE ([a-z ]+?) question", prompt)
    return named and named.group(1).replace(" ", "_")


def of_its_type(prompt: str, question: str) -> bool:
    """Whether a question is of the type the instruct prompt asks for: RAG asks again for one
    that is not."""
    named = asked_type(prompt)
    return named is None or RAG_TYPES.subcategory(named).off_type(question) is None


def on_topic_questions():
    """The next question of DISTINCT of the prompt's type that shares two subject words with its
    passage and names nothing it does not: one the RAG cheap checks pass, so an item's outcome
    depends only on what a test scripts."""
    counter = itertools.count()

    def pick(prompt: str) -> str:
        words, start = content_words(prompt), next(counter)
        return next((q for k in range(len(DISTINCT))
                     if len(content_words(q := DISTINCT[(start + k) % len(DISTINCT)]) & words)
                     >= 2 and of_its_type(prompt, q)
                     and check_question_specifics(q, [prompt]) is None),
                    DISTINCT[start % len(DISTINCT)])
    return pick


def config(corpus, out, **kw):
    return RunConfig.model_validate({"skill": "rag", "input": corpus, "out": out, "num": 4,
                                     "flow": {"refine_rounds": 1}, **kw})


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_run_writes_exactly_num_records_in_the_messages_layout(corpus, tmp_path):
    teacher = ScriptedTeacher(rag_replies(on_topic_questions()), slots=3)
    out = tmp_path / "out"
    summary = asyncio.run(run(config(corpus, out), Progress(quiet=True), opener(teacher)))
    data = lines(out / "data.jsonl")
    assert len(data) == 4 and summary["accepted_total"] == 4 and summary["complete"]
    for rec in data:
        assert set(rec) == {"id", "skill", "subcategory", "messages", "metadata"}
        assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant"]
        assert rec["metadata"]["instruction"] in rec["messages"][1]["content"]
        meta = rec["metadata"]
        for key in ("split", "source", "transformation", "instruction_type", "refinement_rounds",
                    "teacher_model", "tokens", "schema_version", "citations"):
            assert key in meta, key
        assert meta["refinement_rounds"] == 1 and meta["tokens"]["calls"] >= 3
        assert meta["source"]["doc_path"] in {"volcanoes.md", "bees.txt", "railways.html", "coffee.md"}
    for rej in lines(out / "rejected.jsonl"):
        assert rej["stage"] and rej["reason"]
    assert teacher.max_in_flight == 3  # every slot was kept busy
    assert (out / "summary.json").exists() and (out / "index" / "manifest.json").exists()


# per topic, yes/no questions that carry no other type's marker (no digit, "how", "cause", ...)
YES_NO_INSTEAD = {
    "volcano": {"numeric": "Is Mount Etna in Sicily one of the most active volcanoes?",
                "list": "Are shield volcanoes like Mauna Loa built from basalt lava flows?",
                "explanation": "Did crops fail across Europe after Mount Tambora erupted?",
                "summary": "Is Mount Fuji a stratovolcano built from layers of lava and ash?"},
    "bees": {"numeric": "Does each honey bee colony have only one queen?",
             "list": "Do worker bees perform a waggle dance to guide foragers to flowers?",
             "explanation": "Can a queen bee live longer than a worker bee?",
             "summary": "Are drones the male bees of a honey bee colony?"},
    "railway": {"numeric": "Was the Stockton and Darlington Railway a public railway?",
                "list": "Did George Stephenson build the Locomotion engine?",
                "explanation": "Did the Liverpool and Manchester Railway run only steam trains?",
                "summary": "Is the gauge chosen by Stephenson still used by most railways?"},
    "coffee": {"numeric": "Is Arabica the larger share of world coffee production?",
               "list": "Does Robusta coffee have more caffeine than Arabica?",
               "explanation": "Do coffee plants grow best at high altitudes in the tropics?",
               "summary": "Is Brazil the largest producer of coffee?"},
}


def test_a_question_of_another_type_is_kept_and_counted_as_that_type(corpus, tmp_path):
    """The teacher writes yes/no questions for numeric, list, explanation and summary items:
    those items are kept as yes/no records (not lost), and data.jsonl and the summary's per-type
    counts agree on what each record is."""
    on_topic = on_topic_questions()

    def question_for(prompt: str) -> str:
        planned = asked_type(prompt)
        topic = next((t for t in YES_NO_INSTEAD if t in prompt.lower()), None)
        if topic and planned in YES_NO_INSTEAD[topic]:
            return YES_NO_INSTEAD[topic][planned]
        return on_topic(prompt)

    out = tmp_path / "out"
    summary = asyncio.run(run(config(corpus, out, num=40, max_attempts=16), Progress(quiet=True),
                              opener(ScriptedTeacher(answers_yes(rag_replies(question_for))))))
    data = lines(out / "data.jsonl")
    assert all("planned_type" in r["metadata"] for r in data)  # one schema for every record
    retyped = [r for r in data
               if r["metadata"]["planned_type"] != r["metadata"]["instruction_type"]]
    assert retyped
    for r in retyped:
        assert r["subcategory"] == "yes_no" == r["metadata"]["instruction_type"]
        assert r["metadata"]["planned_type"] in {"numeric", "list", "explanation", "summary"}
        assert r["metadata"]["instruction"] in {q for t in YES_NO_INSTEAD.values()
                                                for q in t.values()}
    counts = Counter(r["subcategory"] for r in data)
    assert summary["skills"]["rag"]["by_subcategory"] == {
        s.name: counts[s.name] for s in RAG_TYPES.taxonomy}


def test_exact_duplicates_are_rejected_with_a_reason(corpus, tmp_path):
    teacher = ScriptedTeacher(rag_replies(lambda p: "Which volcano erupted in 1815 in Indonesia?"))
    out = tmp_path / "out"
    summary = asyncio.run(run(config(corpus, out, num=3, max_attempts=12), Progress(quiet=True),
                              opener(teacher)))
    assert summary["accepted_total"] == 1 and not summary["complete"]
    reasons = [r["reason"] for r in lines(out / "rejected.jsonl")]
    assert "exact duplicate" in reasons


def test_near_duplicates_are_rejected(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", {"volcanoes.md": TOPICS["volcanoes.md"]})
    # cosine 0.98 with all-MiniLM-L6-v2: different strings, same question; which one an item
    # gets depends on its type, so both reach the gate whatever the order of completion
    def question(prompt):
        if "\nWrite ONE single fact" in prompt or "\nWrite ONE summary" in prompt:
            return "How tall is Mount Etna in Sicily?"
        return "What is the height of Mount Etna in Sicily?"

    teacher = ScriptedTeacher(rag_replies(question), slots=1)
    out = tmp_path / "out"
    asyncio.run(run(config(corpus, out, num=2, max_attempts=27, max_type_share=0),
                    Progress(quiet=True),
                    opener(teacher)))
    rejected = lines(out / "rejected.jsonl")
    near = [r for r in rejected if r["reason"].startswith("near duplicate")]
    exact = [r for r in rejected if r["reason"] == "exact duplicate"]
    assert near and exact  # the paraphrase is caught by embeddings, the repeat by hashing
    assert len(lines(out / "data.jsonl")) == 1


def test_resume_continues_without_loss_or_duplicates(corpus, tmp_path):
    out = tmp_path / "out"
    ask = on_topic_questions()
    asyncio.run(run(config(corpus, out, num=3), Progress(quiet=True),
                    opener(ScriptedTeacher(rag_replies(ask)))))
    first = (out / "data.jsonl").read_text()
    # a kill mid-write leaves a torn line; the restart repairs it and goes on
    with open(out / "data.jsonl", "a") as f:
        f.write('{"id": "torn", "skill": "rag", "mess')
    teacher = ScriptedTeacher(rag_replies(ask))
    summary = asyncio.run(run(config(corpus, out, num=6), Progress(quiet=True), opener(teacher)))
    text = (out / "data.jsonl").read_text()
    assert text.startswith(first)
    ids = [r["id"] for r in lines(out / "data.jsonl")]
    assert len(ids) == 6 == len(set(ids)) and "torn" not in ids
    assert summary["resumed_from"] == 3 and summary["this_run"]["accepted"] == 3
    done = set(ids) | {r["id"] for r in lines(out / "rejected.jsonl")}
    assert len(done) == len(ids) + len(lines(out / "rejected.jsonl"))  # nothing written twice
    state = json.loads((out / "state" / "near_dup.faiss.json").read_text())
    assert state["ntotal"] == 6  # the dedup index agrees with data.jsonl


def test_resume_rebuilds_a_missing_or_stale_dedup_index(corpus, tmp_path):
    out = tmp_path / "out"
    ask = on_topic_questions()
    asyncio.run(run(config(corpus, out, num=2), Progress(quiet=True),
                    opener(ScriptedTeacher(rag_replies(ask)))))
    (out / "state" / "near_dup.faiss").write_bytes(b"garbage")
    asyncio.run(run(config(corpus, out, num=3), Progress(quiet=True),
                    opener(ScriptedTeacher(rag_replies(ask)))))
    state = json.loads((out / "state" / "near_dup.faiss.json").read_text())
    assert state["ntotal"] == 3 == len(lines(out / "data.jsonl"))


def test_a_finished_run_rerun_does_nothing(corpus, tmp_path):
    out = tmp_path / "out"
    asyncio.run(run(config(corpus, out, num=2), Progress(quiet=True),
                    opener(ScriptedTeacher(rag_replies(on_topic_questions())))))
    teacher = ScriptedTeacher(rag_replies(on_topic_questions()))
    summary = asyncio.run(run(config(corpus, out, num=2), Progress(quiet=True), opener(teacher)))
    assert teacher.prompts == [] and summary["this_run"]["accepted"] == 0
    assert len(lines(out / "data.jsonl")) == 2


def test_changing_the_seed_on_an_existing_out_is_refused(corpus, tmp_path):
    out = tmp_path / "out"
    asyncio.run(run(config(corpus, out, num=1), Progress(quiet=True),
                    opener(ScriptedTeacher(rag_replies(on_topic_questions())))))
    with pytest.raises(RunError, match="seed 0 → 1"):
        asyncio.run(run(config(corpus, out, num=2, seed=1), Progress(quiet=True),
                        opener(ScriptedTeacher(rag_replies(on_topic_questions())))))


@pytest.mark.parametrize("change, refused", [
    ({"skill": "mcq"}, "skill 'rag' → 'mcq'"),
    ({"teacher": {"url": "http://127.0.0.1:9/v1", "model_name": "other-teacher"}},
     "teacher 'scripted-name' → 'other-teacher'"),
    ({"format": "sharegpt"}, "format 'openai' → 'sharegpt'"),
    ({"teacher": {"url": "http://127.0.0.1:9/v1", "model_name": "scripted-name", "parallel": 8},
      "max_attempts": 99, "num": 3, "near_dup_threshold": 0.8}, None),  # harmless: allowed
])
def test_generation_defining_flags_are_guarded_harmless_ones_are_not(corpus, tmp_path, change,
                                                                     refused):
    from engine.run import prepare_out
    from models.factory import describe

    out = tmp_path / "out"
    base = {"teacher": {"url": "http://127.0.0.1:9/v1", "model_name": "scripted-name"}}
    first = config(corpus, out, **base)
    prepare_out(first, describe(first.teacher))
    manifest = (out / "run.json").read_bytes()
    second = config(corpus, out, **{**base, **change})
    if refused is None:
        prepare_out(second, describe(second.teacher))
        return
    with pytest.raises(RunError, match=re.escape(refused)) as info:
        prepare_out(second, describe(second.teacher))
    assert "--force" in str(info.value) and (out / "run.json").read_bytes() == manifest
    forced = config(corpus, out, **{**base, **change, "force": True})
    prepare_out(forced, describe(forced.teacher))  # --force mixes on purpose


def test_an_edit_that_breaks_the_question_is_dropped_and_recorded(corpus, tmp_path):
    base = rag_replies(on_topic_questions())

    def reply(messages, schema):
        if "\nRewrite the question" in messages[-1].content:
            return json.dumps({"question": "According to the passage, how tall is Mount Etna?"})
        return base(messages, schema)

    out = tmp_path / "out"
    asyncio.run(run(config(corpus, out, num=2), Progress(quiet=True),
                    opener(ScriptedTeacher(reply))))
    for rec in lines(out / "data.jsonl"):
        [step] = rec["metadata"]["refinement"]
        assert step["kept"] is False and "passage" in step["dropped_because"]
        assert rec["metadata"]["instruction"] == step["before"] in DISTINCT


def test_a_wrong_citation_is_replaced_by_the_document_that_supports_the_answer(corpus, tmp_path):
    base = rag_replies(on_topic_questions())

    def reply(messages, schema):
        text = base(messages, schema)
        if schema and "answerable" in schema.get("properties", {}) and "[2]" in messages[-1].content:
            answer = json.loads(text)
            if answer["answerable"]:  # words of one document, but cite another
                return json.dumps(answer | {"citations": [2 if answer["citations"] != [2] else 1]})
        return text

    out = tmp_path / "out"
    asyncio.run(run(config(corpus, out, num=3), Progress(quiet=True),
                    opener(ScriptedTeacher(reply))))
    repaired = [r for r in lines(out / "data.jsonl") if r["metadata"]["citations_repaired"]]
    assert repaired
    for rec in repaired:
        # cited now: the document the answer's words came from
        (cited,) = rec["metadata"]["citations"]
        assert cited == nearest_document(rec["messages"][1]["content"])[0]
        assert rec["messages"][2]["content"].endswith(f"Sources: [{cited}]")
        assert rec["metadata"]["validator_scores"]["lexical_support"] == 1.0


@pytest.mark.parametrize("content", [b"{not json", b"[1]", b"\xff\xfe"])
def test_a_damaged_run_manifest_is_refused_with_its_path_and_kept(corpus, tmp_path, content):
    from engine.run import prepare_out

    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_bytes(content)
    cfg = config(corpus, out)
    with pytest.raises(RunError, match=re.escape(str(out / "run.json")) + " is damaged"):
        prepare_out(cfg, "scripted")
    assert (out / "run.json").read_bytes() == content


def test_a_teacher_going_down_leaves_no_call_running_behind(corpus, tmp_path):
    """Shared transformation calls outlive the items that wait on them (asyncio.shield); when
    the run ends they must be cancelled and read, not left to hit a closed session and log
    'Task exception was never retrieved' after the error line."""
    from models import TeacherUnavailable

    class GoesDown:
        model_name, slots = "goes-down", 4  # 8 workers: several chunks, some transformed
        transformations = 0

        async def chat(self, messages, *, schema=None, **kw):
            if "text" in (schema or {}).get("properties", {}):
                self.transformations += 1
                await asyncio.Event().wait()  # a transformation that never answers
            await asyncio.sleep(0.05)
            raise TeacherUnavailable("teacher at test failed 3 times; re-run")

        async def aclose(self):
            pass

    teacher = GoesDown()

    async def main():
        with pytest.raises(TeacherUnavailable):
            await asyncio.wait_for(run(config(corpus, tmp_path / "out"),
                                       Progress(quiet=True), opener(teacher)), 60)
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    assert asyncio.run(main()) == []
    assert teacher.transformations >= 1  # the case under test happened


def test_the_summary_reports_how_busy_the_teacher_slots_were(corpus, tmp_path):
    teacher = ScriptedTeacher(rag_replies(on_topic_questions()), slots=3)
    summary = asyncio.run(run(config(corpus, tmp_path / "out"), Progress(quiet=True),
                              opener(teacher)))
    occupancy = summary["this_run"]["teacher_occupancy"]
    assert set(occupancy) == {"all_slots_busy", "mean_occupancy", "span_s", "slots",
                              "steady_all_slots_busy", "steady_span_s"}
    assert occupancy["slots"] == 3
    assert 0 < occupancy["mean_occupancy"] <= 1 and 0 <= occupancy["all_slots_busy"] <= 1
    assert occupancy["all_slots_busy"] <= occupancy["mean_occupancy"]


def test_the_summary_says_which_rejections_and_which_calls_wasted_tokens(corpus, tmp_path):
    """Numeric and list questions always name 'the passage' (rejected when the instruct call's
    retries run out); unanswerable types are refused where the scripted answer cites nothing
    (see rag_replies): each reason's tokens and each call's are reported."""
    base = rag_replies(on_topic_questions())

    def reply(messages, schema):
        props = (schema or {}).get("properties", {})
        if "question" in props and re.search(r"\nWrite ONE (numeric|list) ", messages[-1].content):
            return json.dumps({"question": "What does the passage say about the first topic?"})
        return base(messages, schema)

    out = tmp_path / "out"
    summary = asyncio.run(run(config(corpus, out, num=3, max_attempts=16), Progress(quiet=True),
                              opener(ScriptedTeacher(reply))))
    this = summary["this_run"]
    rejected = lines(out / "rejected.jsonl")
    by_reason = {}
    for r in rejected:
        key = f"{r['stage']}: {r['reason']}"
        by_reason[key] = by_reason.get(key, 0) + r["usage"]["completion_tokens"]
    assert any(k.startswith("instruct: ") for k in by_reason)
    assert {k: v["tokens"] for k, v in this["waste_by_reason"].items()} == by_reason
    assert sum(v["tokens"] for v in this["waste_by_reason"].values()) \
        == this["wasted_completion_tokens"] == sum(by_reason.values())
    # an item rejected at instruct paid for its instruct calls only: the first and its retries
    for r in rejected:
        if r["stage"] == "instruct":
            assert set(r["usage"]["by_stage"]) <= {"instruct", "transform"}
            assert sum(r["usage"]["retried"].values()) == 2
            assert all(k.startswith("instruct: ") for k in r["usage"]["retried"])
            assert "the passage" in json.loads(r["raw"])["question"]
    assert sum(v["tokens"] for v in this["waste_by_call"].values()) == sum(by_reason.values())
    share = this["waste_by_reason"][next(iter(this["waste_by_reason"]))]["share"]
    assert 0 < share <= this["waste_share"] <= 1
    # accepted records carry their tokens per call too, and evaluated = prompt - cached
    for rec in lines(out / "data.jsonl"):
        tokens = rec["metadata"]["tokens"]
        assert {"instruct", "suggest", "edit", "respond"} <= set(tokens["by_stage"])
        assert sum(tokens["by_stage"].values()) == tokens["completion_tokens"]
        assert sum(tokens["evaluated_by_stage"].values()) \
            == tokens["prompt_tokens"] - tokens["cached_tokens"]
    assert this["evaluated_prompt_tokens"] == this["prompt_tokens"] - this["cached_prompt_tokens"]
    # and the prompt tokens the teacher computed, by the call that sent them, over every item
    by_call = this["evaluated_prompt_tokens_by_call"]
    assert {"instruct", "suggest", "edit", "respond"} <= set(by_call)
    assert sum(v["tokens"] for v in by_call.values()) == this["evaluated_prompt_tokens"] > 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["waste_by_reason"] and abs(sum(stats["waste_by_reason"].values())
                                            - stats["waste_share"]) < 1e-3


def test_a_question_that_fails_the_cheap_checks_is_written_again(corpus, tmp_path):
    base = rag_replies(on_topic_questions())
    first: set[tuple[str, int]] = set()

    def reply(messages, schema):
        prompt, seed = messages[-1].content, teacher.seed
        # a retry asks the same prompt with the next seed
        if "\nWrite ONE" in prompt and (prompt, seed - 1) not in first:
            first.add((prompt, seed))
            return json.dumps({"question": "What does the passage say about it?"})
        return base(messages, schema)

    out, teacher = tmp_path / "out", ScriptedTeacher(reply)
    summary = asyncio.run(run(config(corpus, out, num=3, max_attempts=6, max_type_share=0),
                              Progress(quiet=True), opener(teacher)))
    why = "instruct: question refers to 'the passage' instead of naming its subject"
    data, rejected = lines(out / "data.jsonl"), lines(out / "rejected.jsonl")
    assert summary["complete"] and all(r["stage"] != "instruct" for r in rejected)
    asked = len(data) + sum("instruct" in r["usage"]["by_stage"] for r in rejected)
    assert summary["this_run"]["retried_by_reason"][why] == asked  # each item's first question
    for rec in data:
        assert rec["metadata"]["tokens"]["retried"].get(why) == 1
        assert rec["metadata"]["instruction"] in DISTINCT


@pytest.mark.parametrize("answer_retries", [0, 1])
def test_an_answer_the_validators_reject_is_asked_again(corpus, tmp_path, answer_retries):
    """The first answer to each question is off-source (its penguin count and the Antarctic are
    in no document: the names-and-numbers check fails it); the re-asked one is grounded: with
    one answer retry no item is lost to it, with none every item that is answered is."""
    base = rag_replies(on_topic_questions())
    # it has the form every answerable type asks for: Yes or No first, a number, a list,
    # a few sentences' worth of words
    off_source = json.dumps({"answerable": True, "citations": [1], "answer":
                             "Yes, about 40 emperor penguins and their chicks huddle together "
                             "through the long and dark Antarctic winter."})
    first: set[tuple[str, int]] = set()

    def reply(messages, schema):
        prompt, seed = messages[-1].content, teacher.seed
        # a retry asks the same prompt with a seed 977 on
        if schema and schema.get("properties", {}).get("answerable", {}).get("const") is True \
                and (prompt, seed - 977) not in first:
            first.add((prompt, seed))
            return off_source
        return base(messages, schema)

    out, teacher = tmp_path / "out", ScriptedTeacher(reply)
    summary = asyncio.run(run(
        config(corpus, out, num=3, max_attempts=10, max_type_share=0,
               flow={"refine_rounds": 0, "answer_retries": answer_retries,
                     "unanswerable_share": 0}),
        Progress(quiet=True), opener(teacher)))
    why = "validate: answer states names or numbers its documents do not"
    data, rejected = lines(out / "data.jsonl"), lines(out / "rejected.jsonl")
    answered = [r for r in rejected if "respond" in r["usage"]["by_stage"]]
    if answer_retries:
        assert summary["complete"] and len(data) == 3
        assert all(r["reason"] != why.split(": ")[1] for r in rejected)
        assert summary["this_run"]["retried_by_reason"] == {why: len(data) + len(answered)}
        assert all(rec["metadata"]["tokens"]["retried"] == {why: 1} for rec in data)
        assert all("penguins" not in rec["messages"][2]["content"] for rec in data)
    else:
        assert not data and answered
        assert {f"{r['stage']}: {r['reason']}" for r in answered} == {why}
        assert summary["this_run"]["retried_by_reason"] == {}


def test_a_known_duplicate_is_rejected_before_its_answer_is_paid_for(tmp_path):
    """Every item writes the same question: the first is kept; later ones meet the gate's read-
    only check right after refinement and never reach the respond call."""
    corpus = write_corpus(tmp_path / "corpus", {"volcanoes.md": TOPICS["volcanoes.md"]})
    # contrived so that every type's form check (skill.toml `asks`) accepts it
    question = ("Is Mount Tambora, unlike Fuji, the volcano whose 1815 eruption in Indonesia "
                "you list and summarize, and how?")
    teacher = ScriptedTeacher(rag_replies(lambda p: question), slots=1)
    out = tmp_path / "out"
    asyncio.run(run(config(corpus, out, num=3, max_attempts=10, max_type_share=0),
                    Progress(quiet=True), opener(teacher)))
    assert len(lines(out / "data.jsonl")) == 1
    early = [r for r in lines(out / "rejected.jsonl")
             if r["detail"] == "found before the answer was asked for"]
    assert len(early) >= 2
    for r in early:
        assert (r["stage"], r["reason"]) == ("dedup", "exact duplicate")
        assert "respond" not in r["usage"]["by_stage"] and "edit" in r["usage"]["by_stage"]


def test_a_transformation_cut_off_by_max_tokens_is_used_up_to_its_last_whole_line(corpus,
                                                                                  tmp_path):
    """The key-facts agent runs past max_tokens: the facts written before the cut feed the
    items (no retry is paid for), and an unfinished last line never reaches a prompt."""
    from models import Completion

    base = rag_replies(on_topic_questions())

    class Truncating(ScriptedTeacher):
        async def chat(self, messages, *, schema=None, max_tokens=256, temperature=0.7,
                       seed=None, stop=()):
            done = await super().chat(messages, schema=schema, max_tokens=max_tokens,
                                      temperature=temperature, seed=seed, stop=stop)
            if set((schema or {}).get("properties", {})) == {"text"}:
                text = ('{"text": "- Mount Tambora erupted in 1815 in Indonesia.\\n- The ash '
                        'caused the year without a summer.\\n- UNFINISHED LINE')
                return done.model_copy(update={"text": text, "finish_reason": "length"})
            return done

    teacher = Truncating(base)
    out = tmp_path / "out"
    asyncio.run(run(config(corpus, out, num=3, max_attempts=40,
                           flow={"refine_rounds": 0, "round_trip_k": 0}),
                    Progress(quiet=True), opener(teacher)))
    transformed = [p for p in teacher.prompts
                   if "Mount Tambora erupted in 1815" in p[-1].content
                   and "\nWrite ONE" in p[-1].content]
    assert transformed  # items were written from the salvaged notes
    assert not any("UNFINISHED" in m.content for p in teacher.prompts for m in p)
    rejected = lines(out / "rejected.jsonl")
    assert not [r for r in rejected if r["stage"] == "transform"]
    # one call per transformation, no retries: the salvage took the place of a second call
    calls = [p for p in teacher.prompts if "List the key facts" in p[-1].content]
    assert len(calls) == len({p[-1].content for p in calls})
