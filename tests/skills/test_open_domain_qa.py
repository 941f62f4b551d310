"""Open-domain QA: hand-written validator cases, and the flow with a scripted teacher."""

import re

import pytest

from agents.open_domain_qa.skill import (OpenQuestion, check_answer_length,
                                         check_answer_on_topic, check_no_meta_reference,
                                         check_not_refusal, check_prose, check_question_form,
                                         check_self_contained, sentences)
from tests.skill_harness import run_skill, skill_teacher

LONG = ("Honey bees perform the waggle dance to share where food is. The angle of the run "
        "relative to vertical gives the direction of the flowers relative to the sun, and the "
        "length of the run gives the distance. Other foragers follow the dancer, learn the "
        "route and fly out to the same flowers.")


@pytest.mark.parametrize("question", [
    "Why do honey bees perform a waggle dance?",
    "Who is the author of Hamlet?",
    "What is the text of the First Amendment about?",
    "How does the passage of time affect memory?",
    "Explain how a stratovolcano is built.",
])
def test_self_contained_questions_pass(question):
    assert check_self_contained(question) is None


@pytest.mark.parametrize("question, reason", [
    ("According to the text, what is a volcano?", "refers to a text"),
    ("What did the author say about honey bees?", "refers to a text ('the author')"),
    ("In this passage, what role does yeast play?", "refers to a text ('this passage')"),
    ("Explain the process mentioned above in detail.", "('mentioned above')"),
    ("What does the excerpt say about Mount Etna?", "('the excerpt')"),
    ("What is it?", "too short"),
    ("What is the answer to the question?", "names no subject"),
    ("It is built from basalt lava, so what kind of volcano is it?", "pronoun"),
    ("Honey bees and their colonies in summer", "not a question"),
    ("Why " + "honey bees dance " * 25 + "?", "too long"),
])
def test_questions_that_need_a_text_or_say_nothing_are_caught(question, reason):
    assert reason in check_self_contained(question)


@pytest.mark.parametrize("question, expects", [
    ("When did the Stockton and Darlington Railway open?", "wh"),
    ("How many workers live in a honey bee colony?", "wh"),
    ("What is a shield volcano?", "definition"),
    ("What does the term Maillard reaction mean?", "definition"),
    ("Name the main species of coffee plants.", "list"),
    ("Is Mount Etna an active volcano?", "yes_no"),
    ("How does a honey bee colony choose a new queen?", "how_why"),
    ("How do Arabica and Robusta coffee differ in caffeine?", "compare"),
    ("If a volcano erupts in the tropics, how can that change the weather in Europe the next year?",
     "multi_part"),
    ("Anything at all about bees?", "unknown_form"),
])
def test_questions_of_the_right_form_pass(question, expects):
    assert check_question_form(question, expects) is None


@pytest.mark.parametrize("question, expects, reason", [
    ("Describe honey bee colonies.", "wh", "not a who/what"),
    ("Why do bees dance?", "definition", "what a term means"),
    ("Why do bees dance?", "list", "several items"),
    ("Why is Mount Etna so active?", "yes_no", "auxiliary verb"),
    ("What is the height of Mount Etna?", "how_why", "neither how nor why"),
    ("Why is Arabica coffee popular?", "compare", "does not ask for a comparison"),
    ("Which coffee species is better?", "compare", "does not name two things"),
    ("Why did crops fail in 1816?", "multi_part", "links no two facts"),
    ("Why and how did crops fail?", "multi_part", "too short"),
])
def test_questions_of_the_wrong_form_are_caught(question, expects, reason):
    assert reason in check_question_form(question, expects)


def test_question_model_keeps_only_the_first_question():
    q = OpenQuestion(question="Question: What is a shield volcano? A shield volcano is wide.")
    assert q.question == "What is a shield volcano?"


def test_question_reply_stops_at_its_question_mark_and_no_quote_ends_it_early():
    import asyncio

    from models import ChatMessage, chat_json
    from tests.fakes import ScriptedTeacher

    teacher = ScriptedTeacher(lambda messages, schema: '{"question": "Question 1: What is a '
                              'shield volcano? A shield volcano is wide."}')
    q, completion = asyncio.run(chat_json(teacher, [ChatMessage(role="user", content="q")],
                                          OpenQuestion))
    assert q.question == "What is a shield volcano?"
    assert completion.text.endswith('volcano?"}')  # stopped there: the rest was never written
    assert OpenQuestion.model_json_schema()["properties"]["question"]["minLength"] == 48


def test_sentences_ignore_abbreviations_and_fragments():
    assert len(sentences(LONG)) == 3
    assert sentences("Yes. It is.") == []
    assert len(sentences("The dance, e.g. a figure-eight run, shows direction to others.")) == 1


@pytest.mark.parametrize("answer, tier, reason", [
    ("Paris.", "easy", None),
    (LONG, "complex", None),
    ("word " * 81, "easy", "easy answer too long (81 words > 80)"),
    ("Bees dance to show where flowers are.", "complex", "complex answer too short"),
    ("Bees dance, " + "and they dance " * 12 + "to show where flowers are", "complex",
     "not several sentences"),
])
def test_answer_length_depends_on_the_tier(answer, tier, reason):
    result = check_answer_length(answer, tier)
    assert result == reason if reason is None else reason in result


@pytest.mark.parametrize("answer, reason", [
    ("Bees dance to show where the flowers are.", None),
    ("The text of the Magna Carta was sealed in 1215.", None),
    ("According to the passage, bees dance.", "answer refers to a text"),
    ("The background notes say bees dance.", "('background notes')"),
    ("As the author explains, bees dance.", "('the author')"),
])
def test_answers_must_not_cite_a_text(answer, reason):
    result = check_no_meta_reference(answer, "answer")
    assert result == reason if reason is None else reason in result


@pytest.mark.parametrize("answer, refusal", [
    ("Bees dance to show where the flowers are.", False),
    ("I don't know why bees dance.", True),
    ("The reason is not mentioned in the notes.", True),
    ("I am not sure, but bees may dance.", True),
    ("Nobody knows exactly; several theories compete.", False),
])
def test_refusals_are_caught(answer, refusal):
    assert (check_not_refusal(answer) is not None) == refusal


@pytest.mark.parametrize("answer, expects, reason", [
    ("A shield volcano is a broad volcano built from fluid lava.", "definition", None),
    ("The term means a browning reaction between sugars and amino acids.", "definition", None),
    ("Paris.", "wh", None),
    ("Arabica, Robusta and Liberica.", "list", None),
    ("The Water Cycle | #The Water Cycle | Hydrologic Cycle", "definition", "fragments"),
    ("# Volcanoes\nA volcano is an opening in the crust.", "definition", "fragments"),
    ("Arabica | Robusta", "list", "fragments"),
    ("Hydrologic cycle, evaporation and rain.", "definition", "defines nothing"),
])
def test_answers_must_be_prose(answer, expects, reason):
    result = check_prose(answer, expects)
    assert result == reason if reason is None else reason in result


def test_complex_answers_name_their_subject():
    q = "How do honey bees tell each other where flowers are?"
    assert check_answer_on_topic(q, LONG) is None
    assert "no subject word" in check_answer_on_topic(q, "It happens through movement alone.")


# -- the flow --------------------------------------------------------------------------------

def _topic(prompt: str) -> tuple[str, str]:
    source = prompt.split('"""')[1]
    names = [w for w in re.findall(r"[A-Za-z]{5,}", source)]
    return names[0], names[min(3, len(names) - 1)]


QUESTIONS = {
    "factual easy": "What is the best known fact about {a}?",
    "definition easy": "What does the term {a} mean?",
    "list easy": "Name the main kinds of {a}.",
    "yes no easy": "Is {a} studied in schools around the world?",
    "how why complex": "How does {a} work and why does it matter?",
    "compare complex": "How does {a} differ from {b} in practice?",
    "multi step complex": "If {a} changed suddenly, what would happen next and how would that "
                          "affect {b}?",
}


def test_flow_writes_passage_free_records_and_rejects_meta_references(corpus, tmp_path):
    calls = {"instruct": 0, "respond": 0}

    def reply(prompt, schema):
        props = schema.get("properties", {})
        if "question" in props:
            calls["instruct"] += 1
            if calls["instruct"] == 1:  # a question that needs the passage: rejected cheaply
                return {"question": "According to the text, why is this subject important?"}
            kind = re.search(r'of type "([a-z ]+)"', prompt).group(1)
            a, b = _topic(prompt)
            return {"question": QUESTIONS[kind].format(a=a, b=b)}
        if "answer" in props:
            calls["respond"] += 1
            question = prompt.split("\n", 1)[0]
            subject = re.findall(r"[A-Za-z]{5,}", question)[-1]
            # the first answer cites the background the student never sees
            lead = "According to the passage, " if calls["respond"] == 1 else ""
            if "three to six full sentences" in prompt:
                return {"answer": f"{lead}{subject} is shaped by several forces acting together. "
                        f"First, the conditions around {subject} set how it starts. Then "
                        "feedback between its parts keeps the process going over time. "
                        "Finally, people who study it measure these effects to predict "
                        "what comes next."}
            if "Start with Yes or No" in prompt:
                return {"answer": f"Yes, {lead}{subject} is widely taught because it is useful."}
            if "Name at least two items" in prompt:
                return {"answer": f"{lead}There are natural forms, artificial forms and mixed "
                        "forms."}
            return {"answer": f"{lead}{subject} refers to a widely studied everyday phenomenon."}
        return None

    summary, data, rejected = run_skill("open_domain_qa", corpus, tmp_path / "out",
                                        skill_teacher(reply), num=3, max_attempts=20,
                                        flow={"refine_rounds": 0})
    assert summary["complete"] and len(data) == 3
    tiers = {"factual_easy": "easy", "definition_easy": "easy", "list_easy": "easy",
             "yes_no_easy": "easy", "how_why_complex": "complex", "compare_complex": "complex",
             "multi_step_complex": "complex"}
    for rec in data:
        meta, messages = rec["metadata"], rec["messages"]
        assert meta["split"] == "open_domain_qa"
        assert meta["tier"] == tiers[meta["instruction_type"]]
        assert meta["transformation"] in {"identity", "topic_list"}
        assert meta["seed_topic_overlap"]  # the seed inspired the subject
        assert [m["role"] for m in messages] == ["system", "user", "assistant"]
        user = messages[1]["content"]
        assert user == meta["task"]["question"] == meta["instruction"]
        assert '"""' not in user and "passage" not in user.lower()  # no passage shown
        assert "passage" not in messages[2]["content"].lower()
        if meta["tier"] == "complex":
            assert meta["validator_scores"]["answer_sentences"] >= 2
    reasons = [r["reason"] for r in rejected]
    # the question that needs the passage fails the cheap check and is written again
    assert list(summary["this_run"]["retried_by_reason"]) == [
        "instruct: question refers to a text ('According to the text'), which the reader never "
        "sees"], summary["this_run"]["retried_by_reason"]
    assert any(re.match(r"answer refers to a text \('According to the passage'\)", r)
               for r in reasons), reasons
    assert all(r["stage"] != "instruct" for r in rejected)
